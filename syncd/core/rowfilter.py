"""Row filters: which rows of a public table may leave the city, and what an update means.

Semantics follow SQL and PostgreSQL publication row filters: a comparison with NULL is
unknown, and an unknown filter does not publish the row. For an UPDATE, the old and the new
row are both evaluated: old in / new in = update, old out / new in = insert (the row enters),
old in / new out = delete (the row leaves), both out = nothing leaves the city.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from syncd.core.policy import Condition, FilterOp


class Transition(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"
    NONE = "none"


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    """Bring a stored value and a policy constant to one type, as SQL's implicit cast would."""
    if type(a) is str and type(b) is str:  # the usual case (a status, a code): as they are
        return a, b
    if isinstance(a, bool) or isinstance(b, bool):
        return a, b
    if isinstance(a, int | float | decimal.Decimal) and isinstance(
        b, int | float | decimal.Decimal
    ):
        return decimal.Decimal(str(a)), decimal.Decimal(str(b))
    if isinstance(a, dt.datetime | dt.date) and isinstance(b, str):
        return a.isoformat(), b
    if isinstance(a, str) and isinstance(b, int | float) and not isinstance(b, bool):
        try:
            return decimal.Decimal(a), decimal.Decimal(str(b))
        except decimal.InvalidOperation:
            return a, str(b)
    return a, b


def evaluate_condition(cond: Condition, row: Mapping[str, Any]) -> bool | None:
    """Three-valued: True, False, or None for SQL's unknown."""
    value = row.get(cond.column)
    op = cond.op
    if op is FilterOp.IS_NULL:
        return value is None
    if op is FilterOp.NOT_NULL:
        return value is not None
    if value is None:
        return None
    if op in (FilterOp.IN, FilterOp.NOT_IN):
        assert cond.values is not None
        found = False
        for candidate in cond.values:
            a, b = _comparable(value, candidate)
            if a == b:
                found = True
                break
        return found if op is FilterOp.IN else not found
    return _compare(op, *_comparable(value, cond.value))


_ORDERINGS = {
    FilterOp.EQ: lambda a, b: a == b,
    FilterOp.NE: lambda a, b: a != b,
    FilterOp.LT: lambda a, b: a < b,
    FilterOp.LE: lambda a, b: a <= b,
    FilterOp.GT: lambda a, b: a > b,
    FilterOp.GE: lambda a, b: a >= b,
}


def _compare(op: FilterOp, a: Any, b: Any) -> bool | None:
    try:
        return bool(_ORDERINGS[op](a, b))
    except TypeError:
        return None  # incomparable types: unknown, as SQL would fail to publish


def passes(conditions: Sequence[Condition], row: Mapping[str, Any]) -> bool:
    """Whether the row is published: every condition must be True (unknown is not)."""
    result: bool | None = True
    for cond in conditions:
        r = evaluate_condition(cond, row)
        if r is False:
            return False
        if r is None:
            result = None
    return result is True


def transition(
    conditions: Sequence[Condition],
    op: str,
    new: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
) -> Transition:
    """What a captured change means at the hub once the row filter is applied.

    `op` is the captured operation, I, U or D. For U, `old` holds the old values of the filter
    columns (None when the capture stored none: the filter columns did not change).
    """
    if op == "D":
        return Transition.DELETE if old is not None and passes(conditions, old) else Transition.NONE
    assert new is not None
    new_in = passes(conditions, new)
    if op == "I" or not conditions:
        return Transition.UPSERT if new_in else Transition.NONE
    old_in = passes(conditions, {**new, **old}) if old is not None else new_in
    if new_in:
        return Transition.UPSERT
    return Transition.DELETE if old_in else Transition.NONE
