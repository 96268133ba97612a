"""SQLite's stand-ins for what reconcile's digests need of PostgreSQL (md5, exact decimals).

Registered on every SQLite connection as deterministic functions, so the same SQL computes
the same canonical text and hashes in both databases (syncd.core.reconcile).
"""

from __future__ import annotations

import decimal
from typing import Any

from syncd.core.reconcile import HASH_BITS, key32, md5_hex, row_hash60


def _md5(text: Any) -> str | None:
    return None if text is None else md5_hex(str(text))


def _key32(text: Any) -> int | None:
    return None if text is None else key32(str(text))


def _dectext(value: Any, scale: int) -> str | None:
    if value is None:
        return None
    try:
        number = decimal.Decimal(str(value))
        q = decimal.Decimal(1).scaleb(-int(scale))
        return str(number.quantize(q, rounding=decimal.ROUND_HALF_UP))
    except decimal.InvalidOperation:
        return str(value)  # not a number: hashed as it is, so it shows as a difference


class _HashSum:
    """sum of each text's 60-bit md5 prefix, modulo 2^60 (an int64 would overflow)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, text: Any) -> None:
        if text is not None:
            self.total += row_hash60(md5_hex(str(text)))

    def finalize(self) -> str:
        return str(self.total % (1 << HASH_BITS))


class _DecSum:
    """The exact sum of decimals SQLite stores as text; NULL when every value is NULL."""

    def __init__(self) -> None:
        self.total: decimal.Decimal | None = None

    def step(self, value: Any) -> None:
        if value is None:
            return
        try:
            number = decimal.Decimal(str(value))
        except decimal.InvalidOperation:
            return
        self.total = number if self.total is None else self.total + number

    def finalize(self) -> str | None:
        return None if self.total is None else str(self.total)


def register_functions(dbapi_conn: Any) -> None:
    """Register syncd_md5, syncd_key32, syncd_dectext, syncd_hashsum and syncd_decsum."""
    dbapi_conn.create_function("syncd_md5", 1, _md5, deterministic=True)
    dbapi_conn.create_function("syncd_key32", 1, _key32, deterministic=True)
    dbapi_conn.create_function("syncd_dectext", 2, _dectext, deterministic=True)
    dbapi_conn.create_aggregate("syncd_hashsum", 1, _HashSum)
    dbapi_conn.create_aggregate("syncd_decsum", 1, _DecSum)
