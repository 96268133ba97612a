"""The resident-ID check against python-stdnum's own rules: no false rejects, no false accepts.

syncd accepts a region code of any era of stdnum's table (stdnum's `validate` accepts it only
for births within the code's years). Otherwise the answers agree: the same length, format and
check digit rules, and a real date.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st
from stdnum import numdb
from stdnum.cn import ric

from syncd.core.checks import check_value
from syncd.core.policy import CheckKind

# Valid counties, counties that exist only for some years (110103 until 2010, 110111 from
# 1986, 330102 from 1983), a province without that county and an unknown province.
_REGIONS = ["110105", "330106", "360426", "110103", "110111", "330102", "339901", "999999"]


def _in_table(region: str) -> bool:
    parts = numdb.get("cn/loc").info(region)
    return len(parts) == 2 and "county" in parts[1][1]


@st.composite
def _numbers(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(_REGIONS))
    year = draw(st.sampled_from(["0000", "1949", "1950", "1985", "1986", "2010", "2011", "2024"]))
    month = draw(st.sampled_from(["01", "02", "12", "13", "00"]))
    day = draw(st.sampled_from(["01", "28", "29", "31", "32"]))
    body = f"{region}{year}{month}{day}{draw(st.integers(0, 999)):03d}"
    check = ric.calc_check_digit(body + "X")
    last = draw(st.sampled_from([check, check, "0", "X", "x"]))
    return f"{body}{last}"


def _real_past_date(digits: str) -> bool:
    try:
        born = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return dt.date(1850, 1, 1) <= born <= dt.date.today()


def _stdnum_accepts(value: str) -> bool:
    try:
        return ric.is_valid(value)
    except KeyError:  # python-stdnum 2.x: a known province with an unknown county
        return False


@given(_numbers())
def test_no_false_rejects_against_stdnum(value: str) -> None:
    # Whatever stdnum accepts (with a birth date in the past) syncd accepts, in upper case.
    if _stdnum_accepts(value) and _real_past_date(value[6:14]):
        assert check_value(CheckKind.CN_RIC, value) == (value.upper(), None)


@given(_numbers() | st.text(alphabet="0123456789X", min_size=18, max_size=18))
def test_every_accepted_number_keeps_stdnums_rules_but_the_era(value: str) -> None:
    canonical, reason = check_value(CheckKind.CN_RIC, value)
    number = value.upper()
    expected = (
        number[:17].isdigit()
        and number[-1] == ric.calc_check_digit(number)
        and _in_table(number[:6])
        and _real_past_date(number[6:14])
    )
    assert (canonical == number) is expected, reason
    assert (reason is None) is expected


@given(st.text(alphabet="0123456789X -", max_size=22))
def test_any_text_gets_an_answer_never_an_exception(value: str) -> None:
    canonical, reason = check_value(CheckKind.CN_RIC, value)
    assert (canonical is None) != (reason is None)
