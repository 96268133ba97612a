"""Canonical JSON: one byte-exact encoding for checksums and hashes on both sides of the wire."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any


def json_default(obj: object) -> object:
    """`json.dumps(default=…)` for the types syncd stores: Decimal, dates, sets."""
    if isinstance(obj, decimal.Decimal):
        # Text, not float: a float would round money and print differently across versions.
        return str(obj)
    if isinstance(obj, dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        # Sets have no order; sorting by each element's encoding makes the output stable.
        return sorted(obj, key=canonical)
    raise TypeError(f"cannot encode a {type(obj).__name__} canonically: {obj!r}")


# One encoder, built once: json.dumps with any non-default option builds a new JSONEncoder
# on every call, which costs more than encoding a small row.
_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    default=json_default,
)


def canonical(obj: object) -> str:
    """The one JSON text of a value: sorted keys, no spaces, UTF-8 kept, no NaN."""
    return _ENCODER.encode(obj)


def loads(text: str | bytes) -> Any:
    """Parse JSON keeping decimal numbers exact (money never goes through float)."""
    return json.loads(text, parse_float=decimal.Decimal)


def iso_seconds(value: dt.datetime | None) -> str | None:
    """A stored timestamp as ISO text to the second, for status and reports."""
    return value.isoformat(timespec="seconds") if value else None
