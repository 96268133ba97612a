"""The downward path's wire format: the province's insight on one city customer, in batches.

Pure. The hub (`syncd.hub.downlink`) builds, per node, batches of insight changes on the
node's *own* customers; the city (`syncd.city.insights`) checks and applies them. A batch is
(node, seq), seq counting 1, 2, 3… per node with no gap, and its checksum is one SHA-256 over
the node, the seq and the payload text as it travelled, as for a city's batches upward.

A change is one JSON object:

    {"op": "U", "key": {<the customer's primary key at the city>}, "golden_id": "…",
     "tier": "key|high|medium|standard", "rank": 12, "contribution": "1234.50",
     "segment": "…", "warnings": [{"reason": "…", "severity": 3}, …], "digest": "…"}
    {"op": "D", "key": {…}}
    {"op": "R"}    only as a batch's first change: the city empties its table first (a fresh
                   full set follows: `insights resend`); such a batch may skip the seqs the
                   hub dropped unapplied, and only forward.

`digest` is the SHA-256 of the canonical JSON of the insight fields (everything but op and
digest): what the hub remembers having sent, and what a city can recompute from its row to
prove the row is as the hub sent it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from syncd.core.canonical import canonical, loads
from syncd.core.errors import BatchRefused

UPSERT = "U"
DELETE = "D"
RESET = "R"
RANK_MAX = 2**62  # within bigint on both dialects
AMOUNT_MAX = Decimal(10) ** 18  # syncd_province_insight.contribution is NUMERIC(20, 2)
# The fields of an insight, in the order the city's table holds them (after the key).
FIELDS = ("golden_id", "tier", "rank", "contribution", "segment", "warnings")
TIERS = frozenset({"key", "high", "medium", "standard"})


def digest(fields: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of an insight's FIELDS (values as they travel)."""
    return hashlib.sha256(canonical({f: fields[f] for f in FIELDS}).encode("utf-8")).hexdigest()


def row_hash(row_key: str, digest_hex: str) -> int:
    """The first 60 bits of md5(row_key:digest): summed over a node's insights for reconcile
    (PostgreSQL's syncd_insight_summary computes the same); order-independent."""
    text = f"{row_key}:{digest_hex}".encode()
    return int(hashlib.md5(text, usedforsecurity=False).hexdigest()[:15], 16)


def batch_checksum(node_id: str, seq: int, payload: str) -> str:
    """SHA-256 over canonical([node, seq, changes]), the payload spliced in as it travelled."""
    head = f"[{canonical(node_id)},{int(seq)},"
    return hashlib.sha256((head + payload + "]").encode("utf-8")).hexdigest()


def upsert(key: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The change that sets a customer's insight: the key, the fields and their digest."""
    wire = {f: fields[f] for f in FIELDS}
    return {"op": UPSERT, "key": dict(key), **wire, "digest": digest(wire)}


def delete(key: Mapping[str, Any]) -> dict[str, Any]:
    return {"op": DELETE, "key": dict(key)}


def reset() -> dict[str, Any]:
    return {"op": RESET}


def resets(changes: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a batch's changes begin with a reset."""
    return bool(changes) and changes[0].get("op") == RESET


@dataclass(frozen=True, slots=True)
class DownBatch:
    """One batch as the city receives it."""

    node_id: str
    seq: int
    checksum: str
    payload: str
    row_count: int


def parse(batch: DownBatch, node_id: str, key_columns: Sequence[str]) -> list[dict[str, Any]]:
    """The batch's changes, checked; BatchRefused naming what is wrong otherwise.

    A city trusts nothing it did not check: the batch must be for this node, hash to its
    checksum, hold the announced number of changes, and each change must have the customer
    key's columns and well-formed fields whose digest matches.
    """
    where = f"downlink batch {batch.seq} for {batch.node_id}"
    if batch.node_id != node_id:
        raise BatchRefused(f"{where}: addressed to another node than {node_id}")
    if batch_checksum(batch.node_id, batch.seq, batch.payload) != batch.checksum:
        raise BatchRefused(f"{where}: checksum does not match its payload")
    try:
        changes = loads(batch.payload)
    except ValueError as exc:
        raise BatchRefused(f"{where}: payload is not JSON") from exc
    if not isinstance(changes, list) or len(changes) != batch.row_count:
        raise BatchRefused(f"{where}: payload is not a list of {batch.row_count} changes")
    for n, change in enumerate(changes, start=1):
        if n == 1 and isinstance(change, dict) and change.get("op") == RESET:
            if set(change) != {"op"}:
                raise BatchRefused(f"{where}: change 1: a reset carries only op")
            continue
        problem = _problem(change, key_columns)
        if problem is not None:
            raise BatchRefused(f"{where}: change {n}: {problem}")
    return changes


def _problem(change: Any, key_columns: Sequence[str]) -> str | None:
    if not isinstance(change, dict):
        return "not an object"
    key = change.get("key")
    if not isinstance(key, dict) or sorted(key) != sorted(key_columns):
        return f"key must have exactly the columns {sorted(key_columns)}"
    if any(v is None or isinstance(v, dict | list) for v in key.values()):
        return "key values must be scalars"
    op = change.get("op")
    if op == DELETE:
        return None if set(change) == {"op", "key"} else "a delete carries only op and key"
    if op != UPSERT:
        return f"op must be {UPSERT!r} or {DELETE!r}"
    if set(change) != {"op", "key", "digest", *FIELDS}:
        return f"an upsert carries op, key, digest and {', '.join(FIELDS)}"
    return _fields_problem(change)


def _fields_problem(change: Mapping[str, Any]) -> str | None:
    if not isinstance(change["golden_id"], str) or not change["golden_id"]:
        return "golden_id must be text"
    if change["tier"] not in TIERS:
        return f"tier must be one of {sorted(TIERS)}"
    rank = change["rank"]
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank < RANK_MAX:
        return "rank must be a positive integer within bigint"
    try:
        amount = Decimal(change["contribution"])
    except (InvalidOperation, TypeError):
        return "contribution must be a decimal in text"
    if not amount.is_finite() or abs(amount) >= AMOUNT_MAX:
        return "contribution must be a finite amount below 10^18"
    if not isinstance(change["segment"], str):
        return "segment must be text"
    if len(change["golden_id"]) > 64 or len(change["segment"]) > 200:
        return "golden_id or segment too long (64 and 200 characters at most)"
    warnings = change["warnings"]
    if not isinstance(warnings, list) or not all(
        isinstance(w, dict) and isinstance(w.get("reason"), str) for w in warnings
    ):
        return "warnings must be a list of objects with a reason"
    if change["digest"] != digest(change):
        return "digest does not match the fields"
    return None
