"""Identity checks: each id type by its real rule, one canonical form per number, no value in
a reason, never an exception."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import ric

from syncd.core import checks
from syncd.core.checks import check_value, normalise
from syncd.core.policy import CheckKind


def mod11_2(body: str) -> str:
    """A 17-digit body with its check digit, as python-stdnum computes it."""
    return body + ric.calc_check_digit(body + "0")


RIC = "11010519491231002X"
USCC = "91110000600037341L"
HK = mod11_2("81000019900101001")
MO = mod11_2("82000019851231002")
TW = mod11_2("83000019700615003")
FOREIGN_2023 = mod11_2("93115619800101001")  # applied in Beijing (11), nationality 156
FOREIGN_2004 = "USA110080010101"  # 3 letters, 4 digits, born (19)80-01-01, 2 digits

VALID = [
    (CheckKind.CN_RIC, RIC),
    (CheckKind.CN_USCC, USCC),
    (CheckKind.CN_HMT_PERMIT, HK),
    (CheckKind.CN_HMT_PERMIT, MO),
    (CheckKind.CN_HMT_PERMIT, TW),
    (CheckKind.CN_FOREIGN_PERMANENT, FOREIGN_2023),
    (CheckKind.CN_FOREIGN_PERMANENT, FOREIGN_2004),
    (CheckKind.PASSPORT, "E12345678"),
    (CheckKind.PASSPORT, "X1234567"),
]


@pytest.mark.parametrize(("kind", "number"), VALID)
def test_valid_numbers_pass_as_they_are(kind: CheckKind, number: str) -> None:
    assert check_value(kind, number) == (number, None)


def test_null_passes_untouched() -> None:
    for kind in CheckKind:
        assert check_value(kind, None) == (None, None)


def _wrong_check_digit(number: str) -> str:
    digits = "0123456789X"
    return number[:-1] + digits[(digits.index(number[-1]) + 1) % 11]


@pytest.mark.parametrize(
    ("kind", "number", "words"),
    [
        (CheckKind.CN_RIC, "11010519491231002Y", "wrong format"),
        (CheckKind.CN_RIC, _wrong_check_digit(RIC), "wrong check digit"),
        (CheckKind.CN_RIC, "1101051949123100", "wrong length"),
        (CheckKind.CN_RIC, "11010549123100A", "15-digit"),
        (CheckKind.CN_RIC, mod11_2("33990119800101001"), "unknown region code"),
        (CheckKind.CN_RIC, mod11_2("11010519800230001"), "no such birth date"),
        (CheckKind.CN_USCC, "91110000600037341A", "wrong check character"),
        (CheckKind.CN_USCC, "9111000060003734", "wrong length"),
        (CheckKind.CN_HMT_PERMIT, mod11_2("11010519900101001"), "810000, 820000 or 830000"),
        (CheckKind.CN_HMT_PERMIT, _wrong_check_digit(HK), "wrong check digit"),
        (CheckKind.CN_HMT_PERMIT, mod11_2("81000019901301001"), "no such birth date"),
        (CheckKind.CN_FOREIGN_PERMANENT, mod11_2("13115619800101001"), "starts with 9"),
        (CheckKind.CN_FOREIGN_PERMANENT, _wrong_check_digit(FOREIGN_2023), "check digit"),
        (CheckKind.CN_FOREIGN_PERMANENT, mod11_2("99915619800101001"), "province code"),
        (CheckKind.CN_FOREIGN_PERMANENT, "US1110080010101", "3 letters and 12 digits"),
        (CheckKind.CN_FOREIGN_PERMANENT, "USA110080023001", "no such birth date"),
        (CheckKind.PASSPORT, "E12", "5 to 20 letters and digits"),
        (CheckKind.PASSPORT, "E1234/678", "5 to 20 letters and digits"),
    ],
)
def test_invalid_numbers_give_reasons_without_the_number(
    kind: CheckKind, number: str, words: str
) -> None:
    value, reason = check_value(kind, number)
    assert value is None
    assert reason is not None
    assert words in reason
    assert number not in reason


@pytest.mark.parametrize("kind", list(CheckKind))
@pytest.mark.parametrize("blank", ["", " ", "\u3000", " - ", "\t\n"])
def test_empty_numbers_are_rejected(kind: CheckKind, blank: str) -> None:
    # An empty passport number once merged an individual and a company of two cities.
    assert check_value(kind, blank) == (None, f"not a valid {checks._LABELS[kind]}: empty")


def test_non_text_is_a_reason() -> None:
    value, reason = check_value(CheckKind.CN_RIC, 110105194912310020)
    assert value is None
    assert reason is not None
    assert "expected text, got int" in reason
    assert "110105" not in reason


def test_first_generation_number_is_upgraded_to_eighteen_digits() -> None:
    # GB 11643-1999: century 19 inserted, check digit appended. The 15-digit number of legacy
    # core-banking data and the second-generation card of the same person are one identity.
    assert check_value(CheckKind.CN_RIC, "110105491231002") == (RIC, None)


def test_region_code_of_any_era_is_accepted() -> None:
    # 330102 (Hangzhou 上城区) is "from 1983" in stdnum's table; its holders born before 1983
    # carry it all the same. stdnum's own validate rejects them: the false reject of issue 10.
    number = mod11_2("33010219500101123")
    assert not ric.is_valid(number)
    assert check_value(CheckKind.CN_RIC, number) == (number, None)
    # A code that the table lists only until 2010 (崇文区), for someone born after that.
    later = mod11_2("11010320150101001")
    assert not ric.is_valid(later)
    assert check_value(CheckKind.CN_RIC, later) == (later, None)


def test_future_birth_date_is_rejected() -> None:
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    number = mod11_2(f"110105{tomorrow:%Y%m%d}001")
    assert check_value(CheckKind.CN_RIC, number)[1] == (
        "not a valid Chinese resident identity card number: birth date in the future"
    )


@pytest.mark.parametrize(("kind", "number"), VALID)
def test_variants_of_one_number_have_one_canonical_form(kind: CheckKind, number: str) -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in number)
    variants = [
        number.lower(),
        f" {number} ",
        f"\u3000{number}\t",
        full_width,
        full_width.lower(),
        f"{number[:6]} {number[6:]}",
        f"{number[:6]}-{number[6:]}",
    ]
    for variant in variants:
        assert check_value(kind, variant) == (number, None), variant


_ID_TEXT = st.text(
    alphabet=st.sampled_from("0123456789Xx AZaz-\u3000\uff10\uff19\uff38\uff58\uff0d\t"),
    max_size=24,
)


@given(st.text(max_size=30) | _ID_TEXT)
def test_normalise_is_idempotent(value: str) -> None:
    once = normalise(value)
    assert normalise(once) == once


@given(st.sampled_from(list(CheckKind)), st.text(max_size=30) | _ID_TEXT)
def test_never_raises_and_canonical_form_is_a_fixed_point(kind: CheckKind, value: str) -> None:
    canonical, reason = check_value(kind, value)
    assert (canonical is None) != (reason is None)
    if canonical is not None:
        assert check_value(kind, canonical) == (canonical, None)
    else:
        assert reason is not None
        assert reason.startswith("not a valid ")
        if len(value.strip()) >= 6:
            assert value.strip() not in reason


def test_an_identity_is_checked_once_per_number(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    rule = checks._RULES[CheckKind.PASSPORT]

    def counting(number: str) -> str:
        calls.append(number)
        return rule(number)

    monkeypatch.setitem(checks._RULES, CheckKind.PASSPORT, counting)
    checks._check_text.cache_clear()
    for _ in range(3):
        assert check_value(CheckKind.PASSPORT, "G10000001") == ("G10000001", None)
    assert check_value(CheckKind.PASSPORT, "G10000002") == ("G10000002", None)
    assert calls == ["G10000001", "G10000002"]
    checks._check_text.cache_clear()
