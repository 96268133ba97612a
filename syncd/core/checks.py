"""Identity checks: normalise an identity number, then validate it by its real rule.

Pure. Check digits and the table of region codes come from python-stdnum, never a hand-written
copy. A check answers with the number's canonical form — the form the hub stores and matches
golden records on — or with a reason that names the rule it broke and never the number: a
reason goes into the append-only audit log, where a customer's ID number would stay forever.
Rules and sources: docs/policy.md, "Identity checks".
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable

from stdnum import exceptions as stdnum_exceptions
from stdnum import numdb
from stdnum.cn import ric, uscc

from syncd.core.policy import CheckKind

_LABELS = {
    CheckKind.CN_RIC: "Chinese resident identity card number",
    CheckKind.CN_USCC: "unified social credit code",
    CheckKind.CN_HMT_PERMIT: "residence permit number for Hong Kong, Macao and Taiwan residents",
    CheckKind.CN_FOREIGN_PERMANENT: "foreign permanent resident ID card number",
    CheckKind.PASSPORT: "passport number",
}
# U+FF01..U+FF5E are the full-width forms of ASCII "!".."~"; U+3000 is the ideographic space.
_FULL_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_SEPARATORS = re.compile(r"[\s\-]+")
_NORMAL = re.compile(r"[0-9A-Z]*\Z")
_EIGHTEEN = re.compile(r"[0-9]{17}[0-9X]\Z")
_FIFTEEN_DIGITS = re.compile(r"[0-9]{15}\Z")
_FOREIGN_2004 = re.compile(r"[A-Z]{3}[0-9]{12}\Z")
_PASSPORT = re.compile(r"[0-9A-Z]{5,20}\Z")
_HMT_REGIONS = frozenset({"810000", "820000", "830000"})
_EARLIEST_BIRTH = dt.date(1850, 1, 1)


class _Invalid(Exception):
    """A number breaks its rule; the argument says which rule, never the number."""


def normalise(value: str) -> str:
    """The form an identity number is matched in: full-width forms as ASCII, no spaces or
    hyphens anywhere, upper case (a lowercase check digit `x` is the same number)."""
    if _NORMAL.match(value):
        return value
    return _SEPARATORS.sub("", value.upper().translate(_FULL_WIDTH))


def check_value(kind: CheckKind, value: object) -> tuple[object, str | None]:
    """(canonical value, None) when `value` passes, else (None, a reason without the value)."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, f"not a valid {_LABELS[kind]}: expected text, got {type(value).__name__}"
    return _check_text(kind, value)


# One customer's number comes back from every city and with every edit: an identity is checked
# once per change of its number, and the bound keeps a long-running hub's memory flat.
@functools.lru_cache(maxsize=1 << 16)
def _check_text(kind: CheckKind, value: str) -> tuple[str | None, str | None]:
    number = normalise(value)
    try:
        if not number:
            raise _Invalid("empty")
        return _RULES[kind](number), None
    except _Invalid as exc:
        return None, f"not a valid {_LABELS[kind]}: {exc.args[0]}"


def _resident_id(number: str) -> str:
    """居民身份证 (GB 11643-1999): 18 digits, or a first-generation 15-digit number upgraded."""
    if len(number) == 15:
        number = _upgraded(number)
    _mod11_2(number)
    if not _region_known(number[:6]):
        raise _Invalid("unknown region code")
    _birth_date(number[6:14])
    return number


def _upgraded(number: str) -> str:
    """A first-generation number as GB 11643-1999 upgrades it: century 19, then a check digit."""
    if not _FIFTEEN_DIGITS.match(number):
        raise _Invalid("a 15-digit first-generation number holds digits only")
    body = f"{number[:6]}19{number[6:]}"
    # calc_check_digit reads a full number and ignores the check digit in place, hence the "0".
    return body + ric.calc_check_digit(body + "0")


def _hmt_permit(number: str) -> str:
    """港澳台居民居住证: a citizen number with region 810000, 820000 or 830000."""
    _mod11_2(number)
    if number[:6] not in _HMT_REGIONS:
        raise _Invalid("region code must be 810000, 820000 or 830000")
    _birth_date(number[6:14])
    return number


def _foreign_permanent(number: str) -> str:
    """外国人永久居留身份证: the 2023 18-digit form starting with 9, or the 15-character form."""
    if len(number) == 15:
        if not _FOREIGN_2004.match(number):
            raise _Invalid("the 15-character form is 3 letters and 12 digits")
        if not any(_is_date(f"{c}{number[7:13]}") for c in ("19", "20")):
            raise _Invalid("no such birth date")
        return number
    _mod11_2(number)
    if number[0] != "9":
        raise _Invalid("the 18-digit form starts with 9")
    if not _region_known(f"{number[1:3]}0000"):
        raise _Invalid("unknown province code")
    _birth_date(number[6:14])
    return number


def _uscc(number: str) -> str:
    try:
        return str(uscc.validate(number))
    except stdnum_exceptions.InvalidLength:
        raise _Invalid("wrong length") from None
    except stdnum_exceptions.InvalidChecksum:
        raise _Invalid("wrong check character") from None
    except stdnum_exceptions.ValidationError:
        raise _Invalid("wrong format") from None


def _passport(number: str) -> str:
    if not _PASSPORT.match(number):
        raise _Invalid("5 to 20 letters and digits")
    return number


_RULES: dict[CheckKind, Callable[[str], str]] = {
    CheckKind.CN_RIC: _resident_id,
    CheckKind.CN_USCC: _uscc,
    CheckKind.CN_HMT_PERMIT: _hmt_permit,
    CheckKind.CN_FOREIGN_PERMANENT: _foreign_permanent,
    CheckKind.PASSPORT: _passport,
}


def _mod11_2(number: str) -> None:
    """18 characters: 17 digits and an ISO 7064 MOD 11-2 check digit, computed by stdnum."""
    if len(number) != 18:
        raise _Invalid("wrong length")
    if not _EIGHTEEN.match(number):
        raise _Invalid("wrong format: 17 digits and a check digit")
    if number[-1] != ric.calc_check_digit(number):
        raise _Invalid("wrong check digit")


def _is_date(digits: str) -> bool:
    try:
        dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return True


def _birth_date(digits: str) -> None:
    """A real, past birth date (YYYYMMDD)."""
    if not _is_date(digits):
        raise _Invalid("no such birth date")
    born = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    if born > dt.date.today():
        raise _Invalid("birth date in the future")
    if born < _EARLIEST_BIRTH:
        raise _Invalid("birth date before 1850")


@functools.lru_cache(maxsize=1 << 14)
def _region_known(code: str) -> bool:
    """Whether stdnum's table lists this region code in any era.

    A number keeps the region code in force when it was first issued, so a customer born
    before the district got today's code holds a number stdnum's own `get_birth_place` rejects
    (it compares the code's years with the birth year; python-stdnum issue 442). The code
    existing at all, in any era of the table, is the rule here.
    """
    parts = numdb.get("cn/loc").info(code)
    return len(parts) == 2 and "province" in parts[0][1] and "county" in parts[1][1]
