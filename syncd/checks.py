"""Domain checks on field values, delegated to python-stdnum (no hand-written checksums)."""

from __future__ import annotations

import functools

from stdnum import exceptions as stdnum_exceptions
from stdnum.cn import ric, uscc
from stdnum.util import isdigits

from syncd.policy import CheckKind

_MODULES = {CheckKind.CN_RIC: ric, CheckKind.CN_USCC: uscc}
# How a stdnum function failed: the exception's type and arguments, to raise it anew.
_Failure = tuple[type[Exception], tuple[object, ...]]
_LABELS = {
    CheckKind.CN_RIC: "Chinese resident identity card number",
    CheckKind.CN_USCC: "unified social credit code",
}


def check_value(kind: CheckKind, value: object) -> str | None:
    """Return None when `value` passes, else a human-readable reason."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"not a valid {_LABELS[kind]}: expected text, got {type(value).__name__}"
    try:
        if kind is CheckKind.CN_RIC:
            _validate_ric(value)
        else:
            _MODULES[kind].validate(value)
    except stdnum_exceptions.ValidationError as exc:
        return f"not a valid {_LABELS[kind]} ({value!r}): {str(exc).rstrip('.').lower()}"
    except (KeyError, ValueError, IndexError):
        # python-stdnum 2.x raises KeyError for a known province with an unknown county code;
        # a bad number must be quarantined, never crash the apply.
        return f"not a valid {_LABELS[kind]} ({value!r}): unknown region code"
    return None


def _validate_ric(value: str) -> None:
    """`ric.validate`, step by step, with its answers on the birth date and place remembered.

    The place-of-birth lookup (a walk of stdnum's region database) costs more than the rest
    together and depends only on the region code and the birth year, which one city's
    customers share; the birth date depends only on its eight digits.
    """
    number = ric.compact(value)
    if len(number) != 18:
        raise stdnum_exceptions.InvalidLength
    if not isdigits(number[:-1]):
        raise stdnum_exceptions.InvalidFormat
    if number[-1] != ric.calc_check_digit(number):
        raise stdnum_exceptions.InvalidChecksum
    failure = _birth_date_failure(number[6:14]) or _birth_place_failure(number[:10])
    if failure is not None:
        raise failure[0](*failure[1])


@functools.lru_cache(maxsize=1 << 16)
def _birth_date_failure(digits: str) -> _Failure | None:
    """How `ric.get_birth_date` fails for numbers with these date digits, if it does."""
    try:
        ric.get_birth_date(f"000000{digits}0000")
    except (stdnum_exceptions.ValidationError, ValueError) as exc:
        return type(exc), exc.args
    return None


@functools.lru_cache(maxsize=1 << 14)
def _birth_place_failure(region_year: str) -> _Failure | None:
    """How `ric.get_birth_place` fails for numbers of this region and birth year, if it does."""
    # A number of the same region and year with a valid date and check digit: stdnum reads
    # nothing else of it for the place of birth.
    body = f"{region_year}0101001"
    try:
        ric.get_birth_place(body + ric.calc_check_digit(body + "X"))
    except (stdnum_exceptions.ValidationError, KeyError, ValueError, IndexError) as exc:
        return type(exc), exc.args
    return None
