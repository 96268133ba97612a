"""The downward path under kill -9: a hub building and a city applying insight batches die at
random moments; afterwards every batch exists once, in order, and the city holds exactly the
insights of the customers it sent — applied once each, none of another city's."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.app import init_node
from syncd.core.batch import UPSERT, Change
from syncd.hub.apply import apply_pending
from syncd.hub.nodes import register_node
from syncd.store import hub_tables as h
from syncd.store.db import create_engine
from tests.conftest import REPO
from tests.helpers import SYNCD, run_syncd, settings_for, write_config
from tests.integration.test_apply import POLICY, customer, id_number, loan, submit

SEED = int(os.environ.get("SYNCD_E2E_SEED", "20261126"))
HZ, NB = "city-3301", "city-3302"
CUSTOMERS = 1500  # Hangzhou's; Ningbo holds 100 of them too, and 50 of its own
DOWNLINK = "[downlink]\nbatch_rows = 5\n"


def killed_at_random(args: list[str], rng: random.Random, low: float, high: float) -> bool:
    """Run syncd, SIGKILL it after a random delay; True if it was still running then."""
    proc = subprocess.Popen(
        [SYNCD, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(rng.uniform(low, high))
    alive = proc.poll() is None
    proc.kill()
    proc.wait(10)
    return alive


def position(city_db: Path) -> int:
    """The city's downlink position as committed (0 before the first batch)."""
    with sqlite3.connect(city_db) as conn:
        found = conn.execute(
            "SELECT value FROM syncd_city_state WHERE key = 'downlink_seq'"
        ).fetchone()
    if found is None:
        return 0
    value = found[0]
    return int(value if isinstance(value, int) else json.loads(value))


def killed_mid_apply(args: list[str], city_db: Path, rng: random.Random) -> tuple[int, bool]:
    """Run `insights pull`, SIGKILL it a few ms after its position moves (so inside a later
    batch's transaction, or between two); (the position it died at, whether it was running)."""
    start = position(city_db)
    proc = subprocess.Popen(
        [SYNCD, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while position(city_db) == start and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.05))
    alive = proc.poll() is None
    proc.kill()
    proc.wait(10)
    return position(city_db), alive


def ric_number(region: str, n: int) -> str:
    """A valid resident ID number: the region, a birth date n days after 1960-01-01, a serial."""
    born = dt.date(1960, 1, 1) + dt.timedelta(days=n)
    return id_number(f"{region}{born:%Y%m%d}{n % 1000:03d}")


def changes(node: str, rows: list[dict[str, Any]], loans: list[dict[str, Any]]) -> list[Change]:
    out = [
        Change(i, "customers", UPSERT, {"customer_id": r["customer_id"]}, r)
        for i, r in enumerate(rows, start=1)
    ]
    out += [
        Change(len(out) + i, "loans", UPSERT, {"loan_id": r["loan_id"]}, r)
        for i, r in enumerate(loans, start=1)
    ]
    return out


@pytest.mark.slow
def test_kill9_while_building_and_applying_insights(tmp_path: Path, pg_url: str) -> None:
    rng = random.Random(SEED)
    hub_conf = write_config(tmp_path / "hub.toml", "hub-33", "hub", pg_url, extra=DOWNLINK)
    init_node(settings_for(hub_conf))
    hub = create_engine(pg_url)
    try:
        check_downlink_under_kills(tmp_path, hub_conf, pg_url, hub, rng)
    finally:
        hub.dispose()


def check_downlink_under_kills(
    tmp_path: Path, hub_conf: Path, pg_url: str, hub: sa.Engine, rng: random.Random
) -> None:
    city_confs = {}
    for node in (HZ, NB):
        creds = register_node(hub, pg_url, node, node[-4:])
        url = f"sqlite:///{tmp_path / f'{node}.db'}"
        city_confs[node] = write_config(
            tmp_path / f"{node}.toml", node, "city", url, creds.hub_url, extra=DOWNLINK
        )
        init_node(settings_for(city_confs[node]))
    numbers = [ric_number("330102", n) for n in range(CUSTOMERS)]
    hz = [customer(f"C{n:05d}", numbers[n], name=f"客户{n}") for n in range(CUSTOMERS)]
    loans = [loan(f"L{n:05d}", f"C{n:05d}", balance=f"{n * 100}.00") for n in range(CUSTOMERS)]
    nb = [customer(f"D{n:05d}", numbers[n * 15], home_city="3302") for n in range(100)]
    nb += [customer(f"E{n:05d}", ric_number("330203", n)) for n in range(50)]
    submit(hub, HZ, changes(HZ, hz, loans))
    submit(hub, NB, changes(NB, nb, []))
    apply_pending(hub, POLICY)

    # The hub dies while building: each build is one transaction per node, all or nothing.
    hub_args = ["--config", str(hub_conf), "insights", "publish"]
    hub_kills = sum(killed_at_random(hub_args, rng, 0.8, 2.5) for _ in range(3))
    started = time.monotonic()
    run_syncd(hub_conf, "insights", "publish", check=True)
    print(f"publish after the kills: {time.monotonic() - started:.1f} s")
    b = h.downlink_batches
    with hub.connect() as conn:
        seqs = {
            node: [
                int(s)
                for s in conn.execute(
                    sa.select(b.c.seq).where(b.c.node_id == node).order_by(b.c.seq)
                ).scalars()
            ]
            for node in (HZ, NB)
        }
    assert seqs[HZ] == list(range(1, CUSTOMERS // 5 + 1))
    assert seqs[NB] == list(range(1, 150 // 5 + 1))

    # The city dies while applying: each batch commits with its position, or not at all.
    city_args = ["--config", str(city_confs[HZ]), "insights", "pull"]
    died_at = [killed_mid_apply(city_args, tmp_path / f"{HZ}.db", rng) for _ in range(4)]
    print(f"kills while running: hub {hub_kills} of 3; city died at {died_at}")
    assert hub_kills >= 1, "a kill must land while the hub builds"
    assert any(alive and 0 < at < len(seqs[HZ]) for at, alive in died_at), died_at
    for node in (HZ, NB):
        out = run_syncd(city_confs[node], "insights", "pull", "--json", check=True)
        assert json.loads(out.stdout)["applied_seq"] == len(seqs[node])

    sent = h.insight_sent
    with hub.connect() as conn:
        for node, prefix in ((HZ, "C"), (NB, "DE")):
            hub_digests = dict(
                conn.execute(
                    sa.select(sent.c.row_key, sent.c.digest).where(sent.c.node_id == node)
                ).all()
            )
            city = create_engine(f"sqlite:///{tmp_path / f'{node}.db'}")
            with city.connect() as cc:
                held = {
                    json.dumps({"customer_id": k}, ensure_ascii=False, separators=(",", ":")): v
                    for k, v in cc.execute(
                        sa.text("SELECT customer_id, digest FROM syncd_province_insight")
                    )
                }
                seq_values = cc.execute(
                    sa.text("SELECT DISTINCT hub_seq FROM syncd_province_insight")
                ).scalars()
                assert sorted(int(s) for s in seq_values) == seqs[node]
            city.dispose()
            assert held == hub_digests
            assert all(json.loads(k)["customer_id"][0] in prefix for k in held)
            assert len(held) == (CUSTOMERS if node == HZ else 150)
        acked = dict(
            conn.execute(sa.select(h.downlink_nodes.c.node_id, h.downlink_nodes.c.acked_seq)).all()
        )
    assert acked == {HZ: len(seqs[HZ]), NB: len(seqs[NB])}
    status = json.loads(run_syncd(city_confs[HZ], "status", "--json").stdout)
    assert (status["downlink_applied_seq"], status["downlink_behind"]) == (len(seqs[HZ]), 0)
    assert run_syncd(hub_conf, "audit", "verify").returncode == 0
