"""Batches: what a city sends — filtered, coalesced changes with an identity and a checksum.

Pure: turns changelog rows into changes and changes into batches; no database here.
A batch is identified by (node, last_seq). last_seq is the last changelog sequence the batch
*covers*, which may be past its last change when trailing changes were filtered out: the
hub's watermark must advance past changes that never leave the city, too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from syncd.core.agreement import Stamp
from syncd.core.canonical import canonical
from syncd.core.policy import Policy
from syncd.core.rowfilter import Transition, transition

UPSERT = "upsert"
DELETE = "delete"

# A value a city cannot send as it is travels as {UNSENDABLE: kind} instead: neither JSON nor
# PostgreSQL's jsonb can carry a BLOB, text that is not UTF-8 or a NUL character, and one such
# value must neither fail the CRM's write nor wedge the push. The hub quarantines the row with
# a reason that names the column (never the value); the value itself stays in the city.
UNSENDABLE = "syncd_unsendable"


class Unsendable(StrEnum):
    """Why a value could not be sent."""

    BLOB = "blob"
    INVALID_UTF8 = "invalid_utf8"
    NUL = "nul_character"


def unsendable(kind: Unsendable) -> dict[str, str]:
    """The stand-in that travels in place of a value the city cannot send."""
    return {UNSENDABLE: kind.value}


def unsendable_kind(value: object) -> Unsendable | None:
    """The kind of a stand-in made by `unsendable`, or None for any other value."""
    if isinstance(value, dict) and len(value) == 1 and UNSENDABLE in value:
        try:
            return Unsendable(value[UNSENDABLE])
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Captured:
    """One changelog row as read from a city database."""

    seq: int
    table: str
    op: str  # I, U, D
    image: Mapping[str, Any]
    old_filter: Mapping[str, Any] | None
    size: int = 0  # bytes of the captured image: the batch byte cap's measure


@dataclass(frozen=True)
class Change:
    """One row change as the hub receives it."""

    seq: int
    table: str
    op: str  # upsert | delete
    key: dict[str, Any]
    row: dict[str, Any] | None

    def wire(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "table": self.table,
            "op": self.op,
            "key": self.key,
            "row": self.row,
        }


class SubmitStatus(StrEnum):
    """The hub's answer to a submitted batch."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the same batch again: a no-op
    REFUSED = "refused"


@dataclass(frozen=True)
class SubmitResult:
    status: SubmitStatus
    reason: str | None = None
    batch_id: int | None = None  # the hub's id of the batch (accepted or duplicate)


@dataclass(frozen=True)
class Batch:
    node_id: str
    first_seq: int
    last_seq: int
    changes: tuple[Change, ...]
    checksum: str
    wire_json: str = ""  # canonical JSON of the wire rows, encoded once for checksum and submit
    # The sender's policy (issue 12): the hub refuses a batch whose public shape differs from
    # its own. Not part of the checksum, so a batch sent before an upgrade is still the same
    # batch when it is sent again after it.
    policy: Stamp | None = None

    @property
    def row_count(self) -> int:
        return len(self.changes)


def to_change(policy: Policy, captured: Captured) -> Change | None:
    """Apply the policy to one captured change: None when nothing of it may leave the city.

    The triggers already drop excluded columns; this is the second line: only declared public
    columns of declared public tables pass, whatever the changelog holds.
    """
    table = policy.tables.get(captured.table)
    if table is None or not table.is_public:
        return None
    public = table.public_columns
    image = {c: captured.image.get(c) for c in public}
    key = {c: image[c] for c in table.primary_key}
    if captured.op == "D":
        old = {c: captured.image.get(c) for c in table.filter_columns}
        t = transition(table.filter, "D", None, old)
    else:
        t = transition(table.filter, captured.op, image, captured.old_filter)
    if t is Transition.NONE:
        return None
    if t is Transition.DELETE:
        return Change(captured.seq, table.name, DELETE, key, None)
    return Change(captured.seq, table.name, UPSERT, key, image)


def coalesce(changes: Iterable[Change]) -> list[Change]:
    """Keep only the last change of each row, in sequence order of the survivors.

    Within one batch a row's last change carries its final state: an upsert after a delete
    re-creates it, a delete after upserts removes it; intermediate versions need not travel.
    """
    last: dict[tuple[str, Any], Change] = {}
    for ch in changes:
        # Keys are built in primary-key order (to_change), so their items identify the row.
        row: tuple[str, Any] = (ch.table, tuple(ch.key.items()))
        try:
            hash(row)
        except TypeError:
            # A key value that is no scalar (a stand-in for a value the city cannot send):
            # its canonical text identifies it. The hub quarantines the row; it must not
            # stop the push.
            row = (ch.table, canonical(ch.key))
        last[row] = ch
    return sorted(last.values(), key=lambda c: c.seq)


def checksum(
    node_id: str, first_seq: int, last_seq: int, changes: Sequence[Mapping[str, Any]]
) -> str:
    """SHA-256 over the canonical encoding of the batch identity and its wire rows."""
    return payload_checksum(node_id, first_seq, last_seq, canonical(list(changes)))


def payload_checksum(node_id: str, first_seq: int, last_seq: int, payload: str) -> str:
    """`checksum` of a batch whose wire rows are given as the JSON text that travelled.

    canonical([node, first, last, rows]) is that text spliced into the identity's array, so a
    hub holding the text a city sent checks it with one hash, without re-encoding its rows.
    For a city's canonical payload the two functions agree (a unit test holds them to it).
    """
    head = f"[{canonical(node_id)},{int(first_seq)},{int(last_seq)},"
    return hashlib.sha256((head + payload + "]").encode("utf-8")).hexdigest()


def make_batch(
    node_id: str,
    first_seq: int,
    last_seq: int,
    changes: Sequence[Change],
    policy: Stamp | None = None,
) -> Batch:
    wire_json = canonical([c.wire() for c in changes])
    return Batch(
        node_id,
        first_seq,
        last_seq,
        tuple(changes),
        payload_checksum(node_id, first_seq, last_seq, wire_json),
        wire_json=wire_json,
        policy=policy,
    )
