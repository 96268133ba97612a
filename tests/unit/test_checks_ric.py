"""The resident-ID check answers exactly as python-stdnum's own `ric.validate` does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from stdnum import exceptions as stdnum_exceptions
from stdnum.cn import ric

from syncd.checks import check_value
from syncd.policy import CheckKind

_LABEL = "Chinese resident identity card number"
# Valid counties, counties that exist only for some years (110103 until 2010, 110111 from
# 1986), a province without that county (KeyError in stdnum 2.x) and an unknown province.
_REGIONS = ["110105", "330106", "360426", "110103", "110111", "110112", "339901", "999999"]


def _reference(value: str) -> str | None:
    try:
        ric.validate(value)
    except stdnum_exceptions.ValidationError as exc:
        return f"not a valid {_LABEL} ({value!r}): {str(exc).rstrip('.').lower()}"
    except (KeyError, ValueError, IndexError):
        return f"not a valid {_LABEL} ({value!r}): unknown region code"
    return None


@st.composite
def _numbers(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(_REGIONS))
    year = draw(st.sampled_from(["0000", "1949", "1985", "1986", "1996", "2010", "2011", "2024"]))
    month = draw(st.sampled_from(["01", "02", "12", "13", "00"]))
    day = draw(st.sampled_from(["01", "28", "29", "31", "32"]))
    body = f"{region}{year}{month}{day}{draw(st.integers(0, 999)):03d}"
    check = ric.calc_check_digit(body + "X")
    last = draw(st.sampled_from([check, check, "0", "X", "x"]))
    sep = draw(st.sampled_from(["", "", "", " ", "-"]))
    return f"{body[:6]}{sep}{body[6:]}{last}"


@given(_numbers())
def test_ric_answers_as_stdnum_validate(value: str) -> None:
    assert check_value(CheckKind.CN_RIC, value) == _reference(value)
    # A second time: the remembered place-of-birth answer gives the same result.
    assert check_value(CheckKind.CN_RIC, value) == _reference(value)


@given(st.text(alphabet="0123456789X -", max_size=22))
def test_ric_answers_as_stdnum_validate_on_any_text(value: str) -> None:
    assert check_value(CheckKind.CN_RIC, value) == _reference(value)
