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
    return policy.derived("agreement.fingerprint", lambda: shape_fingerprint(public_shape(policy)))


def differences(city: Mapping[str, Sequence[str]], hub: Mapping[str, Sequence[str]]) -> list[str]:
    """Each way the city's public shape differs from the hub's, one sentence each, sorted."""
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
    return found
