"""`syncd reconcile` at a city: does the hub hold exactly what this city's policy sends?

Per public table, the city's rows that pass the row filter (public columns only) are compared
with the hub's live source records of this node, by digests computed in each database
(syncd.core.reconcile, syncd.store.digest), narrowed by bisection to the differing keys.
A differing key that is in open quarantine at the hub, in a batch the hub has not applied, or
in this city's changelog past the hub's watermark is reported as such — it is on its way or
waiting for an operator — not as drift. `repair` (syncd.city.repair) re-sends drifted keys.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.city.crm import crm_metadata
from syncd.city.insights import InsightReconcile
from syncd.core.errors import UsageError
from syncd.core.policy import Condition, FilterOp, Policy
from syncd.core.reconcile import (
    Digest,
    Side,
    Spec,
    changed_columns,
    compare_leaves,
    key_text,
    key_values,
    narrow,
    spec_for,
)
from syncd.store.city_tables import changelog
from syncd.store.db import translated
from syncd.store.digest import TableDigest

DEFAULT_LIMIT = 1000  # differing keys listed per table


class KeyState(StrEnum):
    """What a differing key is: drift (the first three), or on its way / held at the hub."""

    MISSING = "missing_at_hub"
    EXTRA = "extra_at_hub"
    DIFFERENT = "different_values"
    QUARANTINED = "quarantined"
    IN_FLIGHT = "in_flight"


DRIFT = (KeyState.MISSING, KeyState.EXTRA, KeyState.DIFFERENT)


class ReconcileHub(Side, Protocol):
    """What reconcile needs of the hub (`syncd.hub.reconcile.HubReconcile`, wired by app)."""

    def watermark(self) -> int: ...

    def pending(self, spec: Spec, keys: Sequence[str]) -> dict[str, str]: ...

    def record(self, summary: dict[str, Any]) -> None: ...


@dataclass
class KeyReport:
    key: dict[str, str | None]
    state: KeyState
    columns: list[str] = field(default_factory=list)  # differing columns (different values)
    city: dict[str, Any] | None = None  # values, only with --show-values
    hub: dict[str, Any] | None = None
    text: str = ""  # the canonical key text (what repair selects by)


@dataclass
class TableReport:
    table: str
    city_rows: int
    hub_rows: int
    city_sums: dict[str, Any]
    hub_sums: dict[str, Any]
    keys: list[KeyReport] = field(default_factory=list)
    truncated: bool = False
    seconds: float = 0.0

    def count(self, state: KeyState) -> int:
        return sum(1 for k in self.keys if k.state is state)

    @property
    def drift(self) -> int:
        return sum(self.count(s) for s in DRIFT)

    @property
    def status(self) -> str:
        if self.drift or self.truncated:
            return "drift"
        return "pending" if self.keys else "in sync"


@dataclass
class ReconcileReport:
    node_id: str
    tables: list[TableReport] = field(default_factory=list)
    repaired: int = 0  # changes queued by --repair
    pushed_batches: int = 0
    # The downward path (issue 14): does this city hold the insights the hub sent it?
    insights: InsightReconcile | None = None

    @property
    def in_sync(self) -> bool:
        down_ok = self.insights is None or self.insights.status != "drift"
        return down_ok and all(t.status != "drift" for t in self.tables)

    def summary(self) -> dict[str, Any]:
        """What the hub's audit log keeps of this run: counts only, never keys or values."""
        return {
            "in_sync": self.in_sync,
            "repaired": self.repaired,
            "tables": {
                t.table: {
                    "city_rows": t.city_rows,
                    "hub_rows": t.hub_rows,
                    "truncated": t.truncated,
                    **{s.value: t.count(s) for s in KeyState},
                }
                for t in self.tables
            },
            **({} if self.insights is None else {"insights": self.insights.summary()}),
        }


_OPS = {
    FilterOp.EQ: lambda c, v: c == v,
    FilterOp.NE: lambda c, v: c != v,
    FilterOp.LT: lambda c, v: c < v,
    FilterOp.LE: lambda c, v: c <= v,
    FilterOp.GT: lambda c, v: c > v,
    FilterOp.GE: lambda c, v: c >= v,
}


def _condition(source: sa.Table, cond: Condition) -> sa.ColumnElement[bool]:
    """One filter condition in SQL, whose NULL semantics are the filter's (core.rowfilter)."""
    col = source.c[cond.column]
    if cond.op is FilterOp.IS_NULL:
        return col.is_(None)
    if cond.op is FilterOp.NOT_NULL:
        return col.is_not(None)
    if cond.op is FilterOp.IN:
        return col.in_(list(cond.values or ()))
    if cond.op is FilterOp.NOT_IN:
        return sa.and_(col.is_not(None), col.not_in(list(cond.values or ())))
    return sa.and_(col.is_not(None), _OPS[cond.op](col, cond.value))


class CitySide:
    """The city's answers: the rows its policy sends of each table, in its own database."""

    def __init__(self, conn: Connection, policy: Policy) -> None:
        self.conn = conn
        self.policy = policy
        self.md = crm_metadata(policy)

    def table(self, spec: Spec) -> TableDigest:
        source = self.md.tables[spec.table]
        conds = [_condition(source, c) for c in self.policy.tables[spec.table].filter]
        return TableDigest(self.conn, source, spec, sa.and_(sa.true(), *conds))

    def digests(
        self, spec: Spec, modulus: int, parent_modulus: int, parents: Sequence[int] | None
    ) -> dict[int, Digest]:
        return self.table(spec).digests(modulus, parent_modulus, parents)

    def leaf(self, spec: Spec, modulus: int, buckets: Sequence[int]) -> dict[str, str]:
        return self.table(spec).leaf(modulus, buckets)

    def columns(self, spec: Spec, keys: Sequence[str], values: bool) -> dict[str, dict[str, Any]]:
        return self.table(spec).columns(keys, values) if keys else {}


def in_flight(conn: Connection, spec: Spec, after: int, keys: set[str]) -> set[str]:
    """Which of `keys` have a change in the changelog past the hub's watermark."""
    if not keys:
        return set()
    c = changelog.c
    q = sa.select(c.row_image).where(c.seq > after, c.table_name == spec.table)
    found: set[str] = set()
    for image in conn.execute(q.execution_options(yield_per=2000)).scalars():
        if isinstance(image, dict):
            k = key_text(spec, image)
            if k in keys:
                found.add(k)
    return found


def selected_tables(policy: Policy, names: Sequence[str]) -> list[Spec]:
    """The public tables asked for (all when none); an unknown or local name is bad input."""
    public = [t.name for t in policy.public_tables]
    for name in names:
        if name not in public:
            raise UsageError(
                f"--table {name!r} is not a public table of the policy "
                f"(public: {', '.join(public)})"
            )
    return [spec_for(policy.tables[n]) for n in (names or public)]


def reconcile_table(
    city: Engine,
    hub: ReconcileHub,
    policy: Policy,
    spec: Spec,
    watermark: int,
    show_values: bool = False,
    limit: int = DEFAULT_LIMIT,
) -> TableReport:
    """Compare one table; list its differing keys, each with what it is."""
    started = time.monotonic()
    with translated(f"reconciling {spec.table}"), city.connect() as conn:
        side = CitySide(conn, policy)
        found = narrow(spec, side, hub)
        report = TableReport(
            spec.table,
            found.city.rows,
            found.hub.rows,
            dict(zip(spec.money, found.city.sums, strict=True)),
            dict(zip(spec.money, found.hub.sums, strict=True)),
        )
        diff = compare_leaves(spec, side, hub, found.modulus, found.buckets, limit)
        report.truncated = diff.truncated
        states = dict.fromkeys(diff.missing, KeyState.MISSING)
        states |= dict.fromkeys(diff.extra, KeyState.EXTRA)
        states |= dict.fromkeys(diff.changed, KeyState.DIFFERENT)
        held = hub.pending(spec, list(states))
        flying = in_flight(conn, spec, watermark, set(states))
        for k in states:
            if held.get(k) == "quarantined":
                states[k] = KeyState.QUARANTINED
            elif k in flying or held.get(k) == "in_flight":
                states[k] = KeyState.IN_FLIGHT
        report.keys = _key_reports(spec, side, hub, states, show_values)
        conn.rollback()
    report.seconds = time.monotonic() - started
    return report


def _key_reports(
    spec: Spec, side: CitySide, hub: ReconcileHub, states: dict[str, KeyState], values: bool
) -> list[KeyReport]:
    changed = [k for k, s in states.items() if s is KeyState.DIFFERENT]
    cols = changed_columns(
        spec, side.columns(spec, changed, False), hub.columns(spec, changed, False)
    )
    city_vals = side.columns(spec, list(states), True) if values else {}
    hub_vals = hub.columns(spec, list(states), True) if values else {}
    return [
        KeyReport(
            key_values(spec, k),
            s,
            cols.get(k, []),
            city_vals.get(k) if values else None,
            hub_vals.get(k) if values else None,
            k,
        )
        for k, s in sorted(states.items(), key=lambda kv: (kv[1].value, kv[0]))
    ]
