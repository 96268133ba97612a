"""The hub's audit log: append-only, hash-chained entries written in each decision's transaction.

Entry n stores prev_hash = entry_hash of entry n-1 (GENESIS_HASH for entry 1) and
entry_hash = SHA-256 hex of prev_hash + canonical(the entry's HASHED_FIELDS), where row_key and
detail are hashed as the canonical JSON text stored in their columns. So a changed, removed or
foreign entry breaks the chain where it stands, and `verify` names it. A full rewrite with
recomputed hashes is caught only against an anchor (`"<entry_id>:<entry_hash>"`) an auditor kept
outside the database.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from importlib import resources
from json.encoder import encode_basestring  # the escaping canonical() uses (ensure_ascii off)
from typing import Any, Literal, TextIO, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult, Row

from syncd.core.canonical import canonical, json_default
from syncd.core.errors import UsageError
from syncd.store.bulk import insert_rows
from syncd.store.db import translated
from syncd.store.dialect import Kind, dialect_for
from syncd.store.hub_tables import audit

GENESIS_HASH = "0" * 64
HASHED_FIELDS = (
    "entry_id",
    "at",
    "action",
    "node_id",
    "batch_id",
    "table_name",
    "row_key",
    "detail",
)
COLUMNS = (*HASHED_FIELDS, "prev_hash", "entry_hash")
# pg_advisory_xact_lock key serializing audit writers: the bytes of "syncdaud" as a bigint.
AUDIT_LOCK_KEY = 0x73796E6364617564

ExportFormat = Literal["csv", "json"]

_ANCHOR = re.compile(r"\s*(\d{1,19}):([0-9a-fA-F]{64})\s*")
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
    CONFLICT_RESOLVED = "conflict_resolved"
    CONFLICT_SUPERSEDED = "conflict_superseded"
    NODE_REGISTERED = "node_registered"
    NODE_CREDENTIALS_ROTATED = "node_credentials_rotated"
    RECONCILE = "reconcile"  # a city's reconcile summary (counts, no values)


# The hashed fields in the order canonical() sorts them, each with its JSON key written out.
_SORTED_KEYS = tuple((name, encode_basestring(name) + ":") for name in sorted(HASHED_FIELDS))


def _json_scalar(value: object) -> str | None:
    """The canonical text of one stored audit value, or None if it is not of a stored type."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return encode_basestring(cast(str, value))
    if kind is int:
        return str(value)
    if kind is dt.datetime:
        return encode_basestring(cast(dt.datetime, value).isoformat())
    return None


def hashed_body(fields: Mapping[str, Any]) -> str:
    """canonical() of an entry's HASHED_FIELDS, written out directly for the stored types.

    Every entry of the log is hashed once when written and once per verify, so this is on the
    hub's hot path; any other type (a caller's own) goes through canonical() itself. A
    property test holds the two to the same bytes.
    """
    parts = []
    for name, key in _SORTED_KEYS:
        text = _json_scalar(fields[name])
        if text is None:
            return canonical({n: fields[n] for n in HASHED_FIELDS})
        parts.append(key + text)
    return "{" + ",".join(parts) + "}"


def entry_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The SHA-256 hex chaining an entry (its HASHED_FIELDS; other keys ignored) to prev_hash."""
    return hashlib.sha256((prev_hash + hashed_body(fields)).encode("utf-8")).hexdigest()


def format_anchor(entry_id: int, hash_: str) -> str:
    """The anchor text an auditor keeps to check the log against later."""
    return f"{entry_id}:{hash_}"


def parse_anchor(text: str) -> tuple[int, str]:
    """The (entry_id, hash) of an anchor, or UsageError if it is not one."""
    match = _ANCHOR.fullmatch(text)
    if match is None:
        raise UsageError(
            f"audit anchor {text[:100]!r} is malformed: expected '<entry_id>:<64 hex digits>' "
            "as printed by `syncd audit verify`"
        )
    entry_id, hash_ = int(match[1]), match[2].lower()
    if entry_id == 0 and hash_ != GENESIS_HASH:
        raise UsageError(f"audit anchor {text!r} is malformed: entry 0 is the empty log")
    return entry_id, hash_


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _naive_utc(value: dt.datetime) -> dt.datetime:
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
            at = _naive_utc(self._clock()).replace(microsecond=0)
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


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """The outcome of `verify`; entries/head_id/head_hash describe the intact prefix."""

    ok: bool
    entries: int
    head_id: int
    head_hash: str
    broken_id: int | None = None
    reason: str | None = None

    @property
    def anchor(self) -> str:
        """The anchor of the verified head, for an auditor to keep."""
        return format_anchor(self.head_id, self.head_hash)


def _stream(conn: Connection, stmt: sa.Select[Any]) -> CursorResult[Any]:
    # yield_per: a server-side cursor on PostgreSQL, fetchmany pages on SQLite, so a log of
    # millions of entries is read in one consistent statement without being held in memory.
    return conn.execute(stmt.execution_options(yield_per=_STREAM_ROWS))


def _chain_break(row: Row[Any], last_id: int, last_hash: str) -> tuple[int, str] | None:
    expected = last_id + 1
    if row.entry_id > expected:
        after = f"entry {last_id}" if last_id else "the start of the log"
        return expected, f"entry {expected} is missing: entry {row.entry_id} follows {after}"
    if row.entry_id < expected:
        return row.entry_id, f"entry_id {row.entry_id} is out of sequence (expected {expected})"
    if row.prev_hash != last_hash:
        before = f"the hash of entry {last_id}" if last_id else "the genesis hash"
        return row.entry_id, (
            f"prev_hash does not match {before}: an entry was inserted, removed or rewritten here"
        )
    if entry_hash(row.prev_hash, row._asdict()) != row.entry_hash:
        return row.entry_id, "entry_hash does not match the entry's contents: it was modified"
    return None


def verify(conn: Connection, against: str | None = None) -> VerifyResult:
    """Check the whole chain in entry_id order, and optionally an anchor; name the first break.

    `against` is an anchor `"<entry_id>:<hash>"` kept from an earlier run: the check fails if
    that entry is gone or differs, which catches removed tails and rewrites with recomputed
    hashes. A malformed anchor raises UsageError before anything is read.
    """
    anchor = None if against is None else parse_anchor(against)
    last_id, last_hash, count = 0, GENESIS_HASH, 0

    def broken(entry_id: int, reason: str) -> VerifyResult:
        return VerifyResult(False, count, last_id, last_hash, entry_id, reason)

    stmt = sa.select(*(audit.c[name] for name in COLUMNS)).order_by(audit.c.entry_id)
    with translated("verifying the audit log"), _stream(conn, stmt) as rows:
        for row in rows:
            found = _chain_break(row, last_id, last_hash)
            if found is not None:
                return broken(*found)
            if anchor is not None and row.entry_id == anchor[0] and row.entry_hash != anchor[1]:
                return broken(
                    row.entry_id,
                    f"entry {row.entry_id} differs from the anchor: the log was rewritten",
                )
            last_id, last_hash, count = row.entry_id, row.entry_hash, count + 1
    if anchor is not None and anchor[0] > last_id:
        return broken(
            anchor[0],
            f"anchor entry {anchor[0]} is absent: the log ends at entry {last_id}"
            " (entries removed from its end?)",
        )
    return VerifyResult(True, count, last_id, last_hash)


def _key_text(key: object) -> str:
    if not isinstance(key, str):
        return canonical(key)
    # Text is the user's JSON (`audit log --key`): spacing and key order need not be canonical.
    try:
        return canonical(json.loads(key))
    except ValueError as exc:
        raise UsageError(f"key {key[:100]!r} is not JSON: {exc}") from exc


def _select(
    *,
    node: str | None,
    table: str | None,
    key: object,
    action: str | None,
    since: dt.datetime | None,
    limit: int | None,
) -> sa.Select[Any]:
    stmt = sa.select(*(audit.c[name] for name in COLUMNS))
    if node is not None:
        stmt = stmt.where(audit.c.node_id == node)
    if table is not None:
        stmt = stmt.where(audit.c.table_name == table)
    if key is not None:
        stmt = stmt.where(audit.c.row_key == _key_text(key))
    if action is not None:
        stmt = stmt.where(audit.c.action == str(action))
    if since is not None:
        stmt = stmt.where(audit.c.at >= _naive_utc(since))
    if limit is None:
        return stmt.order_by(audit.c.entry_id)
    if limit < 0:
        raise UsageError(f"limit must not be negative: {limit}")
    newest = stmt.order_by(audit.c.entry_id.desc()).limit(limit).subquery()
    return sa.select(newest).order_by(newest.c.entry_id)


def _decoded(text: str | None) -> object:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # Only an entry written behind syncd's back holds non-JSON; show it rather than fail.
        return text


def _record(row: Row[Any]) -> dict[str, Any]:
    record = dict(row._mapping)
    record["row_key"] = _decoded(record["row_key"])
    record["detail"] = _decoded(record["detail"])
    return record


def query(
    conn: Connection,
    *,
    node: str | None = None,
    table: str | None = None,
    key: object = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Matching entries in entry_id order, the newest `limit` of them if given.

    Filters combine with AND: `key` is the row key object as given to `append`, or its JSON
    text as a str (so a bare string key is given as '"C001"'); it is matched by canonical JSON.
    `since` keeps entries at or after it (naive means UTC). Each dict holds
    every column; row_key and detail are decoded from JSON, at is a naive UTC datetime.
    """
    stmt = _select(node=node, table=table, key=key, action=action, since=since, limit=limit)
    with translated("reading the audit log"):
        return [_record(row) for row in conn.execute(stmt)]


def export(
    conn: Connection,
    out: TextIO,
    fmt: ExportFormat,
    *,
    node: str | None = None,
    table: str | None = None,
    key: object = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    limit: int | None = None,
) -> int:
    """Stream every matching entry (filters as in `query`) to `out`; return how many.

    csv: a header row of every column, then one row per entry; at in ISO 8601 (naive UTC),
    row_key and detail as their stored JSON text, NULL as empty. Open `out` with newline="".
    json: JSON Lines, one object per entry with every column, at in ISO 8601 (naive UTC),
    row_key and detail as nested JSON; each line stands alone, so the output streams.
    To recompute a hash from JSON Lines, re-encode row_key and detail with `canonical`.
    """
    if fmt not in ("csv", "json"):
        raise UsageError(f"export format must be csv or json, not {fmt!r}")
    stmt = _select(node=node, table=table, key=key, action=action, since=since, limit=limit)
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    with translated("exporting the audit log"), _stream(conn, stmt) as rows:
        for row in rows:
            if writer is not None:
                writer.writerow(
                    "" if value is None else value.isoformat() if name == "at" else value
                    for name, value in row._mapping.items()
                )
            else:
                record = _record(row)
                record["at"] = record["at"].isoformat()
                out.write(json.dumps(record, ensure_ascii=False, default=json_default) + "\n")
            count += 1
    return count


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
