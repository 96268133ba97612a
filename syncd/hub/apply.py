"""The hub's single writer: pending batches become source records, golden records and audit.

One transaction per batch holds every effect of it — validation verdicts, source records, the
golden records they change, the conflict queue, quarantine entries, audit entries, the batch's
status and the node's watermark — so a batch is applied entirely or not at all, and a killed
hub resumes at the first batch still pending. Batches of one node apply in sequence order;
ordering between versions of a row is by the city's own sequence, never by a clock.

This module owns the batch's lifecycle: pending batches in turn, each verified against its
checksum, written by `syncd.hub.rows.RowWriter` (set-based per table), marked applied or
refused; a node whose batch fails backs off without holding up the others.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.core.batch import SubmitStatus, checksum, payload_checksum
from syncd.core.errors import SyncdError
from syncd.core.logs import get_logger
from syncd.core.policy import Policy
from syncd.core.validate import Change
from syncd.hub import payload
from syncd.hub.audit import Action, AuditWriter
from syncd.hub.nodes import HEALTHY, record_node_failure, resting_nodes
from syncd.hub.rows import RowCounts, RowOutcome, RowWriter, classify_safely
from syncd.store import hub_tables as h
from syncd.store.bulk import chunks, lock, source_table
from syncd.store.db import describe_failure, is_transient, translated, utcnow
from syncd.store.dialect import Kind, dialect_for

_log = get_logger(__name__)


@dataclass(frozen=True)
class _BatchCounts:
    batches: int = 0
    batches_refused: int = 0


@dataclass(frozen=True)
class ApplySummary(RowCounts, _BatchCounts):
    """What one apply cycle did; `duration` in seconds.

    Fields in order: the batch counts, the row counts (`RowCounts`), then the rest. `by_node`
    holds each node's batch and row counts; `failed` each node whose batch failed (not for one
    row) with what failed; `resting` the nodes skipped while their retry time is ahead.
    """

    events: int = 0
    waiting: int = 0
    duration: float = 0.0
    by_node: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    resting: tuple[str, ...] = ()
    # Applied rows per public table: what `refresh_statistics` weighs against table sizes.
    tables: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """One try at a batch: applied (with its row counts), refused, or still pending.

    A batch stays pending while an earlier batch of its node is, or when another writer has
    already taken it.
    """

    status: h.BatchStatus
    counts: RowCounts = field(default_factory=RowCounts)
    tables: dict[str, int] = field(default_factory=dict)


_WAITS = BatchResult(h.BatchStatus.PENDING)
_REFUSED = BatchResult(h.BatchStatus.REFUSED)


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
        .where(
            b.node_id == head.node_id, b.status == h.BatchStatus.PENDING, b.last_seq < head.last_seq
        )
        .limit(1)
    ).first()
    return earlier is not None


def stored_payload(conn: Connection, batch_id: int) -> str | None:
    """The batch's payload text, or None for a batch stored row by row (an older city's)."""
    b = h.batches.c
    return conn.execute(sa.select(b.payload).where(b.batch_id == batch_id)).scalar()


def load_changes(conn: Connection, batch_id: int) -> list[tuple[int, Change]]:
    """A batch's stored (ord, change) pairs in order, decimals exact.

    From its payload (`syncd.hub.payload`), or from `syncd_inbox_row` for a batch an older
    city submitted row by row. A payload that cannot be read raises ValueError with why.
    """
    text = stored_payload(conn, batch_id)
    if text is not None:
        changes, why = payload.read(text)
        if changes is None:
            raise ValueError(why)
        return list(enumerate(changes))
    return _load_rows(conn, batch_id)


def _load_rows(conn: Connection, batch_id: int) -> list[tuple[int, Change]]:
    """A row-by-row batch's changes, JSON read as text so decimals stay exact."""
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
        .values(status=h.BatchStatus.REFUSED, applied_at=now, stats={"reason": reason})
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
    text = stored_payload(conn, head.batch_id)
    if text is not None:
        # The payload as the city sent it: its checksum is one hash, checked before parsing.
        computed = payload_checksum(head.node_id, head.first_seq, head.last_seq, text)
        if computed != head.checksum:
            return None, _altered(head, computed), computed
        found, why = payload.read(text)
        if found is None:
            return None, f"the stored batch cannot be read: {why}", computed
        return list(enumerate(found)), "", computed
    try:
        changes = _load_rows(conn, head.batch_id)
    except ValueError as exc:
        reason = (
            f"a row of the stored batch cannot be decoded ({type(exc).__name__}), so the "
            "batch cannot be checked against its checksum"
        )
        return None, reason, ""
    computed = checksum(head.node_id, head.first_seq, head.last_seq, [c.wire() for _, c in changes])
    if computed != head.checksum:
        return None, _altered(head, computed), computed
    return changes, "", computed


def _altered(head: _Head, computed: str) -> str:
    return (
        f"stored batch does not match its checksum {head.checksum} (recomputed {computed}): "
        "it was altered after it was received"
    )


def _scrub_refused(
    conn: Connection,
    batch_id: int,
    changes: Sequence[tuple[int, Change]],
    outcomes: Sequence[RowOutcome],
    policy: Policy,
) -> None:
    """Drop the data of refused rows from the inbox: what the city may not send is not kept."""
    drop: dict[int, dict[str, Any]] = {}
    for (ord_, change), outcome in zip(changes, outcomes, strict=True):
        if outcome is not RowOutcome.REFUSED:
            continue
        table = policy.tables.get(change.table)
        key = change.wire_key if isinstance(change.wire_key, dict) else {}
        pk = table.primary_key if table is not None else ()
        drop[ord_] = {c: key[c] for c in pk if c in key}
    if not drop:
        return
    b = h.batches.c
    has_payload = conn.execute(
        sa.select(b.payload.is_not(None)).where(b.batch_id == batch_id)
    ).scalar()
    if has_payload:  # asked, not read again: the text is megabytes, the answer one flag
        text = payload.scrubbed([c for _, c in changes], drop)
        conn.execute(
            h.batches.update().where(h.batches.c.batch_id == batch_id).values(payload=text)
        )
        return
    rows = [{"b": batch_id, "o": o, "row_key": k, "row_data": None} for o, k in drop.items()]
    if rows:
        r = h.batch_rows.c
        conn.execute(
            h.batch_rows.update().where(
                r.batch_id == sa.bindparam("b"), r.ord == sa.bindparam("o")
            ),
            rows,
        )


def _refused_rows(counts: RowCounts, last_reason: str | None, now: dt.datetime) -> dict[str, Any]:
    """The node's refused-row columns after a batch: counted, with the last reason (status)."""
    if not counts.refused:
        return {}
    return {
        "refused_rows": h.nodes.c.refused_rows + counts.refused,
        "last_refused_reason": last_reason,
        "last_refused_at": now,
    }


def _finish_batch(
    conn: Connection,
    head: _Head,
    writer: RowWriter,
    audit: AuditWriter,
    now: dt.datetime,
) -> None:
    counts = writer.counts
    stats = counts.as_dict()
    conn.execute(
        h.batches.update()
        .where(h.batches.c.batch_id == head.batch_id)
        .values(status=h.BatchStatus.APPLIED, applied_at=now, stats=stats)
    )
    conn.execute(
        h.nodes.update()
        .where(h.nodes.c.node_id == head.node_id)
        .values(
            applied_seq=head.last_seq,
            applied_at=now,
            **HEALTHY,
            **_refused_rows(counts, writer.last_refused, now),
        )
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


def _apply_batch(engine: Engine, policy: Policy, batch_id: int) -> BatchResult:
    """Apply one batch in one transaction, or refuse it, or leave it pending.

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
) -> BatchResult:
    with translated(f"applying batch {batch_id}"), engine.begin() as conn:
        lock(conn)
        head = _head(conn, batch_id)
        if head is None or head.status != h.BatchStatus.PENDING or _has_earlier(conn, head):
            return _WAITS
        audit = AuditWriter(conn)
        now = utcnow()
        changes, why, computed = _verify(conn, head)
        if changes is None:
            _refuse_batch(conn, head, audit, now, why, computed or None)
            audit.flush()
            return _REFUSED
        writer = RowWriter(conn, policy, audit, now)
        verdicts = [classify_safely(policy, c) for _, c in changes]
        write = writer.write_isolated if isolate else writer.write
        outcomes = write(head.node_id, batch_id, verdicts)
        _scrub_refused(conn, batch_id, changes, outcomes, policy)
        _finish_batch(conn, head, writer, audit, now)
        audit.flush()
        tables: dict[str, int] = defaultdict(int)
        for v, outcome in zip(verdicts, outcomes, strict=True):
            if outcome is RowOutcome.APPLIED:
                tables[v.change.table] += 1
        return BatchResult(h.BatchStatus.APPLIED, writer.counts, dict(tables))


def _audit_reconcile(audit: AuditWriter, ev: sa.Row[Any]) -> None:
    """A city's reconcile summary, as it recorded it (a malformed one is kept as text)."""
    try:
        summary: Any = json.loads(ev.reason)
    except ValueError:
        summary = {"unreadable": ev.reason[:200]}
    audit.append(
        Action.RECONCILE,
        node_id=ev.node_id,
        detail={"stage": "reconcile", "event_id": ev.event_id, "summary": summary, "at": ev.at},
    )


def audit_inbox_events(engine: Engine) -> int:
    """Turn the submit path's unaudited events (duplicates, refusals, reconcile summaries) into
    audit entries."""
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
            if ev.kind == h.RECONCILE_EVENT:
                _audit_reconcile(audit, ev)
                continue
            action = (
                Action.BATCH_DUPLICATE
                if ev.kind == SubmitStatus.DUPLICATE
                else Action.BATCH_REFUSED
            )
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
            .where(b.status == h.BatchStatus.PENDING)
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
    counts: RowCounts = field(default_factory=RowCounts)
    by_node: dict[str, RowCounts] = field(default_factory=dict)
    node_batches: dict[str, int] = field(default_factory=dict)

    tables: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, node_id: str, counts: RowCounts, tables: dict[str, int]) -> None:
        for name, n in tables.items():
            self.tables[name] += n
        self.batches += 1
        self.node_batches[node_id] = self.node_batches.get(node_id, 0) + 1
        self.counts += counts
        self.by_node[node_id] = self.by_node.get(node_id, RowCounts()) + counts


def apply_pending(
    engine: Engine,
    policy: Policy,
    *,
    max_batches: int | None = None,
    max_backoff: float = 30.0,
    retry_resting: bool = False,
    stop: threading.Event | None = None,
) -> ApplySummary:
    """Apply every pending batch (at most max_batches), each in its own transaction.

    A batch waits while its node has an earlier pending batch. A node whose batch fails is
    recorded as failing (`record_node_failure`) and left until its retry time, backing off
    up to `max_backoff` seconds, while the other nodes go on: one node's failure never stops
    or slows another. Only a failure to record that (the hub's database itself failing) is
    raised. `retry_resting` tries failing nodes now (`sync --once`: an operator asks). A
    failure once `stop` is set is the daemon's shutdown cancelling the batch, not the node's:
    it is raised, not recorded.
    """
    started = time.monotonic()
    events = audit_inbox_events(engine)
    tally = _Tally()
    resting = set() if retry_resting else resting_nodes(engine)
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
            if stop is not None and stop.is_set():
                raise
            failed[node_id] = f"batch {batch_id}: {describe_failure(exc)}"
            _log.error("batch_apply_failed", node=node_id, batch=batch_id, error=failed[node_id])
            blocked.add(node_id)
            try:
                record_node_failure(engine, node_id, failed[node_id], max_backoff)
            except SyncdError:
                raise exc from None  # the hub's database is failing, not this node
            continue
        if outcome.status is h.BatchStatus.PENDING:
            blocked.add(node_id)
        elif outcome.status is h.BatchStatus.REFUSED:
            tally.batches_refused += 1
            _log.warning("batch_refused", node=node_id, batch=batch_id)
        else:
            tally.add(node_id, outcome.counts, outcome.tables)
            _log.info("batch_applied", node=node_id, batch=batch_id, **outcome.counts.as_dict())
    return ApplySummary(
        batches=tally.batches,
        batches_refused=tally.batches_refused,
        **tally.counts.as_dict(),
        events=events,
        waiting=len(pending) - tally.batches - tally.batches_refused,
        duration=time.monotonic() - started,
        by_node={
            n: {**counts.as_dict(), "batches": tally.node_batches[n]}
            for n, counts in tally.by_node.items()
        },
        failed=failed,
        resting=tuple(sorted(resting)),
        tables=dict(tally.tables),
    )


# --- planner statistics ---------------------------------------------------------------------

# After a cycle that applied at least ANALYZE_MIN_ROWS rows to a table, and at least
# ANALYZE_FRACTION of the rows the planner believes it holds (pg_class.reltuples; a table
# never analyzed counts as empty), the cycle runs ANALYZE on that table's hub tables. Without
# it the planner plans the report views on a bulk load's stale statistics until autovacuum
# gets round to it (the exposure report: 30 s after a load, 0.2 s after ANALYZE).
ANALYZE_MIN_ROWS = 10_000
ANALYZE_FRACTION = 0.10


def stale_statistics(engine: Engine, policy: Policy, applied: dict[str, int]) -> list[str]:
    """The hub tables whose statistics a cycle that applied `applied` rows made stale."""
    if dialect_for(engine).kind is not Kind.POSTGRES:
        return []  # SQLite (demo): the planner does without; nothing to refresh
    names: dict[str, int] = {}
    for table_name, n in applied.items():
        table = policy.tables.get(table_name)
        if table is None or n < ANALYZE_MIN_ROWS:
            continue
        names[source_table(policy, table).name] = n
        if table.identity:
            names[table.name] = n
    if not names:
        return []
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT c.relname, c.reltuples FROM pg_class c "
                "WHERE c.relnamespace = current_schema()::regnamespace "
                "AND c.relname = ANY(:names)"
            ),
            {"names": list(names)},
        ).all()
    sizes: dict[str, float] = {str(r[0]): float(r[1]) for r in found}
    return sorted(
        name for name, n in names.items() if n >= ANALYZE_FRACTION * max(sizes.get(name, 0), 0)
    )


def refresh_statistics(engine: Engine, policy: Policy, applied: dict[str, int]) -> list[str]:
    """ANALYZE the hub tables a bulk apply changed much (see ANALYZE_MIN_ROWS); returns them.

    Cheap by design: the counts come from the cycle, the sizes from pg_class, and ANALYZE
    reads a fixed-size sample whatever the table's size. A failure is logged, never raised:
    statistics are an optimisation, the apply has committed.
    """
    try:
        tables = stale_statistics(engine, policy, applied)
        if not tables:
            return []
        started = time.monotonic()
        with engine.begin() as conn:
            quote = conn.dialect.identifier_preparer.quote
            for name in tables:
                conn.execute(sa.text(f"ANALYZE {quote(name)}"))
        _log.info(
            "statistics_refreshed", tables=tables, seconds=round(time.monotonic() - started, 2)
        )
        return tables
    except Exception as exc:
        _log.warning("statistics_not_refreshed", error=describe_failure(exc))
        return []


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
