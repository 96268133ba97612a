"""The hub's audit log: append-only, hash-chained entries written in each decision's transaction.

How an entry is hashed and how a chain is checked is pure and lives in
`syncd.core.auditchain` (the offline verifier uses it too); this module writes entries under the
audit lock and checks the stored chain. Reading the log for auditors is `syncd.hub.audit_query`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from enum import StrEnum
from importlib import resources
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult

from syncd.core.auditchain import (
    COLUMNS,
    GENESIS_HASH,
    HASHED_FIELDS,
    ChainCheck,
    VerifyResult,
    entry_hash,
    format_anchor,
    hashed_body,
    parse_anchor,
)
from syncd.core.canonical import canonical
from syncd.store.bulk import insert_rows
from syncd.store.db import translated
from syncd.store.dialect import Kind, dialect_for
from syncd.store.hub_tables import audit

__all__ = [
    "AUDIT_LOCK_KEY",
    "COLUMNS",
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "Action",
    "AuditWriter",
    "VerifyResult",
    "canonical",
    "entry_hash",
    "format_anchor",
    "hashed_body",
    "head",
    "install_append_only",
    "naive_utc",
    "parse_anchor",
    "stream",
    "verify",
]

# pg_advisory_xact_lock key serializing audit writers: the bytes of "syncdaud" as a bigint.
AUDIT_LOCK_KEY = 0x73796E6364617564

_STREAM_ROWS = 2000
_MAX_LENGTH = {
    name: cast(sa.String, audit.c[name].type).length for name in ("action", "node_id", "table_name")
}


class Action(StrEnum):
    """The hub decisions syncd records; `AuditWriter.append` accepts any short string."""

    BATCH_APPLIED = "batch_applied"
    BATCH_REFUSED = "batch_refused"
    BATCH_DUPLICATE = "batch_duplicate"
    ROW_APPLIED = "row_applied"
    REFUSED_ROW = "refused_row"
    STALE = "stale"
    QUARANTINED = "quarantined"
    QUARANTINE_RETRIED = "quarantine_retried"
    QUARANTINE_SUPERSEDED = "quarantine_superseded"
    CONFLICT_OPENED = "conflict_opened"
    CONFLICT_PROPOSED = "conflict_proposed"
    CONFLICT_RESOLVED = "conflict_resolved"
    CONFLICT_SUPERSEDED = "conflict_superseded"
    NODE_REGISTERED = "node_registered"
    NODE_CREDENTIALS_ROTATED = "node_credentials_rotated"
    RECONCILE = "reconcile"  # a city's reconcile summary (counts, no values)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _checked(name: str, value: object) -> str | None:
    if value is None:
        return None
    # str() turns a StrEnum into its value: psycopg would otherwise store an Enum's *name*,
    # and the stored text must be exactly the hashed text.
    text = str(value)
    limit = _MAX_LENGTH[name]
    if not text or (limit is not None and len(text) > limit):
        raise ValueError(f"audit {name} must be 1 to {limit} characters: {text!r}")
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    action: str
    node_id: str | None
    batch_id: int | None
    table_name: str | None
    row_key: str | None
    detail: str


class AuditWriter:
    """Buffers the audit entries of one transaction and chains them onto the log at `flush`.

    The connection must be in (or about to autobegin) the transaction that makes the decisions;
    the entries commit or roll back with it. On PostgreSQL the transaction should be READ
    COMMITTED (the default): `flush` reads the head after taking the audit lock, which a
    REPEATABLE READ snapshot would not see. On SQLite the connection must come from
    `syncd.store.db.create_engine`, whose BEGIN IMMEDIATE already serializes writers. Flush last,
    just before commit: on PostgreSQL the audit lock is held until the transaction ends, and
    taking row locks after it could deadlock with another writer.
    """

    def __init__(self, conn: Connection, *, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self._conn = conn
        self._clock = clock
        self._pending: list[_Pending] = []

    @property
    def pending(self) -> int:
        """How many entries wait for the next `flush`."""
        return len(self._pending)

    def append(
        self,
        action: str,
        *,
        node_id: str | None = None,
        batch_id: int | None = None,
        table: str | None = None,
        key: object = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Buffer one decision; `key` (the row key) and `detail` must encode as JSON."""
        checked_action = _checked("action", action)
        assert checked_action is not None
        # Encode now, so the caller may reuse or mutate its objects before the flush.
        self._pending.append(
            _Pending(
                action=checked_action,
                node_id=_checked("node_id", node_id),
                batch_id=None if batch_id is None else int(batch_id),
                table_name=_checked("table_name", table),
                row_key=None if key is None else canonical(key),
                detail=canonical(dict(detail) if detail else {}),
            )
        )

    def mark(self) -> int:
        """A point in the buffer to `rewind` to (a savepoint's worth of decisions)."""
        return len(self._pending)

    def rewind(self, mark: int) -> None:
        """Forget the entries buffered since `mark`: their savepoint was rolled back."""
        del self._pending[mark:]

    def flush(self) -> int:
        """Chain the buffered entries onto the log's head in one insert; return how many."""
        if not self._pending:
            return 0
        with translated("writing the audit log"):
            # Held to commit: the next writer reads the head only after this one's entries
            # are visible, so two writers never chain onto the same entry.
            dialect_for(self._conn).lock_writers(self._conn, AUDIT_LOCK_KEY)
            last_id, last_hash = head(self._conn)
            # Whole seconds, naive UTC: both dialects give back exactly what was hashed.
            at = naive_utc(self._clock()).replace(microsecond=0)
            rows: list[dict[str, Any]] = []
            for offset, entry in enumerate(self._pending, start=1):
                row: dict[str, Any] = {
                    "entry_id": last_id + offset,
                    "at": at,
                    "action": entry.action,
                    "node_id": entry.node_id,
                    "batch_id": entry.batch_id,
                    "table_name": entry.table_name,
                    "row_key": entry.row_key,
                    "detail": entry.detail,
                    "prev_hash": last_hash,
                }
                last_hash = row["entry_hash"] = entry_hash(last_hash, row)
                rows.append(row)
            insert_rows(self._conn, audit, COLUMNS, rows)
        self._pending.clear()
        return len(rows)


def head(conn: Connection) -> tuple[int, str]:
    """The last entry's (entry_id, entry_hash) as stored, or (0, GENESIS_HASH) if none."""
    with translated("reading the audit log"):
        row = conn.execute(
            sa.select(audit.c.entry_id, audit.c.entry_hash)
            .order_by(audit.c.entry_id.desc())
            .limit(1)
        ).first()
    return (0, GENESIS_HASH) if row is None else (int(row.entry_id), str(row.entry_hash))


def stream(conn: Connection, stmt: sa.Select[Any]) -> CursorResult[Any]:
    """Execute stmt reading its rows in pages, without changing conn's options."""
    # yield_per: a server-side cursor on PostgreSQL, fetchmany pages on SQLite, so a log of
    # millions of entries is read in one consistent statement without being held in memory.
    return conn.execute(stmt.execution_options(yield_per=_STREAM_ROWS))


def verify(conn: Connection, against: str | None = None) -> VerifyResult:
    """Check the whole stored chain in entry_id order, and optionally an anchor (see
    `ChainCheck`); name the first break. A malformed anchor raises UsageError first."""
    check = ChainCheck(against)
    stmt = sa.select(*(audit.c[name] for name in COLUMNS)).order_by(audit.c.entry_id)
    with translated("verifying the audit log"), stream(conn, stmt) as rows:
        for row in rows:
            if not check.feed(row._asdict()):
                break
    return check.result()


# The triggers that refuse UPDATE, DELETE and TRUNCATE, in `sql/<kind>/`; SQLite has none.
_APPEND_ONLY = {Kind.POSTGRES: "audit_append_only.sql", Kind.SQLITE: None}


def install_append_only(conn: Connection) -> None:
    """Make syncd_audit refuse UPDATE, DELETE and TRUNCATE on PostgreSQL; idempotent.

    A no-op on SQLite, where the hash chain alone reveals changes.
    """
    kind = dialect_for(conn).kind
    script = _APPEND_ONLY[kind]
    if script is None:
        return
    ddl = (resources.files("syncd.hub") / "sql" / kind / script).read_text(encoding="utf-8")
    with translated("installing the audit log's append-only triggers"):
        conn.exec_driver_sql(ddl)
