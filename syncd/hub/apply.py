"""The hub's single writer: pending batches become source records, golden records and audit.

One transaction per batch holds every effect of it — validation verdicts, source records, the
golden records they change, the conflict queue, quarantine entries, audit entries, the batch's
status and the node's watermark — so a batch is applied entirely or not at all, and a killed
hub resumes at the first batch still pending. Batches of one node apply in sequence order;
ordering between versions of a row is by the city's own sequence, never by a clock.

Work is set-based per batch and table: one SELECT of the stored source rows for all keys, one
INSERT … ON CONFLICT for the new versions, one load of all sources of the identities touched,
one upsert of the golden records, one insert of the audit. The set-based SQL is in
`syncd.store.bulk`, the golden records and conflict queue in `syncd.hub.golden`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.core.batch import DELETE, UPSERT, checksum
from syncd.core.canonical import canonical, loads
from syncd.core.errors import SyncdError
from syncd.core.logs import get_logger
from syncd.core.merge import Source, encode_value
from syncd.core.policy import Policy, Table
from syncd.core.validate import Change, Verdict, classify, validate_key
from syncd.hub.audit import Action, AuditWriter
from syncd.hub.golden import (
    OPEN,
    SUPERSEDED,
    Fresh,
    GoldenState,
    as_source,
    disputes,
    recompute_goldens,
)
from syncd.store import hub_tables as h
from syncd.store.bulk import (
    NAME_MAX,
    chunks,
    insert_returning_ids,
    key_matches,
    lock,
    source_table,
    upsert,
)
from syncd.store.db import describe_failure, is_transient, row_fault, translated, utcnow

PENDING, APPLIED, REFUSED = "pending", "applied", "refused"
# Audit actions (docs/auditors.md); audit.Action is the one list of them.
REFUSED_ROW = Action.REFUSED_ROW.value
BATCH_DUPLICATE = Action.BATCH_DUPLICATE.value
QUARANTINE_SUPERSEDED = Action.QUARANTINE_SUPERSEDED.value

_log = get_logger(__name__)


# --- writing one node's rows --------------------------------------------------------------


@dataclass
class Counts:
    """What happened to the rows of one batch (or one retry)."""

    rows: int = 0
    applied: int = 0
    stale: int = 0
    quarantined: int = 0
    refused: int = 0
    conflicts_opened: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Stored:
    seq: int
    identity: tuple[Any, ...] | None


@dataclass
class _TableWork:
    """The rows of one table in one write, split by what happens to them."""

    fresh: list[tuple[int, Verdict]] = field(default_factory=list)
    stale: list[tuple[int, Verdict, int]] = field(default_factory=list)


class RowWriter:
    """Writes one node's classified changes into the hub, inside the caller's transaction.

    The one code path for batch apply and quarantine retry. `write` returns each verdict's
    outcome: 'applied', 'stale', 'quarantined' or 'refused'.
    """

    def __init__(
        self, conn: Connection, policy: Policy, audit: AuditWriter, now: dt.datetime
    ) -> None:
        self.conn = conn
        self.policy = policy
        self.audit = audit
        self.now = now
        self.counts = Counts()
        # Merge a batch's fresh rows from memory (`golden.Fresh`); off when rows are written
        # one at a time, as then earlier rows of the batch are already in the database.
        self.reuse_fresh = True
        self._cities: dict[str, str | None] = {}

    def write(self, node_id: str, batch_id: int | None, verdicts: Sequence[Verdict]) -> list[str]:
        outcomes = ["" for _ in verdicts]
        self.counts.rows += len(verdicts)
        by_table: dict[str, list[tuple[int, Verdict]]] = defaultdict(list)
        quarantine: list[tuple[int, Verdict]] = []
        for i, v in enumerate(verdicts):
            if v.refused is not None:
                self._refuse(node_id, batch_id, v)
                outcomes[i] = "refused"
            elif v.invalid is not None:
                quarantine.append((i, v))
                outcomes[i] = "quarantined"
            else:
                by_table[v.change.table].append((i, v))
        self._quarantine(node_id, batch_id, [v for _, v in quarantine])
        applied: list[Verdict] = []
        for name in self.policy.tables:
            if name in by_table:
                for i, outcome in self._write_table(node_id, batch_id, by_table[name]):
                    outcomes[i] = outcome
                    if outcome == "applied":
                        applied.append(verdicts[i])
        self._supersede_quarantine(node_id, applied)
        return outcomes

    def write_isolated(
        self, node_id: str, batch_id: int | None, verdicts: Sequence[Verdict]
    ) -> list[str]:
        """`write`, one row at a time under a savepoint: a row the database refuses is
        quarantined with the database's reason (no values), and the others are written.

        The path of a batch whose set-based write failed. A failure that is not about the
        row's values (see `syncd.store.db.row_fault`) is raised: it is the batch's or the hub's.
        """
        self.reuse_fresh = False
        outcomes: list[str] = []
        for v in verdicts:
            if not v.valid:
                outcomes += self.write(node_id, batch_id, [v])
                continue
            mark, counts = self.audit.mark(), dataclasses.replace(self.counts)
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
            REFUSED_ROW,
            node_id=node_id,
            batch_id=batch_id,
            table=v.change.table[:NAME_MAX] or None,
            key=key,
            detail={"seq": v.change.seq, "op": v.change.op[:16], "reason": v.refused},
        )
        self.counts.refused += 1

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
                "status": OPEN,
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
        self.counts.quarantined += len(rows)

    def _stored(
        self, node_id: str, table: Table, keys: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], _Stored]:
        src = source_table(self.policy, table)
        pk = [src.c[c] for c in table.primary_key]
        ident = [src.c[c] for c in table.identity]
        found: dict[tuple[Any, ...], _Stored] = {}
        n = len(pk)
        for where in key_matches(self.conn, pk, keys):
            stmt = sa.select(*pk, src.c._seq, *ident).where(src.c[h.ORIGIN] == node_id, where)
            for r in self.conn.execute(stmt):
                identity = tuple(r[n + 1 :]) if ident else None
                if identity is not None and any(v is None for v in identity):
                    identity = None
                found[tuple(r[:n])] = _Stored(int(r[n]), identity)
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
    ) -> list[tuple[int, str]]:
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
        self.counts.applied += len(work.fresh)
        self.counts.stale += len(work.stale)
        return [(i, "applied") for i, _ in work.fresh] + [(i, "stale") for i, _, _ in work.stale]

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
        self.counts.conflicts_opened += opened
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
            q.status == OPEN,
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
            [{"qid": qid, "status": SUPERSEDED, "closed_at": self.now} for qid, _, _ in closed],
        )
        for qid, name, key in closed:
            self.audit.append(
                QUARANTINE_SUPERSEDED,
                node_id=node_id,
                table=name,
                key=encode_key(key),
                detail={"quarantine_id": qid},
            )


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


# --- batches ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplySummary:
    """What one apply cycle did; `duration` in seconds.

    `by_node` holds each node's batch and row counts; `failed` each node whose batch failed (not for
    one row) with what failed; `resting` the nodes skipped while their retry time is ahead.
    """

    batches: int = 0
    batches_refused: int = 0
    rows: int = 0
    applied: int = 0
    stale: int = 0
    quarantined: int = 0
    refused: int = 0
    conflicts_opened: int = 0
    events: int = 0
    waiting: int = 0
    duration: float = 0.0
    by_node: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    resting: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Head:
    batch_id: int
    node_id: str
    first_seq: int
    last_seq: int
    row_count: int
    checksum: str
    status: str


def _head(conn: Connection, batch_id: int) -> _Head | None:
    b = h.batches.c
    r = conn.execute(
        sa.select(
            b.batch_id, b.node_id, b.first_seq, b.last_seq, b.row_count, b.checksum, b.status
        ).where(b.batch_id == batch_id)
    ).first()
    return None if r is None else _Head(*r)


def _has_earlier(conn: Connection, head: _Head) -> bool:
    b = h.batches.c
    earlier = conn.execute(
        sa.select(b.batch_id)
        .where(b.node_id == head.node_id, b.status == PENDING, b.last_seq < head.last_seq)
        .limit(1)
    ).first()
    return earlier is not None


def load_changes(conn: Connection, batch_id: int) -> list[tuple[int, Change]]:
    """A batch's stored (ord, change) pairs in order, JSON read as text so decimals stay exact."""
    r = h.batch_rows.c
    stmt = (
        sa.select(
            r.ord,
            r.seq,
            r.table_name,
            r.op,
            sa.cast(r.row_key, sa.Text),
            sa.cast(r.row_data, sa.Text),
        )
        .where(r.batch_id == batch_id)
        .order_by(r.ord)
    )
    return [
        (int(ord_), Change.parse(int(seq), table, op, key, data))
        for ord_, seq, table, op, key, data in conn.execute(stmt)
    ]


def _refuse_batch(
    conn: Connection,
    head: _Head,
    audit: AuditWriter,
    now: dt.datetime,
    reason: str,
    computed: str | None = None,
) -> None:
    """Mark a batch the hub cannot trust refused, and audit why; its node goes on."""
    conn.execute(
        h.batches.update()
        .where(h.batches.c.batch_id == head.batch_id)
        .values(status=REFUSED, applied_at=now, stats={"reason": reason})
    )
    audit.append(
        Action.BATCH_REFUSED,
        node_id=head.node_id,
        batch_id=head.batch_id,
        detail={
            "stage": "apply",
            "first_seq": head.first_seq,
            "last_seq": head.last_seq,
            "checksum": head.checksum,
            **({"recomputed": computed} if computed is not None else {}),
            "reason": reason,
        },
    )


def _verify(conn: Connection, head: _Head) -> tuple[list[tuple[int, Change]] | None, str, str]:
    """The batch's changes if they match its checksum, else None, the reason and the sum.

    A stored row Python cannot decode (an integer of more than 4,300 digits, which no syncd
    city can encode) leaves the batch unverifiable: it is refused like an altered one.
    """
    try:
        changes = load_changes(conn, head.batch_id)
    except ValueError as exc:
        reason = (
            f"a row of the stored batch cannot be decoded ({type(exc).__name__}), so the "
            "batch cannot be checked against its checksum"
        )
        return None, reason, ""
    computed = checksum(head.node_id, head.first_seq, head.last_seq, [c.wire() for _, c in changes])
    if computed != head.checksum:
        reason = (
            f"stored batch does not match its checksum {head.checksum} (recomputed {computed}): "
            "it was altered after it was received"
        )
        return None, reason, computed
    return changes, "", computed


def _scrub_refused(
    conn: Connection,
    batch_id: int,
    changes: Sequence[tuple[int, Change]],
    outcomes: Sequence[str],
    policy: Policy,
) -> None:
    """Drop the data of refused rows from the inbox: what the city may not send is not kept."""
    rows = []
    for (ord_, change), outcome in zip(changes, outcomes, strict=True):
        if outcome != "refused":
            continue
        table = policy.tables.get(change.table)
        key = change.wire_key if isinstance(change.wire_key, dict) else {}
        pk = table.primary_key if table is not None else ()
        rows.append(
            {
                "b": batch_id,
                "o": ord_,
                "row_key": {c: key[c] for c in pk if c in key},
                "row_data": None,
            }
        )
    if rows:
        r = h.batch_rows.c
        conn.execute(
            h.batch_rows.update().where(
                r.batch_id == sa.bindparam("b"), r.ord == sa.bindparam("o")
            ),
            rows,
        )


def _finish_batch(
    conn: Connection, head: _Head, counts: Counts, audit: AuditWriter, now: dt.datetime
) -> None:
    stats = counts.as_dict()
    conn.execute(
        h.batches.update()
        .where(h.batches.c.batch_id == head.batch_id)
        .values(status=APPLIED, applied_at=now, stats=stats)
    )
    conn.execute(
        h.nodes.update()
        .where(h.nodes.c.node_id == head.node_id)
        .values(applied_seq=head.last_seq, applied_at=now, **_HEALTHY)
    )
    audit.append(
        Action.BATCH_APPLIED,
        node_id=head.node_id,
        batch_id=head.batch_id,
        detail={
            **stats,
            "first_seq": head.first_seq,
            "last_seq": head.last_seq,
            "checksum": head.checksum,
        },
    )


def _apply_batch(engine: Engine, policy: Policy, batch_id: int) -> Counts | str | None:
    """Apply one batch in one transaction: its counts, REFUSED, or None if it must wait.

    Set-based first; if that fails for a reason that is not transient, the batch is applied
    again row by row (`RowWriter.write_isolated`), so one row the database refuses is
    quarantined and the rest of the batch applies.
    """
    try:
        return _apply_batch_once(engine, policy, batch_id, isolate=False)
    except Exception as exc:
        if is_transient(exc):
            raise
        _log.warning("batch_isolating_rows", batch=batch_id, error=describe_failure(exc))
    return _apply_batch_once(engine, policy, batch_id, isolate=True)


def _apply_batch_once(
    engine: Engine, policy: Policy, batch_id: int, *, isolate: bool
) -> Counts | str | None:
    with translated(f"applying batch {batch_id}"), engine.begin() as conn:
        lock(conn)
        head = _head(conn, batch_id)
        if head is None or head.status != PENDING or _has_earlier(conn, head):
            return None
        audit = AuditWriter(conn)
        now = utcnow()
        changes, why, computed = _verify(conn, head)
        if changes is None:
            _refuse_batch(conn, head, audit, now, why, computed or None)
            audit.flush()
            return REFUSED
        writer = RowWriter(conn, policy, audit, now)
        verdicts = [classify_safely(policy, c) for _, c in changes]
        write = writer.write_isolated if isolate else writer.write
        outcomes = write(head.node_id, batch_id, verdicts)
        _scrub_refused(conn, batch_id, changes, outcomes, policy)
        _finish_batch(conn, head, writer.counts, audit, now)
        audit.flush()
        return writer.counts


# --- a node whose batches fail ----------------------------------------------------------

# What `_finish_batch` writes on a node: a batch that applies clears its failures.
_HEALTHY: dict[str, Any] = {
    "failures": 0,
    "failing_since": None,
    "last_error": None,
    "last_error_at": None,
    "retry_at": None,
}


def backoff_seconds(failures: int, max_backoff: float) -> float:
    """Seconds before a node's next try after its `failures`-th failure in a row (jittered)."""
    base = min(max_backoff, 0.5 * 2.0 ** min(failures - 1, 30))
    return float(base * random.uniform(0.8, 1.0))


def record_node_failure(
    engine: Engine, node_id: str, message: str, max_backoff: float
) -> dt.datetime:
    """Record a failed apply on the node and when to try it again; returns that time.

    In its own transaction (the batch's rolled back). `status` and metrics show it until a
    batch of the node applies (`_finish_batch` clears it).
    """
    n = h.nodes.c
    with translated("recording a node's apply failure"), engine.begin() as conn:
        found = conn.execute(
            sa.select(n.failures, n.failing_since).where(n.node_id == node_id).with_for_update()
        ).first()
        if found is None:
            raise SyncdError(f"node {node_id} is not registered at this hub")
        failures = int(found.failures or 0) + 1
        now = utcnow()
        retry_at = now + dt.timedelta(seconds=backoff_seconds(failures, max_backoff))
        conn.execute(
            h.nodes.update()
            .where(n.node_id == node_id)
            .values(
                failures=failures,
                failing_since=found.failing_since or now,
                last_error=message,
                last_error_at=now,
                retry_at=retry_at,
            )
        )
    return retry_at


def _resting(engine: Engine) -> set[str]:
    """Nodes whose last apply failed and whose retry time has not come."""
    n = h.nodes.c
    with translated("reading node health"), engine.connect() as conn:
        rows = conn.execute(sa.select(n.node_id).where(n.retry_at > utcnow())).scalars()
        return {str(r) for r in rows}


def audit_inbox_events(engine: Engine) -> int:
    """Turn the submit path's unaudited events (duplicates, refusals) into audit entries."""
    e = h.inbox_events.c
    with translated("auditing inbox events"), engine.begin() as conn:
        lock(conn)
        events = conn.execute(
            sa.select(
                e.event_id, e.node_id, e.kind, e.first_seq, e.last_seq, e.checksum, e.reason, e.at
            )
            .where(e.audited == sa.false())
            .order_by(e.event_id)
        ).all()
        if not events:
            return 0
        audit = AuditWriter(conn)
        for ev in events:
            action = BATCH_DUPLICATE if ev.kind == "duplicate" else Action.BATCH_REFUSED
            audit.append(
                action,
                node_id=ev.node_id,
                detail={
                    "stage": "submit",
                    "event_id": ev.event_id,
                    "first_seq": ev.first_seq,
                    "last_seq": ev.last_seq,
                    "checksum": ev.checksum,
                    "reason": ev.reason,
                    "at": ev.at,
                },
            )
        for chunk in chunks([int(ev.event_id) for ev in events]):
            conn.execute(h.inbox_events.update().where(e.event_id.in_(chunk)).values(audited=True))
        audit.flush()
    return len(events)


def _pending(engine: Engine) -> list[tuple[int, str]]:
    """Pending batches, each node's in sequence order, nodes taking turns."""
    b = h.batches.c
    with translated("reading pending batches"), engine.connect() as conn:
        rows = conn.execute(
            sa.select(b.batch_id, b.node_id)
            .where(b.status == PENDING)
            .order_by(b.node_id, b.last_seq)
        ).all()
    queues: dict[str, list[int]] = defaultdict(list)
    for batch_id, node_id in rows:
        queues[node_id].append(int(batch_id))
    order: list[tuple[int, str]] = []
    depth = max((len(q) for q in queues.values()), default=0)
    for i in range(depth):
        order.extend((q[i], node) for node, q in queues.items() if i < len(q))
    return order


@dataclass
class _Tally:
    batches: int = 0
    batches_refused: int = 0
    counts: Counts = field(default_factory=Counts)
    by_node: dict[str, Counts] = field(default_factory=dict)
    node_batches: dict[str, int] = field(default_factory=dict)

    def add(self, node_id: str, counts: Counts) -> None:
        self.batches += 1
        self.node_batches[node_id] = self.node_batches.get(node_id, 0) + 1
        node = self.by_node.setdefault(node_id, Counts())
        for name, value in counts.as_dict().items():
            setattr(self.counts, name, getattr(self.counts, name) + value)
            setattr(node, name, getattr(node, name) + value)


def apply_pending(
    engine: Engine,
    policy: Policy,
    *,
    max_batches: int | None = None,
    max_backoff: float = 30.0,
) -> ApplySummary:
    """Apply every pending batch (at most max_batches), each in its own transaction.

    A batch waits while its node has an earlier pending batch. A node whose batch fails is
    recorded as failing (`record_node_failure`) and left until its retry time, backing off
    up to `max_backoff` seconds, while the other nodes go on: one node's failure never stops
    or slows another. Only a failure to record that (the hub's database itself failing) is
    raised.
    """
    started = time.monotonic()
    events = audit_inbox_events(engine)
    tally = _Tally()
    resting = _resting(engine)
    blocked: set[str] = set(resting)
    failed: dict[str, str] = {}
    pending = _pending(engine)
    for batch_id, node_id in pending:
        if max_batches is not None and tally.batches + tally.batches_refused >= max_batches:
            break
        if node_id in blocked:
            continue
        try:
            outcome = _apply_batch(engine, policy, batch_id)
        except Exception as exc:
            failed[node_id] = f"batch {batch_id}: {describe_failure(exc)}"
            _log.error("batch_apply_failed", node=node_id, batch=batch_id, error=failed[node_id])
            blocked.add(node_id)
            try:
                record_node_failure(engine, node_id, failed[node_id], max_backoff)
            except SyncdError:
                raise exc from None  # the hub's database is failing, not this node
            continue
        if outcome is None:
            blocked.add(node_id)
        elif outcome == REFUSED:
            tally.batches_refused += 1
            _log.warning("batch_refused", node=node_id, batch=batch_id)
        elif isinstance(outcome, Counts):
            tally.add(node_id, outcome)
            _log.info("batch_applied", node=node_id, batch=batch_id, **outcome.as_dict())
    c = tally.counts
    return ApplySummary(
        batches=tally.batches,
        batches_refused=tally.batches_refused,
        rows=c.rows,
        applied=c.applied,
        stale=c.stale,
        quarantined=c.quarantined,
        refused=c.refused,
        conflicts_opened=c.conflicts_opened,
        events=events,
        waiting=len(pending) - tally.batches - tally.batches_refused,
        duration=time.monotonic() - started,
        by_node={
            n: {**counts.as_dict(), "batches": tally.node_batches[n]}
            for n, counts in tally.by_node.items()
        },
        failed=failed,
        resting=tuple(sorted(resting)),
    )


# --- children and their parents -----------------------------------------------------------


def orphans(conn: Connection, policy: Policy) -> dict[str, int]:
    """Live child rows per table whose parent has no live source record from their city.

    Children are never dropped for a missing parent: they link to it through (origin_node,
    parent key) — and from the parent's source record by identity to its golden record — as
    soon as it arrives, so nothing stored per child needs fixing up later.
    """
    counts: dict[str, int] = {}
    for table in policy.public_tables:
        if table.parent is None:
            continue
        child = source_table(policy, table)
        parent = source_table(policy, policy.table(table.parent.table))
        on = sa.and_(
            parent.c[h.ORIGIN] == child.c[h.ORIGIN],
            parent.c._deleted == sa.false(),
            *(parent.c[p] == child.c[c] for c, p in table.parent.columns.items()),
        )
        stmt = (
            sa.select(sa.func.count())
            .select_from(child)
            .where(child.c._deleted == sa.false(), ~sa.exists().where(on))
        )
        counts[table.name] = int(conn.execute(stmt).scalar_one())
    return counts
