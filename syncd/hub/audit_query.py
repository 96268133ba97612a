"""Reading the audit log for auditors: filters, pages with a count of what is left, exports.

Every filter is SQL over syncd_audit; `GoldenScope` (`syncd.hub.audit_golden`) narrows to the
entries of one golden record. Times are compared in naive UTC, as stored; the CLI turns an
auditor's zone into that.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from typing import Any, Literal, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from syncd.core.auditchain import COLUMNS
from syncd.core.canonical import canonical, json_default
from syncd.core.errors import UsageError
from syncd.hub.audit import naive_utc, stream
from syncd.hub.audit_golden import GoldenScope
from syncd.store.db import translated
from syncd.store.hub_tables import audit

ExportFormat = Literal["csv", "json"]


def _key_text(key: object) -> str:
    if not isinstance(key, str):
        return canonical(key)
    # Text is the user's JSON (`audit log --key`): spacing and key order need not be canonical.
    try:
        return canonical(json.loads(key))
    except ValueError as exc:
        raise UsageError(f"key {key[:100]!r} is not JSON: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class AuditFilter:
    """Which entries to read; criteria combine with AND, None means any.

    `key` is the row key object as given to `AuditWriter.append`, or its JSON text as a str
    (so a bare string key is given as '"C001"'); it is matched by canonical JSON. `since` keeps
    entries at or after it, `until` those strictly before it (naive means UTC). `golden` keeps
    the entries of one golden record (its source rows in every city, its conflicts).
    """

    node: str | None = None
    table: str | None = None
    key: object = None
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    golden: GoldenScope | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        """The SQL conditions of this filter."""
        c = audit.c
        conditions: list[sa.ColumnElement[bool]] = []
        if self.node is not None:
            conditions.append(c.node_id == self.node)
        if self.table is not None:
            conditions.append(c.table_name == self.table)
        if self.key is not None:
            conditions.append(c.row_key == _key_text(self.key))
        if self.action is not None:
            conditions.append(c.action == str(self.action))
        if self.since is not None:
            conditions.append(c.at >= naive_utc(self.since))
        if self.until is not None:
            conditions.append(c.at < naive_utc(self.until))
        if self.golden is not None:
            conditions.append(self.golden.condition())
        return conditions


@dataclasses.dataclass(frozen=True)
class Page:
    """A page of entries in entry_id order: the newest `limit` before `before`, if given.

    `more` is how many older entries also match; `next_before` is the `before` that reads
    them (the first entry_id shown), None when there are none.
    """

    entries: list[dict[str, Any]]
    more: int
    next_before: int | None


def _columns() -> list[sa.Column[Any]]:
    return [audit.c[name] for name in COLUMNS]


def _select(flt: AuditFilter, limit: int | None, before: int | None) -> sa.Select[Any]:
    stmt = sa.select(*_columns()).where(*flt.where())
    if before is not None:
        stmt = stmt.where(audit.c.entry_id < before)
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


def query_page(
    conn: Connection, flt: AuditFilter, *, limit: int, before: int | None = None
) -> Page:
    """The newest `limit` matching entries (older than `before`), and how many more match."""
    with translated("reading the audit log"):
        entries = [_record(row) for row in conn.execute(_select(flt, limit, before))]
        if not entries or len(entries) < limit:
            return Page(entries, 0, None)
        first = int(entries[0]["entry_id"])
        more = count(conn, flt, before=first)
    return Page(entries, more, first if more else None)


def query(
    conn: Connection,
    flt: AuditFilter | None = None,
    *,
    node: str | None = None,
    table: str | None = None,
    key: object = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Matching entries in entry_id order, the newest `limit` of them if given.

    Criteria as in `AuditFilter`: `flt`, or the keywords (one or the other). Each dict holds
    every column; row_key and detail are decoded from JSON, at is a naive UTC datetime.
    """
    if flt is None:
        flt = AuditFilter(node, table, key, action, since, until)
    stmt = _select(flt, limit, None)
    with translated("reading the audit log"):
        return [_record(row) for row in conn.execute(stmt)]


def _csv_cell(name: str, value: object) -> object:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, dt.datetime) and name == "at" else value


def export(
    conn: Connection,
    out: TextIO,
    fmt: ExportFormat,
    flt: AuditFilter | None = None,
    *,
    limit: int | None = None,
    before: int | None = None,
) -> int:
    """Stream every matching entry (the newest `limit` if given) to `out`; return how many.

    csv: a header row of every column, then one row per entry; at in ISO 8601 (naive UTC,
    exactly as hashed), row_key and detail as their stored JSON text, NULL as empty. Open
    `out` with newline="". json: JSON Lines, one object per entry with every column, at as in
    csv, row_key and detail as nested JSON; each line stands alone, so the output streams.
    To recompute a hash from JSON Lines, re-encode row_key and detail with `canonical`.
    """
    if fmt not in ("csv", "json"):
        raise UsageError(f"export format must be csv or json, not {fmt!r}")
    stmt = _select(flt or AuditFilter(), limit, before)
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    with translated("exporting the audit log"), stream(conn, stmt) as rows:
        for row in rows:
            if writer is not None:
                writer.writerow(_csv_cell(name, value) for name, value in row._mapping.items())
            else:
                record = _record(row)
                record["at"] = record["at"].isoformat()
                out.write(json.dumps(record, ensure_ascii=False, default=json_default) + "\n")
            count += 1
    return count


def count(conn: Connection, flt: AuditFilter | None = None, *, before: int | None = None) -> int:
    """How many entries match (older than `before`, if given): what a limited export left out."""
    stmt = sa.select(sa.func.count()).select_from(audit).where(*(flt or AuditFilter()).where())
    if before is not None:
        stmt = stmt.where(audit.c.entry_id < before)
    with translated("reading the audit log"):
        return int(conn.scalar(stmt) or 0)


def left_out(
    conn: Connection, flt: AuditFilter, *, limit: int | None, before: int | None = None
) -> tuple[int, int | None]:
    """What the newest `limit` entries (older than `before`) leave out: how many older entries
    match, and the `before` that reads them (None when nothing is left out)."""
    if limit is None:
        return 0, None
    page = _select(flt, limit, before).subquery()
    with translated("reading the audit log"):
        first = conn.scalar(sa.select(sa.func.min(page.c.entry_id)))
    if first is None:
        return 0, None
    more = count(conn, flt, before=int(first))
    return more, int(first) if more else None
