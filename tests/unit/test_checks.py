"""Field checks delegate to python-stdnum and always answer with a reason, never raise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.checks import check_value
from syncd.policy import CheckKind


def test_valid_numbers_pass() -> None:
    assert check_value(CheckKind.CN_RIC, "11010519491231002X") is None
    assert check_value(CheckKind.CN_USCC, "91110000600037341L") is None
    assert check_value(CheckKind.CN_RIC, None) is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("11010519491231002Y", "check digit"),
        ("1101051949123100", "length"),
        ("339901198001010013", "unknown region code"),  # stdnum raises KeyError here
        (12345, "expected text"),
    ],
)
def test_invalid_numbers_give_reasons(value: object, words: str) -> None:
    reason = check_value(CheckKind.CN_RIC, value)
    assert reason is not None
    assert words in reason


@given(st.text(max_size=20))
def test_never_raises(value: str) -> None:
    for kind in CheckKind:
        reason = check_value(kind, value)
        assert reason is None or "not a valid" in reason
