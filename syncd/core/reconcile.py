"""Reconcile: what a city's policy says the hub should hold against what it holds, by digest.

Pure: the canonical text both databases hash, bucket planning, and the bisection that narrows
a differing table down to keys. Each side (city, hub) answers the same three questions about
one table through `Side`, computing in its own database; only digests of buckets, then keys
with row hashes of small differing buckets, cross the wire — never whole tables.

Canonical text, identical in SQLite and PostgreSQL (syncd.store.digest, and the hub's
sql/postgresql/reconcile_functions.sql): each public column rendered to text by its kind —
decimals at the column's declared scale, dates as YYYY-MM-DD, timestamps as naive UTC ISO
seconds, booleans as t/f, lists as their elements joined by US — NULL as RS, columns joined
by US in the policy's order. A row's hash is md5 of that text; a bucket's digest is its row
count, the exact sums of its decimal columns and the sum of the first 15 hex digits of its
rows' md5 modulo 2^60 (order-independent, so no side needs to sort). A row's bucket at
modulus M is the first 8 hex digits of md5(key text) mod M; the moduli are powers of two,
so the buckets at a finer modulus split those of a coarser one.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from syncd.core.policy import ColumnType, Table

SEP = "\x1f"  # between columns (and list elements)
NULL = "\x1e"  # a NULL value
HASH_BITS = 60
KEY_BITS = 32
# The first question splits a table into up to 2^16 buckets at once: one scan per side finds
# the differing buckets of a table of up to ~4M rows at leaf size (≤ 64 rows), and an answer
# holds at most 2^16 digests whatever the table's size (bounded memory).
FIRST_MODULUS = 1 << 16
FANOUT_BITS = 6
LEAF_ROWS = 64  # a bucket this small on both sides is listed key by key
LEAF_CHUNK = 500  # differing leaf buckets asked for in one question
MAX_PARENTS = 1000  # a finer level asks about at most this many buckets by name


class Kind(StrEnum):
    """How a column is rendered to canonical text."""

    TEXT = "text"
    INT = "int"
    DEC = "dec"
    BOOL = "bool"
    DATE = "date"
    TS = "ts"
    LIST = "list"


_KINDS = {
    ColumnType.STRING: Kind.TEXT,
    ColumnType.TEXT: Kind.TEXT,
    ColumnType.INTEGER: Kind.INT,
    ColumnType.DECIMAL: Kind.DEC,
    ColumnType.BOOLEAN: Kind.BOOL,
    ColumnType.DATE: Kind.DATE,
    ColumnType.TIMESTAMP: Kind.TS,
    ColumnType.LIST: Kind.LIST,
}


@dataclass(frozen=True)
class Col:
    name: str
    kind: Kind
    scale: int = 0


@dataclass(frozen=True)
class Spec:
    """One public table as reconcile sees it: public columns, key and money columns."""

    table: str
    columns: tuple[Col, ...]
    key: tuple[str, ...]

    @property
    def money(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.kind is Kind.DEC)

    @property
    def key_cols(self) -> tuple[Col, ...]:
        by_name = {c.name: c for c in self.columns}
        return tuple(by_name[k] for k in self.key)


def spec_for(table: Table) -> Spec:
    """The reconcile view of a policy table: what the hub should hold of it."""
    cols = tuple(
        Col(n, _KINDS[table.columns[n].type], table.columns[n].scale or 0)
        for n in table.public_columns
    )
    return Spec(table.name, cols, tuple(table.primary_key))


def text_of(col: Col, value: Any) -> str | None:
    """A Python value's canonical text (what the databases render); None for NULL."""
    if value is None:
        return None
    if col.kind is Kind.BOOL:
        return "t" if value else "f"
    if col.kind is Kind.DEC:
        q = decimal.Decimal(1).scaleb(-col.scale)
        return str(decimal.Decimal(str(value)).quantize(q, rounding=decimal.ROUND_HALF_UP))
    if col.kind is Kind.TS and isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if col.kind is Kind.DATE and isinstance(value, dt.date):
        return value.isoformat()
    if col.kind is Kind.LIST:
        return SEP.join(str(v) for v in value)
    return str(value)


def joined(texts: Iterable[str | None]) -> str:
    return SEP.join(NULL if t is None else t for t in texts)


def key_text(spec: Spec, values: Mapping[str, Any]) -> str:
    """The key of a row given as column → value (a changelog image, a quarantined key)."""
    return joined(text_of(c, values.get(c.name)) for c in spec.key_cols)


def key_values(spec: Spec, text: str) -> dict[str, str | None]:
    """A key text split back into column → canonical text."""
    parts = text.split(SEP)
    return {k: (None if p == NULL else p) for k, p in zip(spec.key, parts, strict=False)}


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def row_hash60(row_md5: str) -> int:
    return int(row_md5[:15], 16)


def key32(text: str) -> int:
    return int(md5_hex(text)[:8], 16)


@dataclass(frozen=True)
class Digest:
    """One bucket's answer: row count, exact sums of the money columns, combined row hash."""

    rows: int = 0
    sums: tuple[decimal.Decimal | None, ...] = ()  # None: every value NULL
    hash: int = 0

    def same(self, other: Digest) -> bool:
        if self.rows != other.rows or self.hash % (1 << HASH_BITS) != other.hash % (1 << HASH_BITS):
            return False
        return all((a or 0) == (b or 0) for a, b in zip(self.sums, other.sums, strict=False))


class Side(Protocol):
    """One database's answers about one table (city: what should be sent; hub: what it has)."""

    def digests(
        self, spec: Spec, modulus: int, parent_modulus: int, parents: Sequence[int] | None
    ) -> dict[int, Digest]:
        """Digest per bucket at `modulus`, of the rows whose bucket at `parent_modulus` is in
        `parents` (every row when None); empty buckets are absent."""
        ...

    def leaf(self, spec: Spec, modulus: int, buckets: Sequence[int]) -> dict[str, str]:
        """Key text → row md5 of every row in the buckets at `modulus`."""
        ...

    def columns(self, spec: Spec, keys: Sequence[str], values: bool) -> dict[str, dict[str, Any]]:
        """Key text → column → md5 of its canonical text (or the text itself with `values`)."""
        ...


@dataclass
class KeyDiff:
    """Keys that differ, by kind; `truncated` when the listing stopped at its limit."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.changed)


def differing(city: Mapping[int, Digest], hub: Mapping[int, Digest]) -> list[int]:
    """Buckets whose digests differ (an absent bucket is empty), in order."""
    empty = Digest()
    return sorted(b for b in set(city) | set(hub) if not city.get(b, empty).same(hub.get(b, empty)))


def _finer(modulus: int) -> int:
    return min(modulus << FANOUT_BITS, 1 << KEY_BITS)


def total(digests: Mapping[int, Digest], money: int) -> Digest:
    """The digest of the union of buckets: counts, sums and hashes add up."""
    sums: list[decimal.Decimal | None] = [None] * money
    rows = hash_ = 0
    for d in digests.values():
        rows += d.rows
        hash_ += d.hash
        for i, v in enumerate(d.sums):
            if v is not None:
                sums[i] = v if sums[i] is None else sums[i] + v  # type: ignore[operator]
    return Digest(rows, tuple(sums), hash_ % (1 << HASH_BITS))


def _is_leaf(modulus: int, buckets: Sequence[int], *digests: Mapping[int, Digest]) -> bool:
    if modulus >= 1 << KEY_BITS:
        return True
    return all(d[b].rows <= LEAF_ROWS for d in digests for b in buckets if b in d)


@dataclass
class Narrowed:
    """Both sides' digests of the whole table, and the small buckets where they differ."""

    city: Digest
    hub: Digest
    modulus: int
    buckets: list[int]


def narrow(spec: Spec, city: Side, hub: Side) -> Narrowed:
    """Bisect the table into buckets until the differing ones are small enough to list."""
    modulus = FIRST_MODULUS
    c_dig = city.digests(spec, modulus, 1, None)
    h_dig = hub.digests(spec, modulus, 1, None)
    money = len(spec.money)
    found = Narrowed(total(c_dig, money), total(h_dig, money), modulus, differing(c_dig, h_dig))
    while found.buckets and not _is_leaf(found.modulus, found.buckets, c_dig, h_dig):
        finer = _finer(found.modulus)
        parents = found.buckets if len(found.buckets) <= MAX_PARENTS else None
        c_dig = city.digests(spec, finer, found.modulus, parents)
        h_dig = hub.digests(spec, finer, found.modulus, parents)
        wanted = set(found.buckets)
        found.buckets = [b for b in differing(c_dig, h_dig) if b % found.modulus in wanted]
        found.modulus = finer
    return found


def compare_leaves(
    spec: Spec, city: Side, hub: Side, modulus: int, buckets: Sequence[int], limit: int
) -> KeyDiff:
    """List the differing keys of small buckets, chunk by chunk, up to `limit` keys."""
    diff = KeyDiff()
    for start in range(0, len(buckets), LEAF_CHUNK):
        chunk = buckets[start : start + LEAF_CHUNK]
        mine = city.leaf(spec, modulus, chunk)
        theirs = hub.leaf(spec, modulus, chunk)
        for key in sorted(set(mine) | set(theirs)):
            if diff.count >= limit:
                diff.truncated = True
                return diff
            if key not in theirs:
                diff.missing.append(key)
            elif key not in mine:
                diff.extra.append(key)
            elif mine[key] != theirs[key]:
                diff.changed.append(key)
    return diff


def changed_columns(
    spec: Spec, mine: Mapping[str, Mapping[str, Any]], theirs: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[str]]:
    """Key → names of the columns whose canonical texts (or their hashes) differ."""
    out: dict[str, list[str]] = {}
    for key, cols in mine.items():
        other = theirs.get(key, {})
        out[key] = [c.name for c in spec.columns if cols.get(c.name) != other.get(c.name)]
    return out
