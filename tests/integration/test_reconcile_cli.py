"""`syncd reconcile` as users run it: exit codes, --json, --repair, --all-nodes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

from syncd.city.crm import crm_metadata
from syncd.store import hub_tables as h
from syncd.store.db import create_engine
from tests.helpers import run_syncd, write_config
from tests.integration.test_reconcile import NODE, POL, customer, loan


def test_reconcile_command(tmp_path: Path) -> None:
    hub_url, city_url = f"sqlite:///{tmp_path / 'hub.db'}", f"sqlite:///{tmp_path / 'city.db'}"
    hub = write_config(tmp_path / "hub.toml", "hub-33", "hub", hub_url)
    run_syncd(hub, "init", check=True)
    run_syncd(hub, "node", "add", NODE, check=True)
    city = write_config(tmp_path / "city.toml", NODE, "city", city_url, hub_url)
    run_syncd(city, "init", check=True)
    engine = create_engine(city_url)
    with engine.begin() as conn:
        conn.execute(crm_metadata(POL).tables["customers"].insert(), [customer("C1")])
        conn.execute(crm_metadata(POL).tables["loans"].insert(), [loan("L1", "C1")])
    engine.dispose()
    run_syncd(city, "sync", "--once", check=True)
    run_syncd(hub, "sync", "--once", check=True)

    ok = run_syncd(city, "reconcile")
    assert ok.returncode == 0, ok.stderr
    assert "in sync" in ok.stdout

    hub_engine = create_engine(hub_url)
    src = h.policy_metadata(POL).tables["loans"]
    with hub_engine.begin() as conn:
        conn.execute(src.update().values(balance="7.00", five_class="loss"))
    hub_engine.dispose()
    drift = run_syncd(city, "reconcile", "--table", "loans", "--json")
    assert drift.returncode == 1, drift.stderr
    found = json.loads(drift.stdout)
    assert found["in_sync"] is False
    (loans,) = found["tables"]
    assert loans["hub_sums"]["balance"] == "7.00"
    assert loans["keys"] == [
        {
            "key": {"loan_id": "L1"},
            "state": "different_values",
            "columns": ["balance", "five_class"],
        }
    ]
    assert "loss" not in drift.stdout  # no values without --show-values
    shown = run_syncd(city, "reconcile", "--table", "loans", "--show-values")
    assert shown.returncode == 1
    assert "loss" in shown.stdout

    repaired = run_syncd(city, "reconcile", "--repair")
    assert repaired.returncode == 1, repaired.stderr
    assert "1 changes queued" in repaired.stdout
    run_syncd(hub, "sync", "--once", check=True)
    assert run_syncd(city, "reconcile").returncode == 0

    run_syncd(hub, "sync", "--once", check=True)  # audits the recorded runs
    nodes = run_syncd(hub, "reconcile", "--all-nodes", "--json")
    assert nodes.returncode == 0, nodes.stderr
    (last,) = json.loads(nodes.stdout)
    assert (last["node_id"], last["in_sync"], last["audited"]) == (NODE, True, True)
    log = run_syncd(hub, "audit", "log", "--json", check=True)
    assert "reconcile" in log.stdout

    bad = run_syncd(city, "reconcile", "--table", "opportunities")
    assert bad.returncode == 2
    assert "not a public table" in bad.stderr
    assert run_syncd(hub, "reconcile").returncode == 2
    assert run_syncd(city, "reconcile", "--all-nodes").returncode == 2
    assert run_syncd(hub, "reconcile", "--all-nodes", "--repair").returncode == 2
