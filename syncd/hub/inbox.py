"""The hub's inbox: idempotent batch submission and node watermarks (registry: `hub.nodes`).

A batch is identified by (node, last_seq). Submitting it again with the same checksum is a
no-op ('duplicate'); under the same identity with another checksum, or overlapping what was
received, it is refused. On a PostgreSQL hub a city calls SECURITY DEFINER functions
(sql/postgresql/submit_functions.sql) with its own login role, which can do nothing else; on a
SQLite hub the same rules run here in Python against the hub file.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.core.batch import Batch, SubmitResult, SubmitStatus
from syncd.core.canonical import canonical
from syncd.core.downlink import DownBatch
from syncd.core.errors import BatchRefused, UsageError
from syncd.hub import agreement, downlink, payload
from syncd.hub.nodes import hub_schema, regrant_node_functions, restrict_public
from syncd.store import hub_tables as h
from syncd.store.db import create_engine, run_script, sql_template, translated, utcnow
from syncd.store.dialect import Kind, dialect_for

NOTIFY_CHANNEL = "syncd_inbox"


def install_functions(conn: Connection) -> None:
    """Create or refresh the hub's submission and reconcile functions, lock PUBLIC out (PG only).

    The functions go into the current schema, where `init` made the hub's tables, and name
    every table by it (see the file's header for why nothing may be left to search_path).
    """
    if not dialect_for(conn).has_roles:
        return
    sql = sql_template("syncd.hub", "postgresql", "submit_functions.sql")
    run_script(conn, sql.substitute(schema=hub_schema(conn)))
    reconcile = sql_template("syncd.hub", "postgresql", "reconcile_functions.sql")
    run_script(conn, reconcile.substitute(schema=hub_schema(conn)))
    downlink = sql_template("syncd.hub", "postgresql", "downlink_functions.sql")
    run_script(conn, downlink.substitute(schema=hub_schema(conn)))
    restrict_public(conn)
    regrant_node_functions(conn)


def node_report(conn: Connection, node_id: str) -> dict[str, Any]:
    """What a city's `status` shows of its node at the hub (syncd_node_report's answer)."""
    n = h.nodes.c
    row = conn.execute(
        sa.select(
            n.refused_rows,
            n.last_refused_reason,
            n.last_refused_at,
            n.policy_problem,
            n.policy_problem_at,
        ).where(n.node_id == node_id)
    ).first()
    if row is None:
        raise BatchRefused(f"node {node_id} is not registered at this hub")
    q = h.quarantine.c
    quarantined = conn.execute(
        sa.select(sa.func.count()).where(q.node_id == node_id, q.status == h.QuarantineStatus.OPEN)
    ).scalar_one()
    return {**row._asdict(), "quarantined": int(quarantined)}


def _seconds(value: object) -> object:
    """A time as ISO text to the second: a datetime (SQLite hub) or jsonb's text (PostgreSQL)."""
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    return value[:19] if isinstance(value, str) else value


def _report_pg(conn: Connection, node_id: str) -> dict[str, Any]:
    try:
        value = conn.execute(sa.text("SELECT syncd_node_report(:n)"), {"n": node_id}).scalar_one()
    except sa.exc.DBAPIError as exc:
        _raise_refusal(exc)
        raise
    return dict(value)


class HubInbox:
    """A city's connection to its hub: submit batches, read the acknowledged position."""

    def __init__(self, url: str, node_id: str, **engine_options: Any) -> None:
        self.node_id = node_id
        # Two connections at most: the push cycle and the trim job each hold one at a time,
        # and a lone connection made one wait for the other until the pool timed out.
        dialect = dialect_for(url)
        self.engine = create_engine(url, **dialect.pool_options(2), **engine_options)
        self._watermark = _WATERMARK[dialect.kind]
        self._submit = _SUBMIT[dialect.kind]
        self._report = _REPORT[dialect.kind]
        self._fetch = _FETCH[dialect.kind]
        self._ack = _ACK[dialect.kind]
        self._summary = _SUMMARY[dialect.kind]

    def close(self) -> None:
        self.engine.dispose()

    def watermark(self) -> int:
        """The last sequence the hub holds durably for this node: what the city may trim."""
        with translated("reading the hub watermark"), self.engine.connect() as conn:
            value = self._watermark(conn, self.node_id)
            conn.rollback()
        return value

    def report(self) -> dict[str, Any]:
        """This node's figures at the hub: refused rows, a policy problem, open quarantine.

        Times are ISO text in UTC, as a PostgreSQL hub's function returns them.
        """
        with translated("reading the node's report at the hub"), self.engine.connect() as conn:
            found = self._report(conn, self.node_id)
            conn.rollback()
        return {k: _seconds(v) if k.endswith("_at") else v for k, v in found.items()}

    def fetch_insights(self, after: int, limit: int) -> list[DownBatch]:
        """The insight batches the hub built for this node after seq `after`, in order."""
        with translated("fetching insights from the hub"), self.engine.connect() as conn:
            found = self._fetch(conn, self.node_id, after, limit)
            conn.rollback()
        return found

    def ack_insights(self, seq: int) -> int:
        """Tell the hub this node applied every insight batch up to seq; its built_seq back."""
        with translated("acknowledging insights at the hub"), self.engine.begin() as conn:
            return self._ack(conn, self.node_id, seq)

    def insight_summary(self) -> dict[str, Any]:
        """What the hub sent this node, summed, and its last batch (`syncd reconcile`)."""
        with translated("reading the hub's insight summary"), self.engine.connect() as conn:
            found = self._summary(conn, self.node_id)
            conn.rollback()
        return found

    def submit(self, batch: Batch) -> SubmitResult:
        """Hand one batch to the hub in one transaction; safe to repeat."""
        if batch.node_id != self.node_id:
            raise UsageError(f"batch of {batch.node_id} submitted through {self.node_id}")
        with translated("submitting a batch"), self.engine.begin() as conn:
            return self._submit(conn, batch)


def _watermark_pg(conn: Connection, node_id: str) -> int:
    try:
        value = conn.execute(
            sa.text("SELECT syncd_node_watermark(:n)"), {"n": node_id}
        ).scalar_one()
    except sa.exc.DBAPIError as exc:
        _raise_refusal(exc)
        raise
    return int(value)


def _watermark_local(conn: Connection, node_id: str) -> int:
    value = conn.execute(
        sa.select(h.nodes.c.received_seq).where(h.nodes.c.node_id == node_id)
    ).scalar()
    if value is None:
        raise BatchRefused(f"node {node_id} is not registered at this hub")
    return int(value)


def _raise_refusal(exc: sa.exc.DBAPIError) -> None:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in ("42501", "42704"):
        text = str(exc.orig).splitlines()[0]
        raise BatchRefused(text) from exc


def payload_of(batch: Batch) -> str:
    """The JSON text a batch's changes travel as: what its checksum was computed over."""
    return batch.wire_json or canonical([c.wire() for c in batch.changes])


def _submit_pg(conn: Connection, batch: Batch) -> SubmitResult:
    try:
        status = conn.execute(
            sa.text(
                "SELECT syncd_submit_payload(:node, :first, :last, :checksum, CAST(:rows AS text),"
                " CAST(:policy AS jsonb))"
            ),
            {
                "node": batch.node_id,
                "first": batch.first_seq,
                "last": batch.last_seq,
                "checksum": batch.checksum,
                "rows": payload_of(batch),
                "policy": None if batch.policy is None else canonical(_sent_stamp(batch)),
            },
        ).scalar_one()
    except sa.exc.DBAPIError as exc:
        _raise_refusal(exc)
        raise
    return _parse_status(str(status))


def _parse_status(status: str) -> SubmitResult:
    """'accepted:<batch id>', 'duplicate:<batch id>' or 'refused: <reason>'."""
    if status.startswith(SubmitStatus.REFUSED):
        return SubmitResult(SubmitStatus.REFUSED, status.partition(": ")[2] or None)
    kind, _, batch_id = status.partition(":")
    return SubmitResult(SubmitStatus(kind), batch_id=int(batch_id) if batch_id else None)


def _event(conn: Connection, batch: Batch, kind: str, reason: str) -> None:
    conn.execute(
        h.inbox_events.insert().values(
            node_id=batch.node_id,
            kind=kind,
            first_seq=batch.first_seq,
            last_seq=batch.last_seq,
            checksum=batch.checksum,
            reason=reason,
            at=utcnow(),
        )
    )


def _refusal(conn: Connection, batch: Batch) -> tuple[str | None, int | None]:
    """(reason to refuse or None, the batch id if it is an exact duplicate) — the SQL's rules."""
    received = conn.execute(
        sa.select(h.nodes.c.received_seq).where(h.nodes.c.node_id == batch.node_id)
    ).scalar()
    if received is None:
        return f"node {batch.node_id} is not registered at this hub", None
    existing = conn.execute(
        sa.select(h.batches.c.checksum, h.batches.c.batch_id).where(
            h.batches.c.node_id == batch.node_id, h.batches.c.last_seq == batch.last_seq
        )
    ).first()
    if existing is not None:
        if existing.checksum == batch.checksum:
            return None, int(existing.batch_id)
        return (
            f"batch ({batch.node_id}, {batch.last_seq}) was already received with checksum "
            f"{existing.checksum}, not {batch.checksum}",
            None,
        )
    if batch.first_seq <= received:
        return (
            f"batch {batch.first_seq}..{batch.last_seq} overlaps what was already received "
            f"(up to {received})",
            None,
        )
    if batch.last_seq < batch.first_seq:
        return "malformed batch", None
    return (
        payload.problem(payload_of(batch))
        or agreement.check(conn, batch.node_id, _sent_stamp(batch), utcnow())
    ), None


def _sent_stamp(batch: Batch) -> dict[str, Any] | None:
    """The batch's policy stamp as it travels (what the PostgreSQL function receives)."""
    return None if batch.policy is None else batch.policy.wire()


def submit_local(conn: Connection, batch: Batch) -> SubmitResult:
    """Submission on a connection to the hub database itself (SQLite hubs, hub-side tools)."""
    reason, duplicate = _refusal(conn, batch)
    now = utcnow()
    sent = _sent_stamp(batch)
    if duplicate is not None:
        _event(conn, batch, SubmitStatus.DUPLICATE, "batch already received")
        conn.execute(
            h.nodes.update().where(h.nodes.c.node_id == batch.node_id).values(last_seen_at=now)
        )
        return SubmitResult(SubmitStatus.DUPLICATE, batch_id=duplicate)
    if reason is not None:
        _event(conn, batch, SubmitStatus.REFUSED, reason)
        return SubmitResult(SubmitStatus.REFUSED, reason)
    batch_id = conn.execute(
        h.batches.insert()
        .values(
            node_id=batch.node_id,
            first_seq=batch.first_seq,
            last_seq=batch.last_seq,
            row_count=batch.row_count,
            checksum=batch.checksum,
            received_at=now,
            status=h.BatchStatus.PENDING,
            policy_fingerprint=None if batch.policy is None else batch.policy.fingerprint,
            payload=payload_of(batch),
        )
        .returning(h.batches.c.batch_id)
    ).scalar_one()
    conn.execute(
        h.nodes.update()
        .where(h.nodes.c.node_id == batch.node_id)
        .values(received_seq=batch.last_seq, last_seen_at=now, **agreement.accepted(sent))
    )
    return SubmitResult(SubmitStatus.ACCEPTED, batch_id=int(batch_id))


# PostgreSQL: the SECURITY DEFINER functions under the city's own role; SQLite: the same rules
# here, against the hub file.
_WATERMARK = {Kind.POSTGRES: _watermark_pg, Kind.SQLITE: _watermark_local}
_SUBMIT = {Kind.POSTGRES: _submit_pg, Kind.SQLITE: submit_local}
_REPORT = {Kind.POSTGRES: _report_pg, Kind.SQLITE: node_report}


def _fetch_pg(conn: Connection, node_id: str, after: int, limit: int) -> list[DownBatch]:
    try:
        rows = conn.execute(
            sa.text(
                "SELECT * FROM syncd_fetch_insights(CAST(:n AS text), CAST(:after AS bigint),"
                " CAST(:limit AS integer))"
            ),
            {"n": node_id, "after": after, "limit": limit},
        ).all()
    except sa.exc.DBAPIError as exc:
        _raise_refusal(exc)
        raise
    return [DownBatch(node_id, int(r.seq), r.checksum, r.payload, int(r.row_count)) for r in rows]


def _ack_pg(conn: Connection, node_id: str, seq: int) -> int:
    try:
        built = conn.execute(
            sa.text("SELECT syncd_ack_insights(CAST(:n AS text), CAST(:seq AS bigint))"),
            {"n": node_id, "seq": seq},
        ).scalar_one()
    except sa.exc.DBAPIError as exc:
        _raise_refusal(exc)
        raise
    return int(built)


def _summary_pg(conn: Connection, node_id: str) -> dict[str, Any]:
    try:
        value = conn.execute(
            sa.text("SELECT syncd_insight_summary(CAST(:n AS text))"), {"n": node_id}
        ).scalar_one()
    except sa.exc.DBAPIError as exc:
        _raise_refusal(exc)
        raise
    return dict(value)


_SUMMARY = {Kind.POSTGRES: _summary_pg, Kind.SQLITE: downlink.summary}
_FETCH = {Kind.POSTGRES: _fetch_pg, Kind.SQLITE: downlink.fetch}
_ACK = {Kind.POSTGRES: _ack_pg, Kind.SQLITE: downlink.ack}
