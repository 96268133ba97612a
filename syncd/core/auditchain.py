"""The audit log's hash chain: how an entry is hashed, and the one check of a chain of entries.

Pure, so the hub's `audit verify` (entries read from its database) and the offline
`audit verify --file` (entries read from an export) run the same code. Entry n stores
prev_hash = entry_hash of entry n-1 (GENESIS_HASH for entry 1) and entry_hash = SHA-256 hex of
prev_hash + canonical(the entry's HASHED_FIELDS), where row_key and detail are hashed as the
canonical JSON text stored in their columns. So a changed, removed or foreign entry breaks the
chain where it stands. A full rewrite with recomputed hashes is caught only against an anchor
(`"<entry_id>:<entry_hash>"`) an auditor kept outside the database. docs/auditors.md states
the same rules for an auditor's own verifier; a test runs the one printed there.

Version 2 (row decisions): an entry of action ROW_DECISIONS stands for the row decisions of one
batch, table and outcome; its detail is {"action", "count", "rows_hash", "version": 2}. Each
decision is a *row line* (entry_id of the covering entry, ord 1..count, action, row_key,
detail, row_hash) with row_hash = SHA-256 hex of canonical({"action", "detail", "row_key"})
(row_key and detail nested as JSON values, not as text), and rows_hash = SHA-256 hex of
the row hashes' hex text concatenated in ord order. The covering entry is hashed and chained
like any other, so an edited, inserted or deleted row decision breaks the entry's rows_hash
(or its ord sequence, or its count). The lines of a log are ordered by (entry_id, ord), an
entry being ord 0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from json.encoder import encode_basestring  # the escaping canonical() uses (ensure_ascii off)
from typing import Any, cast

from syncd.core.canonical import canonical
from syncd.core.errors import UsageError

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
# An export's columns since version 2: every line has them; an entry has ord 0 and no row_hash,
# a row decision has ord >= 1, its covering entry's fields and no prev_hash/entry_hash.
EXPORT_COLUMNS = (*COLUMNS, "ord", "row_hash")

ROW_DECISIONS = "row_decisions"  # the action of an entry covering row decisions (version 2)
ROWS_VERSION = 2
# The fields a row line shares with its covering entry (export lines carry them).
_COVERED_FIELDS = ("at", "node_id", "batch_id", "table_name")

_ANCHOR = re.compile(r"\s*(\d{1,19}):([0-9a-fA-F]{64})\s*")
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


def row_hash(action: str, row_key: str | None, detail: str) -> str:
    """The SHA-256 hex of one row decision: of the canonical JSON of
    {"action": action, "detail": <detail>, "row_key": <row key>}, detail and row key nested as
    the JSON values they are. Their stored texts are already canonical, so the body is their
    concatenation: no re-encoding on the hub's hot path."""
    key = "null" if row_key is None else row_key
    body = '{"action":' + encode_basestring(action) + ',"detail":' + detail + ',"row_key":' + key
    return hashlib.sha256((body + "}").encode("utf-8")).hexdigest()


def rows_hash(row_hashes: list[str]) -> str:
    """What a covering entry commits to: SHA-256 hex of the row hashes concatenated in order."""
    return hashlib.sha256("".join(row_hashes).encode("ascii")).hexdigest()


def covering_detail(action: str, row_hashes: list[str]) -> dict[str, Any]:
    """The detail of the version-2 entry covering these row decisions (in order)."""
    return {
        "action": action,
        "count": len(row_hashes),
        "rows_hash": rows_hash(row_hashes),
        "version": ROWS_VERSION,
    }


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


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """The outcome of a chain check; entries/head_id/head_hash describe the intact prefix.

    starts_after is the entry the chain was taken on trust from: 0 (the genesis hash) for a
    whole log, n for an export that begins at entry n + 1 (its first prev_hash is unchecked).
    rows counts the row decisions checked (entries counts chain entries only).
    """

    ok: bool
    entries: int
    head_id: int
    head_hash: str
    broken_id: int | None = None
    reason: str | None = None
    starts_after: int = 0
    rows: int = 0  # row decisions checked against their covering entries (version 2)

    @property
    def anchor(self) -> str:
        """The anchor of the verified head, for an auditor to keep."""
        return format_anchor(self.head_id, self.head_hash)


def _chain_break(entry: Mapping[str, Any], last_id: int, last_hash: str) -> tuple[int, str] | None:
    entry_id = entry["entry_id"]
    expected = last_id + 1
    if entry_id > expected:
        after = f"entry {last_id}" if last_id else "the start of the log"
        return expected, f"entry {expected} is missing: entry {entry_id} follows {after}"
    if entry_id < expected:
        return entry_id, f"entry_id {entry_id} is out of sequence (expected {expected})"
    if entry["prev_hash"] != last_hash:
        before = f"the hash of entry {last_id}" if last_id else "the genesis hash"
        return entry_id, (
            f"prev_hash does not match {before}: an entry was inserted, removed or rewritten here"
        )
    if entry_hash(entry["prev_hash"], entry) != entry["entry_hash"]:
        return entry_id, "entry_hash does not match the entry's contents: it was modified"
    return None


@dataclasses.dataclass
class _Group:
    """The covering entry whose row decisions are being fed, and what they add up to so far."""

    entry: Mapping[str, Any]
    action: str
    count: int
    rows_hash: str
    seen: int = 0
    hashes: list[str] = dataclasses.field(default_factory=list)


def _covering(entry: Mapping[str, Any]) -> _Group | None:
    """The group a version-2 entry opens; None for any other entry. ValueError if malformed."""
    if entry["action"] != ROW_DECISIONS:
        return None
    detail = json.loads(entry["detail"])
    if not isinstance(detail, dict) or detail.get("version") != ROWS_VERSION:
        raise ValueError("its detail is not a version-2 row-decisions detail")
    action, count, digest = detail.get("action"), detail.get("count"), detail.get("rows_hash")
    if not isinstance(action, str) or type(count) is not int or count < 1:
        raise ValueError("its detail lacks the action or a positive count")
    if not isinstance(digest, str):
        raise ValueError("its detail lacks rows_hash")
    return _Group(entry, action, count, digest)


class ChainCheck:
    """Checks the lines of a log fed in (entry_id, ord) order, and optionally an anchor; keeps
    the first break.

    A line is an entry (a mapping of COLUMNS, `ord` absent or 0) or a row decision of the
    version-2 entry just before it (`ord` 1..count, with action, row_key, detail, row_hash; and
    in an export the covering entry's at, node_id, batch_id, table_name, which must match).
    `against` is an anchor `"<entry_id>:<hash>"` kept from an earlier run: the check fails if
    that entry is gone or differs, which catches removed tails and rewrites with recomputed
    hashes. A malformed anchor raises UsageError before any entry is fed. With trust_first,
    the first entry's prev_hash is taken as given (an export that starts after entry 1), and
    row decisions before that entry, whose covering entry is not there, are skipped.
    """

    def __init__(self, against: str | None = None, *, trust_first: bool = False) -> None:
        self._anchor = None if against is None else parse_anchor(against)
        self._trust_first = trust_first
        self._starts_after = 0
        self.last_id, self.last_hash, self.count = 0, GENESIS_HASH, 0
        self.rows = 0
        self._group: _Group | None = None
        self._broken: VerifyResult | None = None

    def fail(self, entry_id: int, reason: str) -> None:
        """Record a break found outside the chain's own rules (an unreadable entry)."""
        if self._broken is None:
            self._broken = self._result(False, entry_id, reason)

    def feed(self, entry: Mapping[str, Any]) -> bool:
        """Check the next line (an entry or a row decision); False once the chain is broken."""
        if self._broken is not None:
            return False
        if entry.get("ord"):
            return self._feed_row(entry)
        found = self._group_end()
        if found is None:
            if self._trust_first and self.count == 0 and entry["entry_id"] > 1:
                self._starts_after = self.last_id = entry["entry_id"] - 1
                self.last_hash = entry["prev_hash"]
            found = _chain_break(entry, self.last_id, self.last_hash)
        if found is None and self._anchor is not None:
            anchor_id, anchor_hash = self._anchor
            if entry["entry_id"] == anchor_id and entry["entry_hash"] != anchor_hash:
                found = (
                    anchor_id,
                    f"entry {anchor_id} differs from the anchor: the log was rewritten",
                )
        if found is None:
            try:
                self._group = _covering(entry)
            except ValueError as exc:
                found = (entry["entry_id"], f"entry {entry['entry_id']} is malformed: {exc}")
        if found is not None:
            self.fail(*found)
            return False
        self.last_id, self.last_hash = entry["entry_id"], entry["entry_hash"]
        self.count += 1
        return True

    def _group_end(self) -> tuple[int, str] | None:
        """A break if the open group lacks row decisions; closes it."""
        group, self._group = self._group, None
        if group is None or group.seen == group.count:
            return None
        entry_id = group.entry["entry_id"]
        return entry_id, (
            f"entry {entry_id} covers {group.count} row decisions but {group.seen} follow it:"
            " a row decision was removed"
        )

    def _feed_row(self, row: Mapping[str, Any]) -> bool:
        entry_id, ord_ = row["entry_id"], row["ord"]
        group = self._group
        found: tuple[int, str] | None
        if group is None or group.entry["entry_id"] != entry_id:
            if self._trust_first and self.count == 0:
                return True  # before the first entry of a partial export: nothing to check by
            found = (entry_id, f"row decision {entry_id}.{ord_} is covered by no entry: inserted")
        elif ord_ != group.seen + 1:
            found = (
                entry_id,
                f"row decision {entry_id}.{ord_} is out of sequence (expected "
                f"{entry_id}.{group.seen + 1}): a row decision was inserted or removed",
            )
        elif ord_ > group.count:
            found = (
                entry_id,
                f"entry {entry_id} covers {group.count} row decisions but more follow:"
                " a row decision was inserted",
            )
        else:
            found = self._row_break(group, row)
        if found is not None:
            self.fail(*found)
            return False
        self.rows += 1
        return True

    def _row_break(self, group: _Group, row: Mapping[str, Any]) -> tuple[int, str] | None:
        entry_id, ord_ = row["entry_id"], row["ord"]
        where = f"row decision {entry_id}.{ord_}"
        if row["action"] != group.action:
            return entry_id, f"{where} is not a {group.action!r} decision: it was modified"
        for name in _COVERED_FIELDS:
            if name in row and row[name] != group.entry[name]:
                return entry_id, f"{where} differs from its entry in {name}: it was modified"
        digest = row_hash(row["action"], row["row_key"], row["detail"])
        if digest != row["row_hash"]:
            return entry_id, f"{where} does not match its row_hash: it was modified"
        group.hashes.append(digest)
        group.seen += 1
        if group.seen == group.count and rows_hash(group.hashes) != group.rows_hash:
            return entry_id, (
                f"the row decisions of entry {entry_id} do not match its rows_hash:"
                " one was modified, inserted or removed"
            )
        return None

    def result(self) -> VerifyResult:
        """The outcome once every line is fed."""
        if self._broken is None:
            found = self._group_end()
            if found is not None:
                self.fail(*found)
        if self._broken is not None:
            return self._broken
        if self._anchor is not None:
            anchor_id = self._anchor[0]
            if anchor_id > self.last_id:
                return self._result(
                    False,
                    anchor_id,
                    f"anchor entry {anchor_id} is absent: the log ends at entry {self.last_id}"
                    " (entries removed from its end?)",
                )
            if anchor_id and anchor_id <= self._starts_after:
                return self._result(
                    False,
                    anchor_id,
                    f"anchor entry {anchor_id} is not in the entries checked, which start at "
                    f"entry {self._starts_after + 1}: export from an earlier entry",
                )
        return self._result(True, None, None)

    def _result(self, ok: bool, broken_id: int | None, reason: str | None) -> VerifyResult:
        return VerifyResult(
            ok,
            self.count,
            self.last_id,
            self.last_hash,
            broken_id,
            reason,
            self._starts_after,
            self.rows,
        )


def _int_or_none(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _entry_id(value: object) -> int:
    entry_id = _int_or_none(value)
    if entry_id is None:
        raise ValueError("entry_id is empty")
    return entry_id


def _text_or_none(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def _ord(value: object) -> int:
    ord_ = _int_or_none(value)
    return 0 if ord_ is None else ord_


def from_export_json(record: Mapping[str, Any]) -> dict[str, Any]:
    """The stored fields of one JSON Lines export record: row_key and detail re-encoded.

    A record with `ord` >= 1 is a row decision (exports since version 2), with its row_hash.
    """
    row_key = record["row_key"]
    fields = {
        "entry_id": _entry_id(record["entry_id"]),
        "at": _text_or_none(record["at"]),
        "action": record["action"],
        "node_id": record["node_id"],
        "batch_id": _int_or_none(record["batch_id"]),
        "table_name": record["table_name"],
        "row_key": None if row_key is None else canonical(row_key),
        "detail": canonical(record["detail"]),
        "prev_hash": record["prev_hash"],
        "entry_hash": record["entry_hash"],
        "ord": _ord(record.get("ord")),
    }
    if fields["ord"]:
        fields["row_hash"] = record["row_hash"]
    return fields


def from_export_csv(record: Mapping[str, str | None]) -> dict[str, Any]:
    """The stored fields of one CSV export row: an empty cell is NULL, ids are integers.

    The CSV has COLUMNS (an export before version 2) or EXPORT_COLUMNS.
    """
    fields: dict[str, Any] = {name: _text_or_none(record[name]) for name in COLUMNS}
    fields["entry_id"] = _entry_id(record["entry_id"])
    fields["batch_id"] = _int_or_none(record["batch_id"])
    fields["detail"] = record["detail"]  # never NULL: "{}" at the least
    fields["ord"] = _ord(record.get("ord"))
    if fields["ord"]:
        fields["row_hash"] = _text_or_none(record.get("row_hash"))
    return fields


def parse_export_line(line: str) -> dict[str, Any]:
    """One JSON Lines export line as stored fields; ValueError or KeyError if it is not one."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return from_export_json(record)
