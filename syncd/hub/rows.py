"""Writing one node's classified rows into the hub, inside the caller's transaction.

The one code path for batch apply (`syncd.hub.apply`) and quarantine retry
(`syncd.hub.quarantine`): each verdict is refused (audited, never stored), quarantined with its
reason, stale (an equal or newer version of its row is stored) or applied — stored as a source
record, merged into its golden record (`syncd.hub.golden`) and audited. Work is set-based per
table: one SELECT of the stored versions, one upsert of the new ones, one golden recompute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.core.batch import DELETE, UPSERT
from syncd.core.canonical import canonical, loads
from syncd.core.merge import Source, encode_value
from syncd.core.policy import Policy, Table
from syncd.core.validate import Change, Verdict, classify, validate_key
from syncd.hub.audit import Action, AuditWriter
from syncd.hub.golden import Fresh, GoldenState, as_source, disputes, recompute_goldens
from syncd.store import hub_tables as h
from syncd.store.bulk import NAME_MAX, insert_returning_ids, key_matches, source_table, upsert
from syncd.store.db import describe_failure, is_transient, row_fault


class RowOutcome(StrEnum):
    """What became of one row a node sent (also the `syncd_rows_total` metric's label)."""

    APPLIED = "applied"
    STALE = "stale"
    QUARANTINED = "quarantined"
    REFUSED = "refused"


@dataclass(frozen=True)
class RowCounts:
    """What happened to the rows of one write: a batch, a retry, a node's or a cycle's total.

    The one definition of these counts: batch stats, audit entries, `ApplySummary` and its
    per-node figures are all made from `as_dict`, and totals by `+`.
    """

    rows: int = 0
    applied: int = 0
    stale: int = 0
    quarantined: int = 0
    refused: int = 0
    conflicts_opened: int = 0

    def __add__(self, other: RowCounts) -> RowCounts:
        return RowCounts(**{k: v + getattr(other, k) for k, v in self.as_dict().items()})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(RowCounts)}


@dataclass(frozen=True)
class _Stored:
    seq: int
    identity: tuple[Any, ...] | None
    # The stored version's data columns (table.public_columns minus the key), None if it is
    # a tombstone: what an applied update is compared with to name the columns it changed.
    data: dict[str, Any] | None = None


@dataclass
class _TableWork:
    """The rows of one table in one write, split by what happens to them."""

    fresh: list[tuple[int, Verdict]] = field(default_factory=list)
    stale: list[tuple[int, Verdict, int]] = field(default_factory=list)


class RowWriter:
    """Writes one node's classified changes into the hub, inside the caller's transaction.

    `write` returns each verdict's outcome and adds them to `counts`.
    """

    def __init__(
        self, conn: Connection, policy: Policy, audit: AuditWriter, now: dt.datetime
    ) -> None:
        self.conn = conn
        self.policy = policy
        self.audit = audit
        self.now = now
        self.counts = RowCounts()
        self.last_refused: str | None = None  # why the last refused row was refused
        # Merge a batch's fresh rows from memory (`golden.Fresh`); off when rows are written
        # one at a time, as then earlier rows of the batch are already in the database.
        self.reuse_fresh = True
        self._cities: dict[str, str | None] = {}

    def write(
        self, node_id: str, batch_id: int | None, verdicts: Sequence[Verdict]
    ) -> list[RowOutcome]:
        outcomes: dict[int, RowOutcome] = {}
        self.counts += RowCounts(rows=len(verdicts))
        by_table: dict[str, list[tuple[int, Verdict]]] = defaultdict(list)
        quarantine: list[tuple[int, Verdict]] = []
        for i, v in enumerate(verdicts):
            if v.refused is not None:
                self._refuse(node_id, batch_id, v)
                outcomes[i] = RowOutcome.REFUSED
            elif v.invalid is not None:
                quarantine.append((i, v))
                outcomes[i] = RowOutcome.QUARANTINED
            else:
                by_table[v.change.table].append((i, v))
        self._quarantine(node_id, batch_id, [v for _, v in quarantine])
        applied: list[Verdict] = []
        for name in self.policy.tables:
            if name in by_table:
                for i, outcome in self._write_table(node_id, batch_id, by_table[name]):
                    outcomes[i] = outcome
                    if outcome is RowOutcome.APPLIED:
                        applied.append(verdicts[i])
        self._supersede_quarantine(node_id, applied)
        return [outcomes[i] for i in range(len(verdicts))]

    def write_isolated(
        self, node_id: str, batch_id: int | None, verdicts: Sequence[Verdict]
    ) -> list[RowOutcome]:
        """`write`, one row at a time under a savepoint: a row the database refuses is
        quarantined with the database's reason (no values), and the others are written.

        The path of a batch whose set-based write failed. A failure that is not about the
        row's values (see `syncd.store.db.row_fault`) is raised: it is the batch's or the hub's.
        """
        self.reuse_fresh = False
        outcomes: list[RowOutcome] = []
        for v in verdicts:
            if not v.valid:
                outcomes += self.write(node_id, batch_id, [v])
                continue
            mark, counts = self.audit.mark(), self.counts
            savepoint = self.conn.begin_nested()
            try:
                outcomes += self.write(node_id, batch_id, [v])
                savepoint.commit()
            except Exception as exc:
                savepoint.rollback()
                if is_transient(exc) or not row_fault(exc):
                    raise
                self.audit.rewind(mark)
                self.counts = counts
                refused = f"the hub database refused this row: {describe_failure(exc)}"
                outcomes += self.write(node_id, batch_id, [_invalid(v.change, v.table, refused)])
        return outcomes

    def _refuse(self, node_id: str, batch_id: int | None, v: Verdict) -> None:
        key = None
        if v.table is not None and isinstance(v.change.wire_key, dict):
            key = {c: v.change.wire_key[c] for c in v.table.primary_key if c in v.change.wire_key}
        self.audit.append(
            Action.REFUSED_ROW,
            node_id=node_id,
            batch_id=batch_id,
            table=v.change.table[:NAME_MAX] or None,
            key=key,
            detail={"seq": v.change.seq, "op": v.change.op[:16], "reason": v.refused},
        )
        self.counts += RowCounts(refused=1)
        self.last_refused = v.refused

    def _quarantine(self, node_id: str, batch_id: int | None, verdicts: Sequence[Verdict]) -> None:
        rows = [
            {
                "node_id": node_id,
                "batch_id": batch_id,
                "seq": v.change.seq,
                "table_name": v.change.table,
                "op": v.change.op[:8],
                "row_key": v.change.wire_key,
                "row_data": v.change.wire_row,
                "reason": v.invalid,
                "created_at": self.now,
                "status": h.QuarantineStatus.OPEN,
            }
            for v in verdicts
        ]
        ids = insert_returning_ids(self.conn, h.quarantine, rows, "quarantine_id")
        for qid, v in zip(ids, verdicts, strict=True):
            self.audit.append(
                Action.QUARANTINED,
                node_id=node_id,
                batch_id=batch_id,
                table=v.change.table,
                key=v.change.wire_key,
                detail={
                    "quarantine_id": qid,
                    "seq": v.change.seq,
                    "op": v.change.op,
                    "reason": v.invalid,
                },
            )
        self.counts += RowCounts(quarantined=len(rows))

    def _stored(
        self, node_id: str, table: Table, keys: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], _Stored]:
        src = source_table(self.policy, table)
        pk = [src.c[c] for c in table.primary_key]
        ident = [src.c[c] for c in table.identity]
        names = [c for c in table.public_columns if c not in table.primary_key]
        data = [src.c[c] for c in names]
        found: dict[tuple[Any, ...], _Stored] = {}
        n, m = len(pk), len(pk) + 2 + len(ident)
        for where in key_matches(self.conn, pk, keys):
            stmt = sa.select(*pk, src.c._seq, src.c._deleted, *ident, *data).where(
                src.c[h.ORIGIN] == node_id, where
            )
            for r in self.conn.execute(stmt):
                identity = tuple(r[n + 2 : m]) if ident else None
                if identity is not None and any(v is None for v in identity):
                    identity = None
                stored_data = None if r[n + 1] else dict(zip(names, r[m:], strict=True))
                found[tuple(r[:n])] = _Stored(int(r[n]), identity, stored_data)
        return found

    def _sort(
        self, node_id: str, table: Table, items: Sequence[tuple[int, Verdict]]
    ) -> tuple[_TableWork, dict[tuple[Any, ...], _Stored]]:
        work = _TableWork()
        latest: dict[tuple[Any, ...], tuple[int, Verdict]] = {}
        for i, v in items:
            k = v.key_tuple()
            prev = latest.get(k)
            if prev is not None and prev[1].change.seq >= v.change.seq:
                work.stale.append((i, v, prev[1].change.seq))
                continue
            if prev is not None:
                # Two versions of one row in one batch: only the later one is written.
                work.stale.append((*prev, v.change.seq))
            latest[k] = (i, v)
        stored = self._stored(node_id, table, list(latest))
        for k, (i, v) in latest.items():
            s = stored.get(k)
            if s is not None and v.change.seq <= s.seq:
                work.stale.append((i, v, s.seq))
            else:
                work.fresh.append((i, v))
        work.fresh.sort(key=lambda item: item[0])
        return work, stored

    def _write_table(
        self, node_id: str, batch_id: int | None, items: Sequence[tuple[int, Verdict]]
    ) -> list[tuple[int, RowOutcome]]:
        table = items[0][1].table
        assert table is not None
        work, stored = self._sort(node_id, table, items)
        for _, v, newer in sorted(work.stale, key=lambda s: s[0]):
            self.audit.append(
                Action.STALE,
                node_id=node_id,
                batch_id=batch_id,
                table=table.name,
                key=encode_key(v.key),
                detail={"seq": v.change.seq, "op": v.change.op, "stored_seq": newer},
            )
        self._store_sources(node_id, batch_id, table, [v for _, v in work.fresh])
        states: dict[tuple[Any, ...], GoldenState] = {}
        if table.identity:
            states = self._merge(node_id, batch_id, table, [v for _, v in work.fresh], stored)
        for _, v in work.fresh:
            self._audit_applied(node_id, batch_id, table, v, stored, states)
        self.counts += RowCounts(applied=len(work.fresh), stale=len(work.stale))
        applied = [(i, RowOutcome.APPLIED) for i, _ in work.fresh]
        return applied + [(i, RowOutcome.STALE) for i, _, _ in work.stale]

    def _store_sources(
        self, node_id: str, batch_id: int | None, table: Table, fresh: Sequence[Verdict]
    ) -> None:
        src = source_table(self.policy, table)
        index = [h.ORIGIN, *table.primary_key]
        meta = {"_batch_id": batch_id, "_applied_at": self.now}
        upserts = [
            {h.ORIGIN: node_id, **(v.values or {}), "_seq": v.change.seq, "_deleted": False, **meta}
            for v in fresh
            if v.change.op == UPSERT
        ]
        # A delete keeps the row's last data as history and its sequence for stale detection.
        deletes = [
            {h.ORIGIN: node_id, **(v.key or {}), "_seq": v.change.seq, "_deleted": True, **meta}
            for v in fresh
            if v.change.op == DELETE
        ]
        data = [c for c in table.public_columns if c not in table.primary_key]
        upsert(self.conn, src, upserts, index, [*data, "_seq", "_deleted", *meta])
        upsert(self.conn, src, deletes, index, ["_seq", "_deleted", *meta])

    def _city(self, node_id: str) -> str | None:
        if node_id not in self._cities:
            n = h.nodes.c
            found = self.conn.execute(sa.select(n.city_code).where(n.node_id == node_id)).first()
            self._cities[node_id] = None if found is None else found[0]
        return self._cities[node_id]

    def _merge(
        self,
        node_id: str,
        batch_id: int | None,
        table: Table,
        fresh: Sequence[Verdict],
        stored: Mapping[tuple[Any, ...], _Stored],
    ) -> dict[tuple[Any, ...], GoldenState]:
        touched: set[tuple[Any, ...]] = set()
        written: dict[tuple[Any, ...], list[Source]] = defaultdict(list)
        city = self._city(node_id)
        for v in fresh:
            s = stored.get(v.key_tuple())
            if s is not None and s.identity is not None:
                # The old identity too: a source whose id number changed leaves that golden.
                touched.add(s.identity)
            if v.values is not None:
                ident = tuple(v.values[c] for c in table.identity)
                touched.add(ident)
                written[ident].append(as_source(table, node_id, city, v.change.seq, v.values))
        # Hand over what was just written (the batch's own rows are not read back).
        given = Fresh(batch_id, written) if batch_id is not None and self.reuse_fresh else None
        states, opened = recompute_goldens(
            self.conn, self.policy, table, touched, self.audit, self.now, given
        )
        self.counts += RowCounts(conflicts_opened=opened)
        return states

    def _audit_applied(
        self,
        node_id: str,
        batch_id: int | None,
        table: Table,
        v: Verdict,
        stored: Mapping[tuple[Any, ...], _Stored],
        states: Mapping[tuple[Any, ...], GoldenState],
    ) -> None:
        detail: dict[str, Any] = {"op": v.change.op, "seq": v.change.seq}
        if v.values is not None:
            detail["columns"] = _changed(table, v.values, stored.get(v.key_tuple()))
        if table.identity:
            if v.values is not None:
                ident: tuple[Any, ...] | None = tuple(v.values[c] for c in table.identity)
            else:
                s = stored.get(v.key_tuple())
                ident = s.identity if s is not None else None
            state = states.get(ident) if ident is not None else None
            if state is not None:
                detail["golden_id"] = state.golden_id
                detail["disputed"] = disputes(state.result)
        self.audit.append(
            Action.ROW_APPLIED,
            node_id=node_id,
            batch_id=batch_id,
            table=table.name,
            key=encode_key(v.key),
            detail=detail,
        )

    def _supersede_quarantine(self, node_id: str, applied: Sequence[Verdict]) -> None:
        """Close the open quarantine entries of keys a later valid version has replaced."""
        if not applied:
            return
        q = h.quarantine.c
        stmt = sa.select(q.quarantine_id, q.table_name, sa.cast(q.row_key, sa.Text), q.seq).where(
            q.status == h.QuarantineStatus.OPEN,
            q.node_id == node_id,
            q.table_name.in_(sorted({v.change.table for v in applied})),
            q.seq < max(v.change.seq for v in applied),
        )
        candidates = self.conn.execute(stmt).all()
        if not candidates:  # the usual case: nothing of this node waits in quarantine
            return
        newest = {(v.change.table, canonical(encode_key(v.key))): v.change.seq for v in applied}
        closed: list[tuple[int, str, Any]] = []
        for qid, name, key_text, seq in candidates:
            table = self.policy.tables.get(name)
            if table is None or not table.is_public:
                continue
            key, _ = validate_key(table, loads(key_text))
            ref = (name, canonical(encode_key(key))) if key is not None else None
            if ref in newest and seq < newest[ref]:
                closed.append((int(qid), name, key))
        if not closed:
            return
        self.conn.execute(
            h.quarantine.update().where(q.quarantine_id == sa.bindparam("qid")),
            [
                {"qid": qid, "status": h.QuarantineStatus.SUPERSEDED, "closed_at": self.now}
                for qid, _, _ in closed
            ],
        )
        for qid, name, key in closed:
            self.audit.append(
                Action.QUARANTINE_SUPERSEDED,
                node_id=node_id,
                table=name,
                key=encode_key(key),
                detail={"quarantine_id": qid},
            )


def _changed(table: Table, values: Mapping[str, Any], stored: _Stored | None) -> list[str]:
    """The public columns an applied upsert wrote: all of a new row (or one back from a
    delete), else those whose value differs from the version the node sent before."""
    if stored is None or stored.data is None:
        return list(table.public_columns)
    return [c for c, old in stored.data.items() if values.get(c) != old]


def encode_key(key: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A typed key in its JSON form, for audit entries and comparisons."""
    return None if key is None else {c: encode_value(v) for c, v in key.items()}


def _invalid(change: Change, table: Table | None, reason: str) -> Verdict:
    return Verdict(change, table, invalid=reason)


def classify_safely(policy: Policy, change: Change) -> Verdict:
    """`classify`, with any exception it raises made the row's quarantine reason.

    Validation should name every problem itself; this is the net under it, so that no value
    a city sends can make the hub's cycle fail (the reason names the error, never the value).
    """
    try:
        return classify(policy, change)
    except Exception as exc:  # any failure of one row is that row's
        table = policy.tables.get(change.table)
        return _invalid(change, table, f"the row could not be validated ({type(exc).__name__})")
