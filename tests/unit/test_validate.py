"""Row validation never raises, bounds every value by what the databases store, and gives
reasons that name the column and the rule, never the value."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from syncd.core import validate
from syncd.core.batch import UNSENDABLE, UPSERT, Unsendable, unsendable
from syncd.core.policy import Table, load_policy, parse_policy
from syncd.core.validate import Change, classify, decode_value, validate_key, validate_row

CRM = load_policy(Path(__file__).resolve().parents[2] / "schemas" / "crm.yaml")
CUSTOMERS = CRM.table("customers")

POLICY = parse_policy(
    {
        "tables": {
            "every": {
                "class": "public",
                "primary_key": ["k"],
                "columns": {
                    "k": {"type": "string", "length": 32, "nullable": False},
                    "s": {"type": "string", "length": 16},
                    "c": {"type": "string", "length": 8, "choices": ["a", "b"]},
                    "t": {"type": "text"},
                    "i": {"type": "integer"},
                    "small": {"type": "integer", "min": 1, "max": 5},
                    "d": {"type": "decimal", "precision": 18, "scale": 2},
                    "wide": {"type": "decimal", "precision": 38, "scale": 10},
                    "b": {"type": "boolean"},
                    "day": {"type": "date"},
                    "ts": {"type": "timestamp"},
                    "tags": {"type": "list"},
                    "status": {"type": "string", "length": 8},
                },
                "filter": [{"column": "status", "op": "ne", "value": "prospect"}],
            }
        }
    },
    "test.yaml",
)
EVERY = POLICY.table("every")
DATA_COLUMNS = [c for c in EVERY.columns if c != "k"]


def row(**values: Any) -> dict[str, Any]:
    return {"k": "r1", "status": "active", **values}


def reason_of(table: Table, data: dict[str, Any]) -> str:
    values, reason = validate_row(table, data)
    assert values is None
    assert reason is not None
    return reason


# -- bounds from the column types -------------------------------------------------------------


def test_integers_are_bounded_to_64_bits() -> None:
    assert validate_row(EVERY, row(i=2**63 - 1))[0] == row(i=2**63 - 1) | _nulls("i")
    assert validate_row(EVERY, row(i=-(2**63)))[0] is not None
    assert reason_of(EVERY, row(i=2**63)).startswith("i: input should be less than or equal to")
    assert reason_of(EVERY, row(i=-(2**63) - 1)).startswith("i: input should be greater")
    # The policy's own bounds still narrow the range.
    assert reason_of(EVERY, row(small=2**64)) == "small: input should be less than or equal to 5"


def _nulls(*given: str) -> dict[str, Any]:
    return {c: None for c in DATA_COLUMNS if c not in (*given, "status")}


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-01T00:00:00+08:00", "9999-12-31T23:00:00-08:00", "0001-01-01T07:59:59+08:00"],
)
def test_timestamp_whose_utc_overflows_is_a_reason(stamp: str) -> None:
    assert reason_of(EVERY, row(ts=stamp)) == "ts: in UTC, outside the years 1 to 9999"


def test_timestamps_at_the_edges_that_fit_are_kept() -> None:
    values, _ = validate_row(EVERY, row(ts="0001-01-01T08:00:00+08:00", day="9999-12-31"))
    assert values is not None
    assert values["ts"] == dt.datetime(1, 1, 1)
    assert values["day"] == dt.date(9999, 12, 31)


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("d", decimal.Decimal("1.001"), "more than 2 decimal places"),
        ("d", decimal.Decimal("1e-999999999"), "more than 2 decimal places"),
        ("d", decimal.Decimal("1e999999999"), "more than 16 digits before the decimal point"),
        ("d", decimal.Decimal("NaN"), "finite number"),
        ("d", decimal.Decimal("-Infinity"), "finite number"),
        ("d", "1e99999999999999999999", "valid decimal"),
        ("wide", decimal.Decimal("1" * 29), "more than 28 digits before the decimal point"),
    ],
)
def test_decimal_problems_are_reasons(column: str, value: Any, words: str) -> None:
    reason = reason_of(EVERY, row(**{column: value}))
    assert reason.startswith(f"{column}: ")
    assert words in reason


def test_wide_decimals_beyond_28_digits_are_exact() -> None:
    # The default decimal context rounds to 28 digits; NUMERIC(38, 10) holds 38.
    text = "1234567890123456789012345678.0123456789"
    values, _ = validate_row(EVERY, row(wide=decimal.Decimal(text)))
    assert values is not None
    assert str(values["wide"]) == text


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("s", "a\x00b", "NUL character"),
        ("t", "a\x00b", "NUL character"),
        ("k", "r\x00", "NUL character"),
        ("tags", ["ok", "a\x00b"], "NUL character"),
        ("s", "a\ud800b", "lone surrogate"),
        ("t", "a\udfffb", "lone surrogate"),
        ("tags", ["\ud83d"], "lone surrogate"),
    ],
)
def test_text_the_database_cannot_store_is_a_reason(column: str, value: Any, words: str) -> None:
    reason = reason_of(EVERY, row(**{column: value}))
    assert reason.startswith(column)
    assert words in reason
    assert "\x00" not in reason
    reason.encode("utf-8")  # a reason itself is always storable


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (Unsendable.BLOB, "binary data"),
        (Unsendable.INVALID_UTF8, "text that is not UTF-8"),
        (Unsendable.NUL, "a NUL character"),
    ],
)
@pytest.mark.parametrize("column", ["k", *DATA_COLUMNS])
def test_the_stand_in_for_an_unsendable_value_is_named(
    column: str, kind: Unsendable, words: str
) -> None:
    data = row(**{column: unsendable(kind)})
    assert reason_of(EVERY, data) == f"{column}: the city could not send this value ({words})"
    # Through classify too: in the filter column it is quarantined, not refused as filtered.
    verdict = classify(POLICY, _change(data))
    assert verdict.refused is None
    assert verdict.invalid == f"{column}: the city could not send this value ({words})"


def _change(data: Any, key: Any = None, table: str = "every", op: str = UPSERT) -> Change:
    key = {"k": "r1"} if key is None else key
    return Change(1, table, op, key, data, key, data)


# -- identity: normalised before matching ------------------------------------------------------


def _customer(**values: Any) -> dict[str, Any]:
    base = {
        "customer_id": "c1",
        "customer_type": "individual",
        "name": "张三",
        "id_type": "ric",
        "id_number": "11010519491231002X",
        "status": "active",
        "created_at": "2020-01-01T00:00:00",
        "updated_at": "2020-01-01T00:00:00",
    }
    return base | values


@pytest.mark.parametrize(
    ("id_type", "sent", "stored"),
    [
        ("ric", " 11010519491231002x", "11010519491231002X"),
        ("ric", "１１０１０５１９４９１２３１００２ｘ", "11010519491231002X"),
        ("ric", "110105491231002", "11010519491231002X"),  # first generation, upgraded
        ("passport", "e 1234 5678", "E12345678"),
        ("uscc", "91110000600037341l", "91110000600037341L"),
    ],
)
def test_the_stored_identity_is_the_canonical_number(id_type: str, sent: str, stored: str) -> None:
    values, reason = validate_row(CUSTOMERS, _customer(id_type=id_type, id_number=sent))
    assert reason is None
    assert values is not None
    assert values["id_number"] == stored


def test_an_empty_passport_number_is_rejected() -> None:
    # It once merged an individual of one city and a company of another into one golden record.
    for blank in ("", "  ", "\u3000"):
        reason = reason_of(CUSTOMERS, _customer(id_type="passport", id_number=blank))
        assert reason == "id_number: not a valid passport number: empty"


def test_a_resident_of_a_district_renamed_after_birth_is_accepted() -> None:
    number = "33010219500101123" + ric.calc_check_digit("33010219500101123X")
    values, reason = validate_row(CUSTOMERS, _customer(id_number=number))
    assert reason is None
    assert values is not None


def test_every_id_type_has_a_check() -> None:
    id_types = CUSTOMERS.columns["id_type"].choices
    assert id_types is not None
    assert {"ric", "uscc", "passport"} <= set(id_types)
    checked = {c.when.value for c in CUSTOMERS.checks if c.when is not None}
    assert checked == set(id_types)


def test_an_id_number_is_not_in_its_reason() -> None:
    bad = "11010519491231002" + ("1" if ric.calc_check_digit("11010519491231002X") != "1" else "2")
    reason = reason_of(CUSTOMERS, _customer(id_number=bad))
    assert reason == (
        "id_number: not a valid Chinese resident identity card number: wrong check digit"
    )


# -- never raises, never the value ---------------------------------------------------------------

_MARK = "QZMARK"  # never in a reason: every value below carries it, no rule or name does
# The values that once escaped as exceptions or reached the database: each is tried in every
# column (as a hypothesis example), whatever the random search finds besides.
EDGES: list[Any] = [
    2**63,
    -(2**63) - 1,
    10**40,
    float("nan"),
    float("inf"),
    -1e308,
    decimal.Decimal("NaN"),
    decimal.Decimal("1e999999999"),
    decimal.Decimal("-1.5e9999999"),  # int() of it took seconds: the hub stalled
    decimal.Decimal("-1e-999999999"),
    decimal.Decimal("1" * 45),
    "0001-01-01T00:00:00+08:00",
    "9999-12-31T23:59:59-08:00",
    "0001-01-01",
    "9999-12-31",
    "1e999999999",
    "9" * 5000,
    f"{_MARK}\x00",
    f"{_MARK}\ud800",
    [f"{_MARK}\x00"],
    [f"{_MARK}\udc00", 1],
    {"nested": {"deeper": [f"{_MARK}"]}},
    *(unsendable(kind) for kind in Unsendable),
    {UNSENDABLE: f"{_MARK}-unknown-kind"},
]
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12).map(lambda t: _MARK + t)
    | st.sampled_from(EDGES)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        # Keys are names (a row's keys are column names, which a reason may quote, escaped).
        | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _with_edges(test: Any) -> Any:
    for value in EDGES:
        test = example(value)(test)
    return test


def _assert_no_value(reason: str) -> None:
    assert _MARK not in reason
    assert "\x00" not in reason
    reason.encode("utf-8")


@pytest.mark.parametrize("column", list(EVERY.columns))
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(value=_VALUES)
@_with_edges
def test_any_value_in_any_column_is_typed_or_a_reason(column: str, value: Any) -> None:
    _typed_or_reason(row(**{column: value}))
    # As a key (row_key), and as stored JSON decoded again, too.
    key, reason = validate_key(EVERY, {column: value})
    assert (key is None) != (reason is None)
    if reason is not None:
        _assert_no_value(reason)
    _, reason = decode_value(EVERY, column, value)
    if reason is not None:
        _assert_no_value(reason)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(DATA_COLUMNS), _VALUES, max_size=6))
def test_any_row_is_typed_or_a_reason(data: dict[str, Any]) -> None:
    _typed_or_reason(row(**data))


def _typed_or_reason(data: dict[str, Any]) -> None:
    values, reason = validate_row(EVERY, data)
    assert (values is None) != (reason is None)
    if reason is not None:
        _assert_no_value(reason)
        assert reason.split(":")[0].split(".")[0] in EVERY.columns
    else:
        assert values is not None
        for name, value in values.items():
            _assert_storable(name, value)


def _assert_storable(name: str, value: Any) -> None:
    if isinstance(value, str):
        assert "\x00" not in value
        value.encode("utf-8")
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        assert -(2**63) <= value < 2**63, name
    elif isinstance(value, float):
        assert math.isfinite(value), name
    elif isinstance(value, decimal.Decimal):
        assert value.is_finite(), name
    elif isinstance(value, list):
        for v in value:
            _assert_storable(name, v)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    # Table names and ops are names, which a reason may quote (escaped); values never.
    st.sampled_from(["every", "customers", "nope", "tab\x00le", "t\ud800"]),
    st.sampled_from([UPSERT, "delete", "merge\x00"]),
    _VALUES,
    _VALUES,
)
def test_classify_gives_a_verdict_for_anything(table: str, op: str, key: Any, data: Any) -> None:
    policy = POLICY.model_copy(update={"tables": {**POLICY.tables, "customers": CUSTOMERS}})
    verdict = classify(policy, _change(data, key=key, table=table, op=op))
    reason = verdict.refused or verdict.invalid
    if reason is not None:
        _assert_no_value(reason)
    else:
        assert verdict.values is not None or op == "delete"


def test_an_unexpected_error_is_that_rows_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(table: Table, change: Change) -> Any:
        raise RuntimeError(f"{_MARK} a message that could hold the value")

    monkeypatch.setattr(validate, "_typed", broken)
    verdict = classify(POLICY, _change(row(s="x")))
    assert verdict.invalid == "could not validate the row (RuntimeError)"
    monkeypatch.setattr(validate, "_sovereignty", broken)
    verdict = classify(POLICY, _change(row(s="x")))
    assert verdict.refused == "could not check the row (RuntimeError)"


def test_undeclared_column_names_are_escaped_in_the_reason() -> None:
    verdict = classify(POLICY, _change(row(**{"bad\x00name": 1, "x\ud800": 2})))
    assert verdict.refused is not None
    _assert_no_value(verdict.refused)
    assert "'bad\\x00name'" in verdict.refused


def test_key_values_are_bounded_too() -> None:
    assert validate_key(EVERY, {"k": "a\x00"})[1] == (
        "k: holds a NUL character, which the database cannot store"
    )
    assert json.dumps(validate_key(EVERY, {"k": unsendable(Unsendable.BLOB)})[1]) == json.dumps(
        "k: the city could not send this value (binary data)"
    )
