"""What a city and its hub must agree on: which tables and columns are public.

A policy's *public shape* is each public table with its public columns, sorted, so the order
of declaration does not count. Its fingerprint is the SHA-256 of the shape's canonical JSON.
Every batch carries the sender's fingerprint; a hub refuses a batch whose shape differs from
its own and says which table or column differs (`differences`, and the same wording in the
PostgreSQL submit function). Filters, checks and merge rules are not part of the shape: they
decide which rows and values a city sends, not what may leave it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.core.canonical import canonical
from syncd.core.policy import Policy

Shape = dict[str, list[str]]


def public_shape(policy: Policy) -> Shape:
    """{table: sorted public columns} for every public table of the policy."""
    return {t.name: sorted(t.public_columns) for t in policy.public_tables}


def shape_fingerprint(shape: Mapping[str, Sequence[str]]) -> str:
    """SHA-256 hex of the shape's canonical JSON (columns sorted)."""
    text = canonical({name: sorted(cols) for name, cols in shape.items()})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(policy: Policy) -> str:
    """The fingerprint of a policy's public shape."""
    return stamp(policy).fingerprint


@dataclass(frozen=True)
class Stamp:
    """What a batch carries of its sender's policy: the fingerprint, and the shape it hashes
    so the hub can say which table or column differs."""

    fingerprint: str
    shape: Shape

    def wire(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "shape": self.shape}


def stamp(policy: Policy) -> Stamp:
    """The policy's stamp, built once per policy."""

    def build() -> Stamp:
        shape = public_shape(policy)
        return Stamp(shape_fingerprint(shape), shape)

    return policy.derived("agreement.stamp", build)


def read_stamp(value: object) -> Stamp | None:
    """A stamp from its wire form, or None if the value is not one (hostile or missing)."""
    if not isinstance(value, Mapping):
        return None
    fp, shape = value.get("fingerprint"), value.get("shape")
    if not isinstance(fp, str) or not isinstance(shape, Mapping):
        return None
    if not all(
        isinstance(t, str) and isinstance(cols, list) and all(isinstance(c, str) for c in cols)
        for t, cols in shape.items()
    ):
        return None
    return Stamp(fp[:64], {t: list(cols) for t, cols in shape.items()})


# How many differences a refusal names; a hostile city must not make the hub write a novel.
SHOWN = 10
NO_STAMP = (
    "the batch carries no policy fingerprint: this city runs a syncd older than its hub; upgrade it"
)
MALFORMED = "the batch's policy stamp is malformed"
HUB_UNRECORDED = "the hub has not recorded its policy: run `syncd init` at the hub"


def mismatch(found: Sequence[str]) -> str:
    """The refusal of a batch whose policy differs, naming the first SHOWN differences."""
    more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return "the city's policy differs from the hub's: " + "; ".join(found[:SHOWN]) + more


def refusal(sent: object, hub: Stamp | None) -> str | None:
    """Why a batch stamped `sent` (its wire form) is refused by a hub whose policy is `hub`.

    The same rules, and the same words, as the PostgreSQL submit function.
    """
    if sent is None:
        return NO_STAMP
    city = read_stamp(sent)
    if city is None:
        return MALFORMED
    if hub is None:
        return HUB_UNRECORDED
    found = differences(city.shape, hub.shape)
    return mismatch(found) if found else None


def differences(city: Mapping[str, Sequence[str]], hub: Mapping[str, Sequence[str]]) -> list[str]:
    """Each way the city's public shape differs from the hub's, one sentence each, in code
    point order (the PostgreSQL function sorts them COLLATE "C", so both say the same)."""
    found: list[str] = []
    for table in sorted(set(city) | set(hub)):
        if table not in hub:
            found.append(f"table {table} is public in the city's policy but not in the hub's")
        elif table not in city:
            found.append(f"table {table} is public in the hub's policy but not in the city's")
        else:
            mine, theirs = set(city[table]), set(hub[table])
            found += [
                f"column {table}.{c} is public in the city's policy but not in the hub's"
                for c in sorted(mine - theirs)
            ]
            found += [
                f"column {table}.{c} is public in the hub's policy but not in the city's"
                for c in sorted(theirs - mine)
            ]
    return sorted(found)
