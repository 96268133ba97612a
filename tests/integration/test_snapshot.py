"""Snapshot: rows that predate capture reach the changelog once, resumably, filtered."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.app import init_node
from syncd.city import snapshot as snap
from syncd.city.crm import create_crm_schema
from syncd.core.batch import Captured, to_change
from syncd.core.canonical import loads
from syncd.core.errors import UsageError
from syncd.core.policy import load_policy
from syncd.store.city_tables import changelog
from syncd.store.db import create_engine
from tests.conftest import POLICY
from tests.helpers import run_syncd, settings_for, write_config

NOW = dt.datetime(2026, 11, 26, 8, 0, 0)


def seed_crm(url: str, n: int) -> None:
    """A CRM that existed before syncd: tables and rows, no triggers yet."""
    policy = load_policy(POLICY)
    engine = create_engine(url)
    with engine.begin() as conn:
        create_crm_schema(conn, policy)
        md = sa.MetaData()
        md.reflect(conn, only=["customers", "loans"])
        conn.execute(
            md.tables["customers"].insert(),
            [
                {
                    "customer_id": f"C{i:04d}",
                    "customer_type": "individual",
                    "name": f"客户{i}",
                    "id_type": "ric",
                    "id_number": "11010519491231002X",
                    "status": "prospect" if i % 10 == 0 else "active",
                    "rm_notes": "x",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i in range(n)
            ],
        )
        conn.execute(
            md.tables["loans"].insert(),
            [
                {
                    "loan_id": f"L{i:04d}",
                    "customer_id": f"C{i:04d}",
                    "product": "consumer",
                    "principal": "1000.00",
                    "balance": "10.50",
                    "five_class": "normal",
                    "overdue_days": 0,
                    "issued_on": dt.date(2025, 1, 1),
                    "maturity_on": dt.date(2027, 1, 1),
                    "approval_memo": "秘",
                    "updated_at": NOW,
                }
                for i in range(n // 2)
            ],
        )
    engine.dispose()


def captured(url: str) -> list[tuple[str, dict[str, Any]]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(changelog.c.table_name, sa.cast(changelog.c.row_image, sa.Text))
        ).all()
    engine.dispose()
    return [(t, loads(i)) for t, i in rows]


@pytest.fixture
def city(tmp_path: Path, db_url: str) -> Path:
    seed_crm(db_url, 120)
    conf = write_config(
        tmp_path / "city.toml",
        "city-3301",
        "city",
        db_url,
        f"sqlite:///{tmp_path / 'hub.db'}",
        create_schema=False,
    )
    init_node(settings_for(conf))
    return conf


def test_snapshot_loads_public_rows_once(city: Path) -> None:
    s = settings_for(city)
    report = snap.snapshot(s, chunk_rows=25)
    assert {t.table: t.rows for t in report.tables}["customers"] == 120
    rows = captured(s.database.url)
    customers = [img for t, img in rows if t == "customers"]
    assert len(customers) == 120
    assert all("rm_notes" not in img for img in customers)
    # Prospects stay in the city: the changelog is local, the pusher drops them.
    policy = load_policy(POLICY)
    shipped = [to_change(policy, Captured(1, "customers", "I", img, None)) for img in customers]
    assert sum(c is not None for c in shipped) == 108
    loans = [img for t, img in rows if t == "loans"]
    assert len(loans) == 60
    assert all("approval_memo" not in img for img in loans)
    again = snap.snapshot(s, chunk_rows=25)  # complete: nothing more
    assert len(captured(s.database.url)) == len(rows)
    assert all(t.done for t in again.tables)


def test_snapshot_resumes_after_a_crash_exactly_once(city: Path) -> None:
    s = settings_for(city)
    calls = 0

    def crash_after_two_chunks(tp: snap.TableProgress) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt  # the process dies between two chunks

    with pytest.raises(KeyboardInterrupt):
        snap.snapshot(s, chunk_rows=25, progress=crash_after_two_chunks)
    assert len(captured(s.database.url)) == 50  # two committed chunks
    snap.snapshot(s, chunk_rows=25)
    ids = [img["customer_id"] for t, img in captured(s.database.url) if t == "customers"]
    assert len(ids) == len(set(ids)) == 120


def test_reseed_one_table_and_bad_table(city: Path) -> None:
    s = settings_for(city)
    snap.snapshot(s, chunk_rows=50)
    before = len(captured(s.database.url))
    snap.snapshot(s, table_name="loans", chunk_rows=50)
    assert len(captured(s.database.url)) == before + 60
    with pytest.raises(UsageError, match="not a public table"):
        snap.snapshot(s, table_name="opportunities")


def test_snapshot_cli(city: Path) -> None:
    out = run_syncd(city, "snapshot", "--json", check=True)
    assert '"rows": 120' in out.stdout
    bad = run_syncd(city, "snapshot", "--table", "sales_activities")
    assert bad.returncode == 2
    assert "not a public table" in bad.stderr


def test_pg_snapshot_with_concurrent_writers_loses_and_reorders_nothing(
    tmp_path: Path, pg_url_factory: Any
) -> None:
    """Writers update rows while the snapshot reads them; the hub must end equal to the city."""
    import random
    import threading

    from syncd.city.push import Pusher
    from syncd.hub.apply import apply_pending
    from syncd.hub.inbox import HubInbox
    from syncd.hub.nodes import register_node
    from tests.e2e.cluster import Cluster

    city_url, hub_url = pg_url_factory(), pg_url_factory()
    seed_crm(city_url, 1500)
    init_node(settings_for(write_config(tmp_path / "hub.toml", "hub-33", "hub", hub_url)))
    hub = create_engine(hub_url)
    register_node(hub, hub_url, "city-3301", "3301")
    conf = write_config(
        tmp_path / "city.toml",
        "city-3301",
        "city",
        city_url,
        hub_url,
        create_schema=False,
        sync={"gap_wait_seconds": 1.0},
    )
    s = settings_for(conf)
    init_node(s)
    city = create_engine(city_url)
    md = sa.MetaData()
    md.reflect(city, only=["customers"])
    cust = md.tables["customers"]
    stop = threading.Event()

    def write() -> None:
        rng = random.Random(5)
        n = 0
        while not stop.is_set():
            n += 1
            with city.begin() as conn:
                for _ in range(3):
                    cid = f"C{rng.randrange(1500):04d}"
                    conn.execute(
                        cust.update()
                        .where(cust.c.customer_id == cid)
                        .values(phone=f"w{n}", status=rng.choice(["active", "prospect"]))
                    )

    writer = threading.Thread(target=write)
    writer.start()
    try:
        snap.snapshot(s, chunk_rows=10)
    finally:
        stop.set()
        writer.join()
    pusher = Pusher(s, load_policy(POLICY), city, HubInbox(hub_url, "city-3301"))
    while pusher.push_once().batches:
        pass
    apply_pending(hub, load_policy(POLICY))
    pusher.hub.close()
    cluster = Cluster(tmp_path, hub_url, {"city-3301": city_url})
    assert cluster.expected_sources() == cluster.hub_sources()
    city.dispose()
    hub.dispose()
