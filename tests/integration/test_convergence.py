"""Convergence: the hub ends in the same state whatever order the cities' batches arrive in.

Random edits of shared customers (and their loans) across 2–4 cities become per-node batches;
two fresh hubs receive them in two different interleavings that keep each node's own order,
applying at random points in between. The consolidated tables and the open conflicts must be
identical. Hypothesis explores on SQLite files; one fixed-seed scenario runs on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from syncd.core.batch import Change
from syncd.hub.apply import apply_pending
from syncd.hub.conflicts import list_conflicts
from syncd.store.bulk import golden_table, source_table
from tests.integration.test_apply import (
    LI,
    POLICY,
    T0,
    WANG,
    ZHANG,
    add_node,
    customer,
    loan,
    make_hub,
    rm,
    submit,
    up,
)

NODES = ("n1", "n2", "n3", "n4")
IDENTITIES = (ZHANG, LI, WANG)
NAMES = ("张三", "张叁", "李四")
TAGS = ("vip", "overdue", "guarantor")
STAMPS = tuple(T0 + dt.timedelta(hours=h) for h in (0, 1, 1, 2))


@dataclass(frozen=True)
class Scenario:
    nodes: tuple[str, ...]
    batches: dict[str, list[list[Change]]]  # per node, in the node's order
    arrivals: tuple[list[tuple[str, bool]], list[tuple[str, bool]]]  # (node, apply after?)


class Chooser:
    """The random choices of a scenario, from hypothesis or from a seeded Random."""

    def __init__(self, integer: Callable[[int, int], int]) -> None:
        self.integer = integer

    def pick(self, items: Sequence[Any]) -> Any:
        return items[self.integer(0, len(items) - 1)]

    def coin(self) -> bool:
        return self.integer(0, 1) == 1


def _customer_edit(c: Chooser, node: str, city: str, seq: int) -> Change:
    key = f"{node}-{c.integer(1, 2)}"
    if c.integer(0, 5) == 0:
        return rm(seq, "customers", {"customer_id": key})
    row = customer(
        key,
        c.pick(IDENTITIES),
        at=c.pick(STAMPS),
        name=c.pick(NAMES),
        phone=c.pick(("1", "2", None)),
        home_city=c.pick(("3301", "3302", city)),
        customer_type=c.pick(("individual", "corporate")),
        risk_level=c.pick((1, 3, 5, 9)),  # 9 is quarantined
        risk_tags=[t for t in TAGS if c.coin()],
        credit_limit=c.pick(("100.00", "100.5", "2000")),
    )
    return up(seq, "customers", row)


def _loan_edit(c: Chooser, node: str, seq: int) -> Change:
    key = f"{node}-L{c.integer(1, 2)}"
    if c.coin():
        return rm(seq, "loans", {"loan_id": key})
    return up(seq, "loans", loan(key, f"{node}-{c.integer(1, 2)}", balance=c.pick(("1.00", "2"))))


def _node_batches(c: Chooser, node: str, city: str) -> list[list[Change]]:
    batches: list[list[Change]] = []
    seq = 0
    for _ in range(c.integer(1, 4)):
        batch: list[Change] = []
        for _ in range(c.integer(1, 3)):
            seq += c.integer(1, 2)
            loan_edit = c.integer(0, 3) == 0
            batch.append(
                _loan_edit(c, node, seq) if loan_edit else _customer_edit(c, node, city, seq)
            )
        batches.append(batch)
    return batches


def _arrival(c: Chooser, batches: dict[str, list[list[Change]]]) -> list[tuple[str, bool]]:
    left = {n: len(b) for n, b in batches.items()}
    order: list[tuple[str, bool]] = []
    while any(left.values()):
        node = c.pick(sorted(n for n, k in left.items() if k))
        left[node] -= 1
        order.append((node, c.coin()))
    return order


def scenario(c: Chooser) -> Scenario:
    nodes = NODES[: c.integer(2, 4)]
    batches = {n: _node_batches(c, n, f"330{i + 1}") for i, n in enumerate(nodes)}
    return Scenario(nodes, batches, (_arrival(c, batches), _arrival(c, batches)))


def replay(engine: Engine, sc: Scenario, arrival: list[tuple[str, bool]]) -> None:
    for i, node in enumerate(sc.nodes):
        add_node(engine, node, f"330{i + 1}")
    taken = dict.fromkeys(sc.nodes, 0)
    last = dict.fromkeys(sc.nodes, 0)
    for node, apply_now in arrival:
        changes = sc.batches[node][taken[node]]
        taken[node] += 1
        first, end = last[node] + 1, max(ch.seq for ch in changes)
        last[node] = end
        submit(engine, node, changes, first_seq=first, last_seq=end)
        if apply_now:
            apply_pending(engine, POLICY)
    apply_pending(engine, POLICY)


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: repr(sorted(r.items())))


def state(engine: Engine) -> dict[str, Any]:
    """The consolidated tables without apply-time columns, and the open conflicts."""
    customers = POLICY.table("customers")
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        for name, table in (
            ("golden", golden_table(POLICY, customers)),
            ("src_customers", source_table(POLICY, customers)),
            ("loans", source_table(POLICY, POLICY.table("loans"))),
        ):
            rows = [dict(r) for r in conn.execute(sa.select(table)).mappings()]
            for r in rows:
                for col in ("golden_id", "_updated_at", "_applied_at", "_batch_id"):
                    r.pop(col, None)
            found[name] = _sorted(rows)
        found["conflicts"] = _sorted(
            [
                {k: c[k] for k in ("table_name", "identity", "column_name", "golden_value")}
                | {"candidates": c["candidates"]}
                for c in list_conflicts(conn)
            ]
        )
    return found


def converge(sc: Scenario, urls: tuple[str, str]) -> None:
    states = []
    for url, arrival in zip(urls, sc.arrivals, strict=True):
        engine = make_hub(url)
        try:
            replay(engine, sc, arrival)
            states.append(state(engine))
        finally:
            engine.dispose()
    assert states[0] == states[1]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    return scenario(Chooser(lambda lo, hi: draw(st.integers(lo, hi))))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_arrival_order_does_not_matter_sqlite(sc: Scenario) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        converge(sc, (f"sqlite:///{base / 'a.db'}", f"sqlite:///{base / 'b.db'}"))


def test_arrival_order_does_not_matter_postgresql(pg_url_factory: Callable[[], str]) -> None:
    rng = random.Random(20261126)
    sc = scenario(Chooser(rng.randint))
    converge(sc, (pg_url_factory(), pg_url_factory()))
