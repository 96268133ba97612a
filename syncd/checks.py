"""Domain checks on field values, delegated to python-stdnum (no hand-written checksums)."""

from __future__ import annotations

from stdnum import exceptions as stdnum_exceptions
from stdnum.cn import ric, uscc

from syncd.policy import CheckKind

_MODULES = {CheckKind.CN_RIC: ric, CheckKind.CN_USCC: uscc}
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
        _MODULES[kind].validate(value)
    except stdnum_exceptions.ValidationError as exc:
        return f"not a valid {_LABELS[kind]} ({value!r}): {str(exc).rstrip('.').lower()}"
    except (KeyError, ValueError, IndexError):
        # python-stdnum 2.x raises KeyError for a known province with an unknown county code;
        # a bad number must be quarantined, never crash the apply.
        return f"not a valid {_LABELS[kind]} ({value!r}): unknown region code"
    return None
