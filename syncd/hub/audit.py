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
    ROW_DECISIONS,
    ChainCheck,
    VerifyResult,
    covering_detail,
    entry_hash,
    format_anchor,
    hashed_body,
    parse_anchor,
    row_hash,
)
from syncd.core.canonical import canonical
from syncd.store.bulk import insert_rows, insert_text_rows
from syncd.store.db import translated
from syncd.store.dialect import Kind, dialect_for
from syncd.store.hub_tables import audit, audit_rows

__all__ = [
    "AUDIT_LOCK_KEY",
    "COLUMNS",
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "ROW_ACTIONS",
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
    NODE_RENAMED = "node_renamed"  # a node's display name set or changed (`node rename`)
    IDS_UNMASKED = "ids_unmasked"  # a report showed full ID numbers (`report … --unmask`)
    RECONCILE = "reconcile"  # a city's reconcile summary (counts, no values)
    INSIGHTS_SENT = "insights_sent"  # one downlink batch of insights built for a city
    INSIGHTS_RESEND = "insights_resend"  # a city's sent insights forgotten: all sent again
    ROW_DECISIONS = ROW_DECISIONS  # version 2: covers the row decisions below of one batch/table


# Row decisions: with a batch id, `flush` writes them per (action, node, batch, table) as row
# lines of one covering ROW_DECISIONS entry (version 2) instead of one chain entry each.
ROW_ACTIONS = frozenset({Action.ROW_APPLIED, Action.STALE, Action.QUARANTINED, Action.REFUSED_ROW})
_ROW_COLUMNS = ("entry_id", "ord", "action", "row_key", "detail", "row_hash")


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

    Row decisions (ROW_ACTIONS with a batch id) are grouped by (action, node, batch, table):
    each group becomes one ROW_DECISIONS entry, at the place of the group's first decision,
    committing to the group's row lines in syncd_audit_row (in the order they were appended).
    Every other entry keeps its place. `group_rows=False` writes one entry per row decision,
    as syncd did before version 2 (kept for tests and the benchmark of the old format).
    """

    def __init__(
        self,
        conn: Connection,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
        group_rows: bool = True,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._group_rows = group_rows
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

    def _entries(self) -> list[_Pending | list[_Pending]]:
        """The pending decisions in log order, each row-decision group as one list."""
        if not self._group_rows:
            return list(self._pending)
        order: list[_Pending | list[_Pending]] = []
        groups: dict[tuple[str, str | None, int, str | None], list[_Pending]] = {}
        for entry in self._pending:
            if entry.batch_id is None or entry.action not in ROW_ACTIONS:
                order.append(entry)
                continue
            group_key = (entry.action, entry.node_id, entry.batch_id, entry.table_name)
            members = groups.get(group_key)
            if members is None:
                members = groups[group_key] = []
                order.append(members)
            members.append(entry)
        return order

    def flush(self) -> int:
        """Chain the buffered decisions onto the log's head (entries in one insert, row lines
        of covering entries in another); return how many decisions were written."""
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
            lines: list[tuple[Any, ...]] = []
            for entry_id, item in enumerate(self._entries(), start=last_id + 1):
                if isinstance(item, list):
                    first = item[0]
                    hashes = [row_hash(e.action, e.row_key, e.detail) for e in item]
                    lines += [
                        (entry_id, n, e.action, e.row_key, e.detail, h)
                        for n, (e, h) in enumerate(zip(item, hashes, strict=True), start=1)
                    ]
                    entry = _Pending(
                        action=ROW_DECISIONS,
                        node_id=first.node_id,
                        batch_id=first.batch_id,
                        table_name=first.table_name,
                        row_key=None,
                        detail=canonical(covering_detail(first.action, hashes)),
                    )
                else:
                    entry = item
                row: dict[str, Any] = {
                    "entry_id": entry_id,
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
            insert_text_rows(self._conn, audit_rows, _ROW_COLUMNS, lines)
        written = len(self._pending)
        self._pending.clear()
        return written


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


_ROW_LINE = ("entry_id", "ord", "action", "row_key", "detail", "row_hash")


def _chain_lines() -> sa.Select[Any]:
    """Every entry (ord 0) and every stored row decision, in (entry_id, ord) order.

    Row decisions are read as stored, not joined to an entry: one whose entry is missing or
    not a covering entry is still fed to the check (and breaks it).
    """
    a, r = audit.c, audit_rows.c
    entries = sa.select(
        *(a[name] for name in COLUMNS),
        sa.literal(0, sa.Integer()).label("ord"),
        sa.cast(sa.null(), sa.String(64)).label("row_hash"),
    )
    rows = sa.select(
        r.entry_id,
        sa.cast(sa.null(), sa.DateTime()).label("at"),
        r.action,
        sa.cast(sa.null(), sa.String(63)).label("node_id"),
        sa.cast(sa.null(), sa.BigInteger()).label("batch_id"),
        sa.cast(sa.null(), sa.String(63)).label("table_name"),
        r.row_key,
        r.detail,
        sa.cast(sa.null(), sa.String(64)).label("prev_hash"),
        sa.cast(sa.null(), sa.String(64)).label("entry_hash"),
        r.ord,
        r.row_hash,
    )
    lines = sa.union_all(entries, rows).subquery()
    return sa.select(lines).order_by(lines.c.entry_id, lines.c.ord)


def verify(conn: Connection, against: str | None = None) -> VerifyResult:
    """Check the whole stored chain in entry_id order, each covering entry with its row
    decisions, and optionally an anchor (see `ChainCheck`); name the first break. A malformed
    anchor raises UsageError first."""
    check = ChainCheck(against)
    with translated("verifying the audit log"), stream(conn, _chain_lines()) as lines:
        for line in lines:
            fields = line._asdict()
            if fields["ord"]:
                fields = {name: fields[name] for name in _ROW_LINE}
            if not check.feed(fields):
                break
    return check.result()


# The triggers that refuse UPDATE, DELETE and TRUNCATE, in `sql/<kind>/`; SQLite has none.
_APPEND_ONLY = {Kind.POSTGRES: "audit_append_only.sql", Kind.SQLITE: None}
_ROWS_APPEND_ONLY = {Kind.POSTGRES: "audit_row_append_only.sql", Kind.SQLITE: None}


def install_append_only(conn: Connection) -> None:
    """Make syncd_audit, and syncd_audit_row where it exists (hub_0006), refuse UPDATE, DELETE
    and TRUNCATE on PostgreSQL; idempotent.

    A no-op on SQLite, where the hash chain alone reveals changes.
    """
    kind = dialect_for(conn).kind
    scripts = [_APPEND_ONLY[kind]]
    if sa.inspect(conn).has_table(audit_rows.name):
        scripts.append(_ROWS_APPEND_ONLY[kind])
    for script in scripts:
        if script is None:
            continue
        ddl = (resources.files("syncd.hub") / "sql" / kind / script).read_text(encoding="utf-8")
        with translated("installing the audit log's append-only triggers"):
            conn.exec_driver_sql(ddl)
