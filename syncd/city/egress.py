"""The city's egress ledger: one row per batch put on the wire, kept for good.

Crash safety. A batch is recorded `sent` in the city's database *before* it is submitted and
answered after. The hub is the source of truth for position, and a city starts every cycle
from the hub's watermark, so a batch the hub kept before the city could record the answer is
never submitted again by the normal cycle: its ledger row would stay `sent` for ever. The push
cycle therefore settles every `sent` row first (`Pusher.settle_egress`): a batch past the
hub's watermark was not kept (`unacknowledged`); one at or below it is rebuilt from the
changelog and submitted again, and the hub's 'duplicate' answer, with its batch id, is
recorded. Trim keeps the changelog rows of `sent` batches until they are settled, and never
touches the ledger. Rows are keyed by (last_seq, checksum): sending the same batch again
never adds a row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.core.agreement import fingerprint, public_shape
from syncd.core.batch import Batch, SubmitResult, SubmitStatus
from syncd.core.egress import (
    EgressEntry,
    EgressStatus,
    EgressSummary,
    carried,
    statement,
    summarise,
)
from syncd.core.policy import Policy
from syncd.store.city_tables import egress
from syncd.store.db import translated, utcnow

_ANSWER = {
    SubmitStatus.ACCEPTED: EgressStatus.ACCEPTED,
    SubmitStatus.DUPLICATE: EgressStatus.DUPLICATE,
    SubmitStatus.REFUSED: EgressStatus.REFUSED,
}


def _key(last_seq: int, checksum: str) -> sa.ColumnElement[bool]:
    return sa.and_(egress.c.last_seq == last_seq, egress.c.checksum == checksum)


def record_sent(engine: Engine, batch: Batch, covered: int, policy_fp: str) -> None:
    """Record a batch as on its way, before it is submitted (its own committed transaction)."""
    with translated("recording the egress ledger"), engine.begin() as conn:
        key = _key(batch.last_seq, batch.checksum)
        known = conn.execute(sa.select(egress.c.acknowledged_at).where(key)).first()
        if known is None:
            conn.execute(
                egress.insert().values(
                    last_seq=batch.last_seq,
                    checksum=batch.checksum,
                    first_seq=batch.first_seq,
                    covered=covered,
                    row_count=batch.row_count,
                    carried=carried(batch.changes),
                    policy_fingerprint=policy_fp,
                    status=EgressStatus.SENT.value,
                    sent_at=utcnow(),
                )
            )
        elif known.acknowledged_at is None:
            # Sent again after a refusal or a lost answer: pending until this answer.
            conn.execute(egress.update().where(key).values(status=EgressStatus.SENT.value))


def record_answer(engine: Engine, batch: Batch, outcome: SubmitResult) -> None:
    """Record the hub's answer; an acknowledgement already recorded is kept as it was."""
    status = _ANSWER[outcome.status]
    values: dict[str, Any] = {"status": status.value}
    if status.acknowledged:
        values.update(hub_batch_id=outcome.batch_id, acknowledged_at=utcnow())
    with translated("recording the egress ledger"), engine.begin() as conn:
        conn.execute(
            egress.update()
            .where(_key(batch.last_seq, batch.checksum), egress.c.acknowledged_at.is_(None))
            .values(**values)
        )


def pending(conn: Connection) -> list[EgressEntry]:
    """Batches recorded as sent whose answer was never recorded, oldest first."""
    q = sa.select(egress).where(egress.c.status == EgressStatus.SENT.value)
    return [_entry(r) for r in conn.execute(q.order_by(egress.c.last_seq))]


def mark_unacknowledged(engine: Engine, entry: EgressEntry) -> None:
    with translated("recording the egress ledger"), engine.begin() as conn:
        conn.execute(
            egress.update()
            .where(_key(entry.last_seq, entry.checksum), egress.c.acknowledged_at.is_(None))
            .values(status=EgressStatus.UNACKNOWLEDGED.value)
        )


def pending_floor(conn: Connection) -> int | None:
    """The first changelog sequence a `sent` batch covers: trim keeps it until it is settled."""
    q = sa.select(sa.func.min(egress.c.first_seq)).where(egress.c.status == EgressStatus.SENT.value)
    value = conn.execute(q).scalar()
    return None if value is None else int(value)


def entries(
    conn: Connection, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> list[EgressEntry]:
    """The ledger's rows sent in [since, until), in ledger order (sequence, then checksum)."""
    q = sa.select(egress)
    if since is not None:
        q = q.where(egress.c.sent_at >= since)
    if until is not None:
        q = q.where(egress.c.sent_at < until)
    q = q.order_by(egress.c.last_seq, egress.c.sent_at, egress.c.checksum)
    return [_entry(r) for r in conn.execute(q)]


def last_acknowledged(conn: Connection) -> EgressEntry | None:
    """The latest acknowledged batch: what `status` shows of the ledger."""
    acked = [EgressStatus.ACCEPTED.value, EgressStatus.DUPLICATE.value]
    q = (
        sa.select(egress)
        .where(egress.c.status.in_(acked))
        # By the primary key, newest first: status reads this at every metrics scrape.
        .order_by(egress.c.last_seq.desc(), egress.c.acknowledged_at.desc())
        .limit(1)
    )
    row = conn.execute(q).first()
    return None if row is None else _entry(row)


@dataclass(frozen=True)
class EgressReport:
    """`syncd audit egress`: the period's ledger rows, their summary and the statement."""

    node_id: str
    since: dt.datetime | None
    until: dt.datetime
    policy_path: str
    policy_fingerprint: str
    entries: tuple[EgressEntry, ...]
    summary: EgressSummary
    statement: str

    @property
    def ok(self) -> bool:
        return self.summary.ok


def egress_report(
    conn: Connection,
    node_id: str,
    policy: Policy,
    policy_path: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> EgressReport:
    """Read the period's ledger and check it against the policy in force."""
    end = until if until is not None else utcnow()
    with translated("reading the egress ledger"):
        rows = entries(conn, since, end)
    fp = fingerprint(policy)
    summary = summarise(rows, public_shape(policy), fp)
    # Without --since, the period the statement names starts with the ledger's first batch.
    start = since if since is not None else min((e.sent_at for e in rows), default=None)
    return EgressReport(
        node_id=node_id,
        since=since,
        until=end,
        policy_path=policy_path,
        policy_fingerprint=fp,
        entries=tuple(rows),
        summary=summary,
        statement=statement(summary, node_id, start, end, policy_path, fp),
    )


def _entry(row: sa.Row[Any]) -> EgressEntry:
    return EgressEntry(
        first_seq=int(row.first_seq),
        last_seq=int(row.last_seq),
        checksum=row.checksum,
        covered=int(row.covered),
        row_count=int(row.row_count),
        carried=dict(row.carried),
        policy_fingerprint=row.policy_fingerprint,
        status=EgressStatus(row.status),
        hub_batch_id=None if row.hub_batch_id is None else int(row.hub_batch_id),
        sent_at=row.sent_at,
        acknowledged_at=row.acknowledged_at,
    )
