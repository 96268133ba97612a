"""Reading the audit log for auditors: filters, pages with a count of what is left, exports.

The log is read as *lines*: every entry of syncd_audit (ord 0), and every row decision of
syncd_audit_row (ord 1..n) with its covering entry's time, node, batch and table, so a reader
sees one line per row decision whether it was written as its own entry (before version 2) or
covered by a `row_decisions` entry. Lines are ordered by (entry_id, ord); a page position is
that pair ("18200" is (18200, 0), "18200.17" is (18200, 17)). Every filter is SQL over the
lines; `GoldenScope` (`syncd.hub.audit_golden`) narrows to the lines of one golden record.
Times are compared in naive UTC, as stored; the CLI turns an auditor's zone into that.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from typing import Any, Literal, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from syncd.core.auditchain import COLUMNS, EXPORT_COLUMNS
from syncd.core.canonical import canonical, json_default
from syncd.core.errors import UsageError
from syncd.core.policy import Policy
from syncd.core.times import parse_time
from syncd.hub.audit import naive_utc, stream
from syncd.hub.audit_golden import GoldenScope
from syncd.store.db import translated
from syncd.store.hub_tables import audit, audit_rows

ExportFormat = Literal["csv", "json"]
# Where a line stands in the log: (entry_id, ord), ord 0 being the entry itself.
Position = tuple[int, int]


_MAX_ID = 2**63 - 1  # a BIGINT's largest value: SQLite cannot bind a larger int


def parse_position(text: str | int) -> Position:
    """A page position as given to --before: an entry id, or ENTRY.ORD for a row decision."""
    entry, _, ord_ = str(text).strip().partition(".")
    try:
        position = (int(entry), int(ord_) if ord_ else 0)
    except ValueError:
        position = (0, -1)
    if not (1 <= position[0] <= _MAX_ID and 0 <= position[1] <= _MAX_ID):
        raise UsageError(
            f"--before {str(text)[:40]!r}: expected an entry id, or ENTRY.ORD for a row decision"
        )
    return position


def format_position(position: Position) -> int | str:
    """What --before takes to read the lines before `position`: an int for an entry."""
    entry_id, ord_ = position
    return entry_id if ord_ == 0 else f"{entry_id}.{ord_}"


def _position(before: int | str | Position | None) -> Position | None:
    if before is None or isinstance(before, tuple):
        return before
    return parse_position(before)


def lines() -> sa.Subquery:
    """Every line of the log (EXPORT_COLUMNS): entries, and row decisions with their entry's
    at, node_id, batch_id and table_name (prev_hash and entry_hash NULL)."""
    a, r = audit.c, audit_rows.c
    entries = sa.select(
        *(a[name] for name in COLUMNS),
        sa.literal(0, sa.Integer()).label("ord"),
        sa.cast(sa.null(), sa.String(64)).label("row_hash"),
    )
    rows = sa.select(
        r.entry_id,
        a.at,
        r.action,
        a.node_id,
        a.batch_id,
        a.table_name,
        r.row_key,
        r.detail,
        sa.cast(sa.null(), sa.String(64)).label("prev_hash"),
        sa.cast(sa.null(), sa.String(64)).label("entry_hash"),
        r.ord,
        r.row_hash,
    ).select_from(audit_rows.join(audit, a.entry_id == r.entry_id))
    return sa.union_all(entries, rows).subquery("audit_line")


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
    the entries of one golden record (its source rows in every city, its conflicts); `batch`
    those of one inbox batch (its row decisions, refusal or application).
    """

    node: str | None = None
    table: str | None = None
    key: object = None
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    golden: GoldenScope | None = None
    batch: int | None = None

    def where(self, c: Any) -> list[sa.ColumnElement[bool]]:
        """The SQL conditions of this filter on `c`, the columns of `lines()`."""
        conditions: list[sa.ColumnElement[bool]] = []
        if self.node is not None:
            conditions.append(c.node_id == self.node)
        if self.table is not None:
            conditions.append(c.table_name == self.table)
        if self.key is not None:
            conditions.append(c.row_key == _key_text(self.key))
        if self.action is not None:
            conditions.append(c.action == str(self.action))
        if self.batch is not None:
            conditions.append(c.batch_id == int(self.batch))
        if self.since is not None:
            conditions.append(c.at >= naive_utc(self.since))
        if self.until is not None:
            conditions.append(c.at < naive_utc(self.until))
        if self.golden is not None:
            conditions.append(self.golden.condition(c))
        return conditions


@dataclasses.dataclass(frozen=True)
class Criteria:
    """What an auditor asked for, as typed (`audit log` options, the console's filter form)."""

    node: str | None = None
    table: str | None = None
    key: str | None = None
    id_number: str | None = None
    golden_id: int | None = None
    action: str | None = None
    since: str | None = None
    until: str | None = None
    batch: int | None = None

    def build(self, conn: Connection, policy: Policy, tz: dt.tzinfo) -> AuditFilter:
        """The filter, with --id-number or --golden-id looked up in the hub's golden tables
        and --since/--until without an offset read in `tz` (UsageError naming a bad one)."""
        from syncd.hub.audit_golden import golden_scope

        scope = None
        if self.id_number is not None or self.golden_id is not None:
            scope = golden_scope(
                conn,
                policy,
                table=self.table,
                golden_id=self.golden_id,
                id_number=self.id_number,
            )
        return AuditFilter(
            node=self.node,
            table=self.table,
            key=self.key,
            action=self.action,
            since=parse_time("--since", self.since, tz),
            until=parse_time("--until", self.until, tz),
            golden=scope,
            batch=self.batch,
        )


@dataclasses.dataclass(frozen=True)
class Page:
    """A page of lines in (entry_id, ord) order: the newest `limit` before `before`, if given.

    `more` is how many older lines also match; `next_before` is the `before` that reads
    them (the first line shown: an entry id, or "ENTRY.ORD"), None when there are none.
    """

    entries: list[dict[str, Any]]
    more: int
    next_before: int | str | None


def _before(c: Any, before: Position) -> sa.ColumnElement[bool]:
    entry_id, ord_ = before
    return sa.or_(c.entry_id < entry_id, sa.and_(c.entry_id == entry_id, c.ord < ord_))


def _select(
    flt: AuditFilter, limit: int | None, before: int | str | Position | None
) -> sa.Select[Any]:
    line = lines()
    c = line.c
    stmt = sa.select(*(c[name] for name in EXPORT_COLUMNS)).where(*flt.where(c))
    position = _position(before)
    if position is not None:
        stmt = stmt.where(_before(c, position))
    if limit is None:
        return stmt.order_by(c.entry_id, c.ord)
    if limit < 0:
        raise UsageError(f"limit must not be negative: {limit}")
    newest = stmt.order_by(c.entry_id.desc(), c.ord.desc()).limit(limit).subquery()
    return sa.select(newest).order_by(newest.c.entry_id, newest.c.ord)


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
    conn: Connection, flt: AuditFilter, *, limit: int, before: int | str | Position | None = None
) -> Page:
    """The newest `limit` matching lines (older than `before`), and how many more match."""
    with translated("reading the audit log"):
        entries = [_record(row) for row in conn.execute(_select(flt, limit, before))]
        if not entries or len(entries) < limit:
            return Page(entries, 0, None)
        first = (int(entries[0]["entry_id"]), int(entries[0]["ord"]))
        more = count(conn, flt, before=first)
    return Page(entries, more, format_position(first) if more else None)


def newer_before(
    conn: Connection, flt: AuditFilter, *, limit: int, before: int | str | Position
) -> int | str | None:
    """The `before` of the page of `limit` lines just newer than the page read with `before`
    (None: that page is the newest), for a reader paging back towards the head."""
    line = lines()
    c = line.c
    entry_id, ord_ = _position(before) or (0, 0)
    at_or_after = sa.or_(c.entry_id > entry_id, sa.and_(c.entry_id == entry_id, c.ord >= ord_))
    stmt = (
        sa.select(c.entry_id, c.ord)
        .where(*flt.where(c), at_or_after)
        .order_by(c.entry_id, c.ord)
        .offset(limit)
        .limit(1)
    )
    with translated("reading the audit log"):
        found = conn.execute(stmt).first()
    return None if found is None else format_position((int(found.entry_id), int(found.ord)))


def entry_lines(
    conn: Connection, entry_id: int, *, limit: int | None = None, after: int = 0
) -> list[dict[str, Any]]:
    """One entry's lines in ord order: the entry itself (ord 0, unless `after` > 0) and the
    row decisions it covers with ord > `after`, at most `limit` of those (as `query` gives
    them; empty when there is no such entry)."""
    line = lines()
    c = line.c
    stmt = sa.select(*(c[name] for name in EXPORT_COLUMNS)).where(c.entry_id == entry_id)
    if after:
        stmt = stmt.where(c.ord > after)
    stmt = stmt.order_by(c.ord)
    if limit is not None:
        stmt = stmt.limit(limit + (0 if after else 1))
    with translated("reading the audit log"):
        return [_record(row) for row in conn.execute(stmt)]


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
    """Matching lines in (entry_id, ord) order, the newest `limit` of them if given.

    Criteria as in `AuditFilter`: `flt`, or the keywords (one or the other). Each dict holds
    EXPORT_COLUMNS; row_key and detail are decoded from JSON, at is a naive UTC datetime; a
    row decision has ord >= 1 and row_hash, an entry ord 0 and its hashes.
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
    before: int | str | Position | None = None,
) -> int:
    """Stream every matching line (the newest `limit` if given) to `out`; return how many.

    csv: a header row of EXPORT_COLUMNS, then one row per line; at in ISO 8601 (naive UTC,
    exactly as hashed), row_key and detail as their stored JSON text, NULL as empty. Open
    `out` with newline="". json: JSON Lines, one object per line with every column, at as in
    csv, row_key and detail as nested JSON; each line stands alone, so the output streams.
    To recompute a hash from JSON Lines, re-encode row_key and detail with `canonical`.
    """
    if fmt not in ("csv", "json"):
        raise UsageError(f"export format must be csv or json, not {fmt!r}")
    stmt = _select(flt or AuditFilter(), limit, before)
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
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


def count(
    conn: Connection,
    flt: AuditFilter | None = None,
    *,
    before: int | str | Position | None = None,
) -> int:
    """How many lines match (older than `before`, if given): what a limited export left out."""
    line = lines()
    stmt = sa.select(sa.func.count()).select_from(line).where(*(flt or AuditFilter()).where(line.c))
    position = _position(before)
    if position is not None:
        stmt = stmt.where(_before(line.c, position))
    with translated("reading the audit log"):
        return int(conn.scalar(stmt) or 0)


def left_out(
    conn: Connection,
    flt: AuditFilter,
    *,
    limit: int | None,
    before: int | str | Position | None = None,
) -> tuple[int, int | str | None]:
    """What the newest `limit` lines (older than `before`) leave out: how many older lines
    match, and the `before` that reads them (None when nothing is left out)."""
    if limit is None:
        return 0, None
    page = _select(flt, limit, before).limit(1)
    with translated("reading the audit log"):
        found = conn.execute(page).first()
    if found is None:
        return 0, None
    first = (int(found.entry_id), int(found.ord))
    more = count(conn, flt, before=first)
    return more, format_position(first) if more else None
