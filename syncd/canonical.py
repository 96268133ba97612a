"""Canonical JSON: one byte-exact encoding for checksums and hashes on both sides of the wire."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any


def _default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, set | frozenset | tuple):
        return sorted(obj) if isinstance(obj, set | frozenset) else list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} canonically")


def canonical(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text as is; Decimals and times as strings."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    )


def loads(text: str | bytes) -> Any:
    """Parse JSON keeping decimal numbers exact (money never goes through float)."""
    return json.loads(text, parse_float=decimal.Decimal)
