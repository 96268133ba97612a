"""Node operations: migrations without drift, status fields, secrets never shown."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from syncd.app import init_node
from syncd.app import read_city_status as city_status
from syncd.app import read_hub_status as hub_status
from syncd.hub.nodes import register_node
from syncd.store import migrate
from syncd.store.city_tables import changelog
from syncd.store.db import create_engine
from tests.conftest import POLICY
from tests.helpers import run_syncd, settings_for, write_config


@pytest.mark.parametrize("role", ["city", "hub"])
def test_alembic_check_finds_no_drift(tmp_path: Path, db_url: str, role: str) -> None:
    hub = f"sqlite:///{tmp_path / 'hub.db'}"
    conf = write_config(
        tmp_path / "n.toml", f"{role}-1", role, db_url, hub if role == "city" else None
    )
    init_node(settings_for(conf))
    init_node(settings_for(conf))  # twice: a no-op
    engine = create_engine(db_url)
    with engine.connect() as conn:
        migrate.check(conn, role)  # raises if syncd's tables and its MetaData differ
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_password_never_printed_or_logged(tmp_path: Path) -> None:
    """Guarantee 6: a hub URL with a password, an unreachable hub, every output scrubbed."""
    secret = "Sup3r-Secret-pw"
    hub_url = f"postgresql+psycopg://city:{secret}@127.0.0.1:{free_port()}/hub"
    conf = write_config(
        tmp_path / "city.toml",
        "city-3301",
        "city",
        f"sqlite:///{tmp_path / 'c.db'}",
        hub_url,
        sync={"retry_max_wait_seconds": 0.2},
    )
    run_syncd(conf, "init", check=True)
    outputs = [
        run_syncd(conf, "sync", "--once"),
        run_syncd(conf, "-v", "sync", "--once"),
        run_syncd(conf, "status", "--json"),
    ]
    assert outputs[0].returncode == 1
    assert "connection" in outputs[0].stderr.lower()
    for proc in outputs:
        assert secret not in proc.stdout
        assert secret not in proc.stderr
    bad = write_config(
        tmp_path / "bad.toml", "city-3301", "city", f"mysql://u:{secret}@h/db", hub_url
    )
    proc = run_syncd(bad, "status")
    assert proc.returncode == 2
    assert "database.url" in proc.stderr
    assert secret not in proc.stderr


def test_status_fields_city_and_hub(tmp_path: Path, sqlite_url: str) -> None:
    hub_url = f"sqlite:///{tmp_path / 'hub.db'}"
    hub_conf = write_config(
        tmp_path / "hub.toml", "hub-33", "hub", hub_url, sync={"silent_node_seconds": 60}
    )
    init_node(settings_for(hub_conf))
    engine = create_engine(hub_url)
    register_node(engine, hub_url, "city-3301", "3301")
    register_node(engine, hub_url, "city-3302", "3302")
    engine.dispose()
    city_conf = write_config(
        tmp_path / "city.toml",
        "city-3301",
        "city",
        sqlite_url,
        hub_url,
        sync={"backlog_warn_seconds": 1},
    )
    init_node(settings_for(city_conf))
    city = create_engine(sqlite_url)
    with city.begin() as conn:  # an unsent change, captured two hours ago
        conn.execute(
            changelog.insert().values(
                table_name="loans",
                op="I",
                row_image={"loan_id": "L1"},
                captured_at=sa.text("datetime('now', '-2 hours')"),
            )
        )
    city.dispose()
    st = city_status(settings_for(city_conf))
    assert st.backlog_rows == 1
    assert st.lag_seconds is not None
    assert 7100 < st.lag_seconds < 7300
    assert st.last_acked_seq == 0
    assert any("h old" in w for w in st.warnings)
    out = json.loads(run_syncd(city_conf, "status", "--json", check=True).stdout)
    assert out["backlog_rows"] == 1
    assert out["role"] == "city"

    run_syncd(city_conf, "sync", "--once", check=True)
    st = city_status(settings_for(city_conf))
    assert st.backlog_rows == 0
    assert st.last_acked_seq == 1
    assert st.last_push_at

    hs = hub_status(settings_for(hub_conf))
    nodes = {n.node_id: n for n in hs.nodes}
    assert nodes["city-3301"].received_seq == 1
    assert nodes["city-3301"].pending_batches == 1
    assert not nodes["city-3301"].silent
    assert nodes["city-3302"].silent  # never heard from
    assert any("city-3302 silent" in w for w in hs.warnings)
    run_syncd(hub_conf, "sync", "--once", check=True)
    hs = hub_status(settings_for(hub_conf))
    assert {n.node_id: n.applied_seq for n in hs.nodes}["city-3301"] == 1
    assert hs.pending_batches == 0


def test_broken_policy_fails_init_and_drops_nothing(tmp_path: Path, db_url: str) -> None:
    policy = tmp_path / "crm.yaml"
    policy.write_text(POLICY.read_text(encoding="utf-8"), encoding="utf-8")
    conf = write_config(
        tmp_path / "city.toml", "city-3301", "city", db_url, f"sqlite:///{tmp_path / 'hub.db'}"
    )
    conf.write_text(conf.read_text().replace(str(POLICY), str(policy)))
    run_syncd(conf, "init", check=True)
    assert run_syncd(conf, "schema", "check").returncode == 0
    text = policy.read_text(encoding="utf-8")
    policy.write_text(text.replace("exclude: [rm_notes]", "exclude: [rm_notez]"), encoding="utf-8")
    proc = run_syncd(conf, "init")
    assert proc.returncode == 2
    assert f"{policy}: tables.customers.exclude: column 'rm_notez' is not declared" in proc.stderr
    policy.write_text(text, encoding="utf-8")
    check = run_syncd(conf, "schema", "check", "--json")
    assert check.returncode == 0, check.stdout  # every trigger still in place
    assert json.loads(check.stdout)["ok"] is True


def test_schema_check_exit_code_names_problems(tmp_path: Path, sqlite_url: str) -> None:
    conf = write_config(
        tmp_path / "city.toml",
        "city-3301",
        "city",
        sqlite_url,
        f"sqlite:///{tmp_path / 'hub.db'}",
        create_schema=False,
    )
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (customer_id TEXT PRIMARY KEY)"))
    engine.dispose()
    proc = run_syncd(conf, "schema", "check")
    assert proc.returncode == 2
    assert "loans" in proc.stdout
    assert "id_number" in proc.stdout


def test_version_and_usage_errors() -> None:
    proc = run_syncd(None, "--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("syncd ")
    assert run_syncd(None, "no-such-command").returncode == 2
    missing = run_syncd(None, "status", env={"SYNCD_CONFIG": "/nonexistent/x.toml"})
    assert missing.returncode == 2
    assert "/nonexistent/x.toml: (file): cannot read" in missing.stderr


def test_hub_init_adds_columns_the_policy_gained(tmp_path: Path, db_url: str) -> None:
    """A public column added to the policy reaches the hub's tables on the next `init`."""
    policy = tmp_path / "crm.yaml"
    text = POLICY.read_text(encoding="utf-8")
    policy.write_text(text, encoding="utf-8")
    conf = write_config(tmp_path / "hub.toml", "hub-33", "hub", db_url)
    conf.write_text(conf.read_text().replace(str(POLICY), str(policy)))
    run_syncd(conf, "init", check=True)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO src_customers (origin_node, customer_id, id_type, id_number, _seq, "
                "_deleted, _applied_at) VALUES ('city-3301', 'C1', 'ric', 'X', 1, false, "
                "'2026-01-01 00:00:00')"
            )
        )
    grown = text.replace(
        "      phone: {type: string, length: 32}\n",
        "      phone: {type: string, length: 32}\n      email: {type: string, length: 120}\n",
    )
    assert grown != text
    policy.write_text(grown, encoding="utf-8")
    check = run_syncd(conf, "schema", "check", "--json")
    assert check.returncode == 2
    missing = {(p["table"], p["column"]) for p in json.loads(check.stdout)["problems"]}
    assert missing == {("src_customers", "email"), ("customers", "email")}

    proc = run_syncd(conf, "init", check=True)
    assert "columns added: src_customers.email, customers.email" in proc.stdout
    assert run_syncd(conf, "schema", "check").returncode == 0
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT customer_id, email FROM src_customers")).all()
    assert [tuple(r) for r in kept] == [("C1", None)]  # the row that predates it is kept
    again = run_syncd(conf, "init", "--json", check=True)
    assert json.loads(again.stdout)["hub_columns_added"] == []

    # A new identity column would re-key rows the hub holds: refused, naming it; nothing done.
    rekeyed = grown.replace(
        "identity: [id_type, id_number]", "identity: [id_type, id_number, phone2]"
    )
    rekeyed = rekeyed.replace(
        "      email: {type: string, length: 120}\n",
        "      email: {type: string, length: 120}\n      phone2: {type: string, length: 32}\n",
    )
    policy.write_text(rekeyed, encoding="utf-8")
    refused = run_syncd(conf, "init")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "customers.phone2 is new in the policy's primary key or identity" in refused.stderr
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("src_customers")}
    engine.dispose()
    assert "phone2" not in columns
