"""Reconcile a city against its hub: each kind of drift found, held rows told apart, repaired.

City and hub each on SQLite and PostgreSQL; on a PostgreSQL hub the city asks with its own
node login role, through the SECURITY DEFINER functions.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.app import Node, init_node, reconcile, reconcile_results
from syncd.city.crm import crm_metadata
from syncd.city.reconcile import KeyState, ReconcileReport
from syncd.core.policy import load_policy
from syncd.core.settings import Settings
from syncd.hub.nodes import register_node
from syncd.store import hub_tables as h
from syncd.store.city_tables import changelog
from syncd.store.db import create_engine
from tests.conftest import POLICY
from tests.helpers import settings_for, write_config

NOW = dt.datetime(2026, 11, 26, 8, 0, 0)
NODE = "city-3301"
POL = load_policy(POLICY)


def customer(cid: str, status: str = "active", **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "customer_id": cid,
        "customer_type": "individual",
        "name": f"客户{cid}",
        "id_type": "ric",
        "id_number": "11010519491231002X",
        "phone": "13800000000",
        "status": status,
        "risk_level": 2,
        "risk_tags": ["vip", "新"],
        "credit_limit": decimal.Decimal("1000.5"),
        "rm_notes": "不外传",
        "created_at": NOW,
        "updated_at": NOW,
    }
    row.update(kw)
    return row


def loan(lid: str, cid: str, balance: str = "100.00", **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "loan_id": lid,
        "customer_id": cid,
        "product": "mortgage",
        "principal": decimal.Decimal("1000"),
        "balance": decimal.Decimal(balance),
        "interest_rate": decimal.Decimal("0.0425"),
        "five_class": "normal",
        "overdue_days": 0,
        "issued_on": dt.date(2024, 1, 2),
        "maturity_on": dt.date(2034, 1, 2),
        "approval_memo": "内部",
        "updated_at": NOW,
    }
    row.update(kw)
    return row


@dataclass
class Pair:
    city: Settings
    hub: Settings
    hub_url: str

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        engine = create_engine(self.city.database.url)
        with engine.begin() as conn:
            conn.execute(crm_metadata(POL).tables[table].insert(), rows)
        engine.dispose()

    def push(self) -> None:
        """Push until the hub holds every change (a PostgreSQL city's gap guard may wait out
        other transactions on the server first)."""
        with Node.open(self.city) as node:
            assert node.pusher is not None
            for _ in range(50):
                node.cycle()
                with node.engine.connect() as conn:
                    last = conn.execute(sa.select(sa.func.max(changelog.c.seq))).scalar() or 0
                if node.pusher.hub.watermark() >= last:
                    return
        raise AssertionError("the city did not push everything")

    def apply(self) -> None:
        with Node.open(self.hub) as node:
            node.cycle()

    def hub_exec(self, stmt: Any) -> None:
        engine = create_engine(self.hub_url)
        with engine.begin() as conn:
            conn.execute(stmt)
        engine.dispose()


def _url(kind: str, tmp_path: Path, name: str, pg: Any) -> str:
    return f"sqlite:///{tmp_path / name}" if kind == "sqlite" else str(pg())


@pytest.fixture(
    params=[("sqlite", "sqlite"), ("sqlite", "pg"), ("pg", "sqlite"), ("pg", "pg")],
    ids=lambda p: f"city_{p[0]}-hub_{p[1]}",
)
def pair(request: pytest.FixtureRequest, tmp_path: Path, pg_url_factory: Any) -> Iterator[Pair]:
    city_kind, hub_kind = request.param
    hub_url = _url(hub_kind, tmp_path, "hub.db", pg_url_factory)
    city_url = _url(city_kind, tmp_path, "city.db", pg_url_factory)
    hub = settings_for(write_config(tmp_path / "hub.toml", "hub-33", "hub", hub_url))
    init_node(hub)
    engine = create_engine(hub_url)
    creds = register_node(engine, hub_url, NODE, "3301")
    engine.dispose()
    city = settings_for(
        write_config(
            tmp_path / "city.toml",
            NODE,
            "city",
            city_url,
            creds.hub_url,
            sync={"gap_wait_seconds": 2.0},
        )
    )
    init_node(city)
    return Pair(city, hub, hub_url)


def _states(report: ReconcileReport, table: str) -> dict[str, KeyState]:
    t = next(t for t in report.tables if t.table == table)
    return {"/".join(str(v) for v in k.key.values()): k.state for k in t.keys}


def test_in_sync_then_each_kind_of_drift_found_and_repaired(pair: Pair) -> None:
    pair.write("customers", [customer(f"C{i}") for i in range(1, 8)] + [customer("P1", "prospect")])
    pair.write(
        "customers",
        [customer("C8", risk_tags=[], credit_limit=None, phone=None, risk_level=None)],
    )
    pair.write("loans", [loan(f"L{i}", "C1", f"{i}00.10") for i in range(1, 6)])
    pair.push()
    pair.apply()

    clean = reconcile(pair.city)
    assert clean.in_sync, [(t.table, t.city_rows, t.hub_rows, t.keys) for t in clean.tables]
    cust = next(t for t in clean.tables if t.table == "customers")
    assert (cust.city_rows, cust.hub_rows) == (8, 8)  # the prospect is not expected at the hub
    loans = next(t for t in clean.tables if t.table == "loans")
    assert loans.city_sums["balance"] == loans.hub_sums["balance"] == decimal.Decimal("1500.50")

    md = h.policy_metadata(POL)
    src_c, src_l = md.tables["src_customers"], md.tables["loans"]
    pair.hub_exec(src_l.delete().where(src_l.c.loan_id == "L2"))  # missing at hub
    pair.hub_exec(_extra_loan(src_l))  # extra at hub
    pair.hub_exec(src_c.update().where(src_c.c.customer_id == "C3").values(phone="999"))
    # Held, not drift: a row the hub quarantines, one in the inbox, one still at the city.
    pair.write("customers", [customer("Q1", id_number="123")])
    pair.push()
    pair.apply()
    pair.write("customers", [customer("F1")])
    pair.push()  # in the hub's inbox, not applied
    pair.write("customers", [customer("F2")])  # in the city's changelog only

    drift = reconcile(pair.city)
    assert not drift.in_sync
    assert _states(drift, "loans") == {"L2": KeyState.MISSING, "L99": KeyState.EXTRA}
    assert _states(drift, "customers") == {
        "C3": KeyState.DIFFERENT,
        "Q1": KeyState.QUARANTINED,
        "F1": KeyState.IN_FLIGHT,
        "F2": KeyState.IN_FLIGHT,
    }
    c3 = next(k for t in drift.tables for k in t.keys if k.key == {"customer_id": "C3"})
    assert c3.columns == ["phone"]
    assert c3.city is None
    assert c3.hub is None

    shown = reconcile(pair.city, tables=["customers"], show_values=True)
    c3 = next(k for k in shown.tables[0].keys if k.key == {"customer_id": "C3"})
    assert c3.city is not None
    assert c3.hub is not None
    assert (c3.city["phone"], c3.hub["phone"]) == ("13800000000", "999")

    repaired = reconcile(pair.city, repair_drift=True)
    assert repaired.repaired == 3
    assert repaired.pushed_batches >= 1
    pair.apply()
    after = reconcile(pair.city)
    assert after.in_sync
    assert _states(after, "loans") == {}
    assert _states(after, "customers") == {"Q1": KeyState.QUARANTINED}

    pair.apply()  # audits the recorded summaries
    results = reconcile_results(pair.hub)
    assert [r.node_id for r in results] == [NODE]
    assert results[0].in_sync
    assert results[0].audited
    assert results[0].summary["tables"]["customers"]["quarantined"] == 1


def _extra_loan(src: sa.Table) -> Any:
    row = {k: v for k, v in loan("L99", "C1").items() if k != "approval_memo"}
    return src.insert().values(origin_node=NODE, _seq=1, _deleted=False, _applied_at=NOW, **row)
