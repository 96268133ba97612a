"""City → hub: push cycles over real databases, gap safety, trimming, refusals."""

from __future__ import annotations

import datetime as dt
import decimal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.app import init_node
from syncd.city.crm import crm_metadata
from syncd.city.push import Pusher
from syncd.core.policy import load_policy
from syncd.core.settings import Settings
from syncd.hub.apply import load_changes
from syncd.hub.inbox import HubInbox
from syncd.hub.nodes import register_node
from syncd.store import hub_tables as h
from syncd.store.city_tables import changelog
from syncd.store.db import create_engine
from tests.conftest import POLICY
from tests.helpers import settings_for, write_config

NOW = dt.datetime(2026, 11, 26, 8, 0, 0)


def customer(cid: str, status: str = "active", **kw: Any) -> dict[str, Any]:
    row = {
        "customer_id": cid,
        "customer_type": "individual",
        "name": f"客户{cid}",
        "id_type": "ric",
        "id_number": "11010519491231002X",
        "phone": "13800000000",
        "status": status,
        "rm_notes": "不外传",
        "created_at": NOW,
        "updated_at": NOW,
        "risk_tags": ["a"],
    }
    row.update(kw)
    return row


@dataclass
class Pair:
    city: Settings
    hub_url: str
    pusher: Pusher

    def hub_rows(self) -> list[dict[str, Any]]:
        engine = create_engine(self.hub_url)
        with engine.connect() as conn:
            ids = conn.execute(sa.select(h.batches.c.batch_id)).scalars().all()
            changes = [c for b in ids for _, c in load_changes(conn, b)]
        engine.dispose()
        return [
            {"seq": c.seq, "table": c.table, "op": c.op, "key": c.key, "row": c.row}
            for c in sorted(changes, key=lambda c: c.seq)
        ]


def make_pair(tmp_path: Path, city_url: str, hub_url: str, **sync: Any) -> Pair:
    # Tests assert what one push ships; on a cluster shared with other tests, give the gap
    # guard time for their short transactions to end.
    sync.setdefault("gap_wait_seconds", 2.0)
    init_node(settings_for(write_config(tmp_path / "hub.toml", "hub-33", "hub", hub_url)))
    engine = create_engine(hub_url)
    register_node(engine, hub_url, "city-3301", "3301")
    engine.dispose()
    city = settings_for(
        write_config(tmp_path / "city.toml", "city-3301", "city", city_url, hub_url, sync=sync)
    )
    init_node(city)
    pusher = Pusher(
        city, load_policy(POLICY), create_engine(city_url), HubInbox(hub_url, "city-3301")
    )
    return Pair(city, hub_url, pusher)


@pytest.fixture
def pair(tmp_path: Path, db_url: str, pg_url_factory: Any) -> Iterator[Pair]:
    hub_url = (
        f"sqlite:///{tmp_path / 'hub.db'}" if db_url.startswith("sqlite") else pg_url_factory()
    )
    p = make_pair(tmp_path, db_url, hub_url)
    yield p
    p.pusher.hub.close()
    p.pusher.city.dispose()


def crm(pair: Pair) -> sa.MetaData:
    md = sa.MetaData()
    md.reflect(pair.pusher.city, only=["customers", "loans", "opportunities"])
    return md


def test_push_ships_public_filtered_changes_only(pair: Pair) -> None:
    md = crm(pair)
    cust, opp = md.tables["customers"], md.tables["opportunities"]
    with pair.pusher.city.begin() as conn:
        conn.execute(cust.insert(), [customer("C1"), customer("C2", "prospect")])
        conn.execute(opp.insert().values(opportunity_id="O1", customer_id="C1", updated_at=NOW))
        conn.execute(cust.update().where(cust.c.customer_id == "C1").values(phone="139"))
        conn.execute(cust.update().where(cust.c.customer_id == "C2").values(status="active"))
    result = pair.pusher.push_once()
    assert result.batches == 1
    rows = pair.hub_rows()
    # C1 coalesced to its last version; C2 entered the filter; the prospect insert and the
    # local opportunity never left the city.
    assert [(r["table"], r["key"]["customer_id"], r["op"]) for r in rows] == [
        ("customers", "C1", "upsert"),
        ("customers", "C2", "upsert"),
    ]
    assert rows[0]["row"]["phone"] == "139"
    assert all("rm_notes" not in r["row"] for r in rows)
    assert pair.pusher.push_once().batches == 0  # nothing new: nothing sent


def test_trim_only_below_the_hub_watermark(pair: Pair) -> None:
    cust = crm(pair).tables["customers"]
    with pair.pusher.city.begin() as conn:
        conn.execute(cust.insert(), [customer(f"C{i}") for i in range(5)])
    pair.pusher.push_once()
    with pair.pusher.city.begin() as conn:
        conn.execute(cust.insert(), [customer("C9")])
    assert pair.pusher.trim() == 5
    with pair.pusher.city.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(changelog)).scalar()
    assert left == 1  # the unacknowledged change stays, however old


def test_batches_are_capped_by_rows_and_bytes(tmp_path: Path, sqlite_url: str) -> None:
    p = make_pair(
        tmp_path, sqlite_url, f"sqlite:///{tmp_path / 'hub.db'}", batch_rows=3, batch_bytes=2000
    )
    cust = crm(p).tables["customers"]
    with p.pusher.city.begin() as conn:
        conn.execute(cust.insert(), [customer(f"C{i}") for i in range(10)])
    result = p.pusher.push_once()
    assert result.rows == 10
    assert result.batches >= 4  # ≤ 3 rows per batch, fewer when 2000 bytes fill first
    assert [r["key"]["customer_id"] for r in p.hub_rows()] == [f"C{i}" for i in range(10)]


def push_until(pusher: Pusher, rows: int) -> int:
    """Push until `rows` rows have shipped: snapshots are cluster-wide, so other tests'
    transactions on the shared server may hold the gap-safe horizon back for a while."""
    shipped = 0
    deadline = time.monotonic() + 30
    while shipped < rows and time.monotonic() < deadline:
        shipped += pusher.push_once().rows
    return shipped


def test_pg_gap_safety_late_commit_of_lower_sequence(tmp_path: Path, pg_url_factory: Any) -> None:
    """T1 takes seq n and commits after T2 took n+1 and committed: both must reach the hub."""
    p = make_pair(tmp_path, pg_url_factory(), pg_url_factory(), gap_wait_seconds=0.2)
    cust = crm(p).tables["customers"]
    with p.pusher.city.begin() as conn:
        conn.execute(cust.insert(), [customer("C1"), customer("C2")])
    assert push_until(p.pusher, 2) == 2
    t1 = p.pusher.city.connect()
    t2 = p.pusher.city.connect()
    try:
        t1.execute(cust.update().where(cust.c.customer_id == "C1").values(phone="111"))  # seq n
        t2.execute(cust.update().where(cust.c.customer_id == "C2").values(phone="222"))  # n+1
        t2.commit()
        while_open = p.pusher.push_once()
        assert while_open.rows == 0  # n+1 is visible, but n may still commit: ship nothing
        t1.commit()
    finally:
        t1.close()
        t2.close()
    assert push_until(p.pusher, 2) == 2
    phones = {r["key"]["customer_id"]: r["row"]["phone"] for r in p.hub_rows()}
    assert phones == {"C1": "111", "C2": "222"}
    p.pusher.hub.close()
    p.pusher.city.dispose()


def test_pg_city_to_sqlite_hub_and_back(tmp_path: Path, pg_url_factory: Any) -> None:
    """Decimals, dates and lists cross dialects in both directions."""
    for city_url, hub_url in [
        (pg_url_factory(), f"sqlite:///{tmp_path / 'hub1.db'}"),
        (f"sqlite:///{tmp_path / 'city2.db'}", pg_url_factory()),
    ]:
        root = tmp_path / hub_url.rsplit("/", 1)[-1].replace(".", "_")
        root.mkdir()
        p = make_pair(root, city_url, hub_url)
        cust = crm_metadata(load_policy(POLICY)).tables["customers"]
        with p.pusher.city.begin() as conn:
            conn.execute(
                cust.insert(),
                [customer("C1", credit_limit=decimal.Decimal("12345678901234.56"))],
            )
        assert push_until(p.pusher, 1) == 1
        (row,) = p.hub_rows()
        assert decimal.Decimal(str(row["row"]["credit_limit"])) == decimal.Decimal(
            "12345678901234.56"
        )
        assert row["row"]["risk_tags"] == ["a"]
        p.pusher.hub.close()
        p.pusher.city.dispose()
