"""The city's push cycle: changelog → policy → coalesced, capped batches → the hub's inbox.

The position is the hub's: a city starts every cycle from the hub's watermark for its node, so
a crash between submitting and recording locally costs one duplicate submission, never a loss.
The changelog is trimmed only below that watermark. Every batch put on the wire is recorded in
the egress ledger (`syncd.city.egress`), which trimming never touches.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.city import egress
from syncd.core.agreement import fingerprint, stamp
from syncd.core.batch import (
    Batch,
    Captured,
    Change,
    SubmitResult,
    SubmitStatus,
    coalesce,
    make_batch,
    to_change,
)
from syncd.core.downlink import DownBatch
from syncd.core.egress import EgressEntry
from syncd.core.errors import BatchRefused, DatabaseError
from syncd.core.logs import get_logger
from syncd.core.policy import Policy
from syncd.core.settings import Settings
from syncd.core.transport import decode_image
from syncd.store.city_tables import changelog, city_state
from syncd.store.db import translated, utcnow
from syncd.store.dialect import dialect_for
from syncd.store.health import ERROR_KEY, put_state

log = get_logger("syncd.city.push")

STATE_ACKED = "acked"
STATE_ERROR = ERROR_KEY
STATE_PUSH = "last_push"


@dataclass
class PushResult:
    batches: int = 0
    rows: int = 0
    covered: int = 0
    duplicates: int = 0
    acked_seq: int = 0
    horizon: int | None = None
    by_table: dict[str, int] = field(default_factory=dict)


@dataclass
class GapGuard:
    """Gap safety on PostgreSQL: ship only a prefix of sequences no running transaction can hold.

    Sequence numbers are taken when a change is written, not when its transaction commits, so
    seq 10 may become visible after seq 11. Reading the sequence's high-water mark C and then a
    snapshot's xmax X: every transaction holding a number ≤ C already had an xid < X (its
    business row was written before the AFTER trigger took the number). Once the oldest
    running xid (snapshot xmin) reaches X, all of them have committed or rolled back, so every
    change ≤ C is visible or gone for good, and shipping up to C can skip nothing.
    """

    pending: list[tuple[int, int]] = field(default_factory=list)
    confirmed: int = 0

    def horizon(self, conn: Connection, wait_seconds: float) -> int:
        high, xmax = conn.execute(
            sa.text(
                "SELECT coalesce(pg_sequence_last_value("
                "pg_get_serial_sequence('syncd_changelog', 'seq')::regclass), 0), "
                "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
            )
        ).one()
        self.pending.append((int(high), int(xmax)))
        deadline = time.monotonic() + wait_seconds
        while True:
            xmin = int(
                conn.execute(
                    sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                ).scalar_one()
            )
            done = [c for c, x in self.pending if xmin >= x]
            if done:
                self.confirmed = max(self.confirmed, *done)
                self.pending = [(c, x) for c, x in self.pending if xmin < x]
            if not self.pending or time.monotonic() >= deadline:
                return self.confirmed
            time.sleep(0.005)


def read_changes(conn: Connection, after: int, upto: int | None, limit: int) -> list[Captured]:
    """Changelog rows after a sequence, in order; JSON parsed with exact decimals.

    Values that cannot travel (text that is not UTF-8, a NUL character) arrive as stand-ins
    (`syncd.core.transport`); a row that is not JSON at all fails naming its sequence, never
    its data.
    """
    # SQLite's JSON text holds whatever bytes the CRM wrote: read bytes, decode in Python.
    # PostgreSQL's jsonb is valid UTF-8 without NUL, and is read as text as it always was.
    raw = sa.LargeBinary().with_variant(sa.Text(), "postgresql")
    q = (
        sa.select(
            changelog.c.seq,
            changelog.c.table_name,
            changelog.c.op,
            sa.cast(changelog.c.row_image, raw),
            sa.cast(changelog.c.old_filter, raw),
        )
        .where(changelog.c.seq > after)
        .order_by(changelog.c.seq)
        .limit(limit)
    )
    if upto is not None:
        q = q.where(changelog.c.seq <= upto)
    captured = []
    for seq, table, op, image, old in conn.execute(q):
        try:
            parsed = decode_image(image), decode_image(old) if old else None
        except ValueError as exc:
            raise DatabaseError(f"changelog row {seq} ({table}) is not a JSON document") from exc
        captured.append(Captured(int(seq), table, op, *parsed, len(image)))
    return captured


def cut_batch(
    node_id: str, policy: Policy, captured: Sequence[Captured], max_bytes: int
) -> tuple[Batch, int]:
    """Build one batch from the front of `captured`; returns it and how many rows it covers."""
    changes: list[Change] = []
    size = 0
    used = 0
    for row in captured:
        change = to_change(policy, row)
        if change is not None:
            n = row.size
            if changes and size + n > max_bytes:
                break
            size += n
            changes.append(change)
        used += 1
    last_seq = captured[used - 1].seq
    batch = make_batch(node_id, captured[0].seq, last_seq, coalesce(changes), stamp(policy))
    return batch, used


class Hub(Protocol):
    """What a city needs of its hub (`syncd.hub.inbox.HubInbox`, wired by `syncd.app`)."""

    engine: Engine

    def watermark(self) -> int: ...

    def submit(self, batch: Batch) -> SubmitResult: ...

    def report(self) -> dict[str, Any]: ...

    def fetch_insights(self, after: int, limit: int) -> list[DownBatch]: ...

    def ack_insights(self, seq: int) -> int: ...

    def insight_summary(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Pusher:
    """One city's push side; `push_once` is the unit the scheduler and `sync --once` run."""

    def __init__(self, settings: Settings, policy: Policy, city: Engine, hub: Hub) -> None:
        self.settings = settings
        self.policy = policy
        self.city = city
        self.hub = hub
        self.node_id = settings.node.id
        # None where sequence order is commit order (SQLite serialises writers).
        self.guard = GapGuard() if dialect_for(city).sequence_gaps else None
        self._recorded_acked: int | None = None  # what the state table holds, once written
        self.policy_fingerprint = fingerprint(policy)

    def _horizon(self) -> int | None:
        if self.guard is None:
            return None
        with self.city.connect() as conn:
            h = self.guard.horizon(conn, self.settings.sync.gap_wait_seconds)
            conn.rollback()
        return h

    def push_once(
        self, max_batches: int | None = None, stop: threading.Event | None = None
    ) -> PushResult:
        """Ship everything safe to ship now, batch by batch; stop at the first refusal.

        `stop` is checked between batches, so SIGTERM after a long outage does not wait for
        the whole backlog: every submitted batch is complete, the rest waits for next time.
        """
        result = PushResult()
        acked = self.hub.watermark()
        result.acked_seq = acked
        self.settle_egress(acked)
        result.horizon = self._horizon()
        cfg = self.settings.sync
        while max_batches is None or result.batches < max_batches:
            if stop is not None and stop.is_set():
                break
            with translated("reading the changelog"), self.city.connect() as conn:
                captured = read_changes(conn, acked, result.horizon, cfg.batch_rows)
                conn.rollback()
            if not captured:
                break
            batch, used = cut_batch(self.node_id, self.policy, captured, cfg.batch_bytes)
            started = time.monotonic()
            outcome = self._submit(batch, used)
            acked = batch.last_seq
            result.batches += 1
            result.rows += batch.row_count
            result.covered += used
            result.duplicates += outcome.status is SubmitStatus.DUPLICATE
            for ch in batch.changes:
                result.by_table[ch.table] = result.by_table.get(ch.table, 0) + 1
            log.info(
                "batch_submitted",
                first_seq=batch.first_seq,
                last_seq=batch.last_seq,
                rows=batch.row_count,
                covered=used,
                status=outcome.status,
                ms=round((time.monotonic() - started) * 1000, 1),
            )
        result.acked_seq = acked
        self.record_push(result)
        return result

    def _submit(self, batch: Batch, covered: int) -> SubmitResult:
        """Submit one batch, recorded in the egress ledger before it goes and when answered."""
        egress.record_sent(self.city, batch, covered, self.policy_fingerprint)
        outcome = self.hub.submit(batch)
        egress.record_answer(self.city, batch, outcome)
        if outcome.status is SubmitStatus.REFUSED:
            # Recorded by the daemon as the cycle's failure (store.health), like any other.
            raise BatchRefused(
                f"hub refused batch ({self.node_id}, {batch.last_seq}): {outcome.reason}"
            )
        return outcome

    def settle_egress(self, acked: int) -> None:
        """Give every ledger row still `sent` its answer (see `syncd.city.egress`).

        A batch past the hub's watermark was not kept by the hub: no answer will come. One at
        or below it was, unless another batch took its place: it is rebuilt from the changelog
        and submitted again, and the hub's 'duplicate' answer tells which.
        """
        with translated("reading the egress ledger"), self.city.connect() as conn:
            unsettled = egress.pending(conn)
            conn.rollback()
        for entry in unsettled:
            batch = self._rebuild(entry) if entry.last_seq <= acked else None
            if batch is None:
                egress.mark_unacknowledged(self.city, entry)
                continue
            outcome = self.hub.submit(batch)
            egress.record_answer(self.city, batch, outcome)
            log.info("egress_settled", last_seq=batch.last_seq, status=outcome.status)

    def _rebuild(self, entry: EgressEntry) -> Batch | None:
        """The ledger entry's batch again, or None if the changelog no longer yields it."""
        with translated("reading the changelog"), self.city.connect() as conn:
            captured = read_changes(conn, entry.first_seq - 1, entry.last_seq, entry.covered + 1)
            conn.rollback()
        if len(captured) != entry.covered or not captured or captured[0].seq != entry.first_seq:
            return None
        changes = [c for c in (to_change(self.policy, row) for row in captured) if c is not None]
        batch = make_batch(self.node_id, entry.first_seq, entry.last_seq, coalesce(changes))
        return batch if batch.checksum == entry.checksum else None

    def record_push(self, result: PushResult) -> None:
        """Record what moved; an idle cycle writes nothing (no write lock taken every second)."""
        if result.batches == 0 and result.acked_seq == self._recorded_acked:
            return
        now = utcnow()
        with translated("recording push state"), self.city.begin() as conn:
            set_state(conn, STATE_ACKED, {"seq": result.acked_seq, "at": now.isoformat()})
            set_state(
                conn,
                STATE_PUSH,
                {"at": now.isoformat(), "batches": result.batches, "rows": result.rows},
            )
        self._recorded_acked = result.acked_seq

    def trim(self) -> int:
        """Delete acknowledged changelog rows older than the retention; never anything else.

        The egress ledger is never trimmed, and the changelog rows of a batch still `sent` in
        it are kept until the next push cycle settles it from them.
        """
        acked = self.hub.watermark()
        retention = self.settings.sync.trim_retention_seconds
        with translated("trimming the changelog"), self.city.begin() as conn:
            floor = egress.pending_floor(conn)
            q = changelog.delete().where(changelog.c.seq <= acked)
            if floor is not None:
                q = q.where(changelog.c.seq < floor)
            if retention > 0:
                # captured_at is written by the database clock; compare with the same clock.
                q = q.where(changelog.c.captured_at < dialect_for(conn).minus_seconds(retention))
            deleted = conn.execute(q).rowcount
        if deleted:
            log.info("changelog_trimmed", upto=acked, rows=deleted)
        return int(deleted or 0)


def set_state(conn: Connection, key: str, value: Any) -> None:
    put_state(conn, city_state, key, value)


def get_state(conn: Connection) -> dict[str, Any]:
    return {str(k): v for k, v in conn.execute(sa.select(city_state.c.key, city_state.c.value))}


def utc_age(iso: str | None) -> float | None:
    if not iso:
        return None
    return (utcnow() - dt.datetime.fromisoformat(iso)).total_seconds()
