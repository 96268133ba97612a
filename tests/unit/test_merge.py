"""The golden-record merge: one test per rule, its ties and its None handling."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncd.core.merge import (
    FieldDecision,
    MergeResult,
    Resolution,
    Source,
    encode_value,
    home_column,
    merge_golden,
    priority_order,
    same_candidates,
    values_equal,
)
from syncd.core.policy import MergeRule, Table, load_policy, parse_policy

POLICY = Path(__file__).resolve().parents[2] / "schemas" / "crm.yaml"

T0 = dt.datetime(2025, 3, 1, 8, 0, 0)
T1 = T0 + dt.timedelta(hours=1)
T2 = T0 + dt.timedelta(hours=2)

COLUMNS: dict[str, dict[str, Any]] = {
    "pid": {"type": "string", "nullable": False},
    "idno": {"type": "string", "nullable": False},
    "home": {"type": "string"},
    "label": {"type": "string"},
    "tags": {"type": "list"},
    "count": {"type": "integer"},
    "amount": {"type": "decimal"},
    "day": {"type": "date"},
    "seen_at": {"type": "timestamp"},
    "updated_at": {"type": "timestamp"},
}


def table(fields: dict[str, Any] | None = None, default: str = "latest") -> Table:
    """A small identity table with every column type and the given merge rules."""
    doc = {
        "tables": {
            "people": {
                "class": "public",
                "primary_key": ["pid"],
                "identity": ["idno"],
                "updated_at": "updated_at",
                "columns": COLUMNS,
                "merge": {"default": default, "fields": fields or {}},
            }
        }
    }
    return parse_policy(doc, "test.yaml").table("people")


def src(
    node: str,
    at: dt.datetime | None = None,
    *,
    city: str | None = None,
    seq: int = 1,
    **row: Any,
) -> Source:
    """A source of node `city-XXXX`; the city defaults to the node id's suffix."""
    full = {"pid": f"p-{node}", "idno": "X1", "updated_at": at, **row}
    return Source(f"city-{node}", city if city is not None else node, seq, at, full)


def decision(result: MergeResult, column: str) -> FieldDecision:
    (found,) = [d for d in result.decisions if d.column == column]
    return found


# --- latest ---------------------------------------------------------------------------------


def test_latest_takes_the_most_recently_updated_source() -> None:
    result = merge_golden(table(), [src("3301", T2, label="new"), src("3302", T1, label="old")])
    d = decision(result, "label")
    assert (d.value, d.winner, d.rule) == ("new", "city-3301", MergeRule.LATEST)
    assert d.disputed
    assert d.candidates == {"city-3301": "new", "city-3302": "old"}
    assert result.conflicts == ()


def test_latest_skips_sources_without_a_value() -> None:
    result = merge_golden(table(), [src("3301", T2, label=None), src("3302", T1, label="old")])
    d = decision(result, "label")
    assert (d.value, d.winner, d.disputed) == ("old", "city-3302", False)


def test_latest_tie_goes_to_the_greater_node_id() -> None:
    sources = [src("3302", T1, label="b"), src("3301", T1, label="a")]
    assert decision(merge_golden(table(), sources), "label").winner == "city-3302"
    assert decision(merge_golden(table(), sources[::-1]), "label").winner == "city-3302"


def test_latest_missing_updated_at_is_oldest() -> None:
    result = merge_golden(table(), [src("3309", None, label="x"), src("3301", T0, label="y")])
    assert decision(result, "label").value == "y"
    result = merge_golden(table(), [src("3309", None, label="x"), src("3301", None, label="y")])
    assert decision(result, "label").value == "x"


def test_latest_all_none_is_none() -> None:
    result = merge_golden(table(), [src("3301", T1), src("3302", T2, label=None)])
    d = decision(result, "label")
    assert (d.value, d.winner, d.disputed) == (None, None, False)


# --- priority -------------------------------------------------------------------------------


HOME_FIRST = {"label": {"rule": "priority", "prefer_home": "home"}}


def test_priority_prefers_the_home_city_over_a_newer_edit() -> None:
    sources = [
        src("3301", T0, home="3301", label="home"),
        src("3302", T2, home="3301", label="away"),
    ]
    d = decision(merge_golden(table(HOME_FIRST), sources), "label")
    assert (d.value, d.winner, d.rule) == ("home", "city-3301", MergeRule.PRIORITY)


def test_priority_falls_through_when_home_has_no_value() -> None:
    sources = [
        src("3301", T0, home="3301", label=None),
        src("3302", T1, home="3301", label="b"),
        src("3303", T2, home="3301", label="c"),
    ]
    assert decision(merge_golden(table(HOME_FIRST), sources), "label").value == "c"


def test_priority_home_needs_a_home_value_and_a_node_city() -> None:
    sources = [
        Source("city-a", None, 1, T0, {"home": "None", "label": "no city"}),
        src("3302", T0, home=None, label="no home"),
        src("3303", T0, home="3399", label="elsewhere"),
    ]
    # Nobody is home, all equally recent: the smaller node id wins.
    d = decision(merge_golden(table(HOME_FIRST), sources), "label")
    assert d.winner == "city-3302"


def test_priority_home_compares_as_text() -> None:
    sources = [
        src("3301", T0, home=None, label="a"),
        Source("city-3302", "3302", 1, T0, {"home": 3302, "label": "b"}),
    ]
    assert decision(merge_golden(table(HOME_FIRST), sources), "label").winner == "city-3302"


def test_priority_order_then_recency_then_node_id() -> None:
    fields = {"label": {"rule": "priority", "order": ["city-3305", "city-3303"]}}
    base = [
        src("3301", T1, label="1"),
        src("3302", T2, label="2"),
        src("3303", T0, label="3"),
        src("3304", T2, label="4"),
        src("3305", None, label="5"),
    ]
    assert decision(merge_golden(table(fields), base), "label").value == "5"
    assert decision(merge_golden(table(fields), base[:4]), "label").value == "3"
    # Unlisted nodes: the newest, and among equally new the smaller node id.
    assert decision(merge_golden(table(fields), base[:2] + base[3:4]), "label").value == "2"
    assert decision(merge_golden(table(fields), base[:2]), "label").value == "2"


def test_priority_order_ranks_sources() -> None:
    sources = [
        src("3305", T0),
        src("3304", None),
        src("3302", T0),
        src("3301", T1, home="3301"),
        src("3303", T2),
    ]
    ranked = priority_order(sources, "home", ["city-3304"])
    assert [s.node_id for s in ranked] == [
        "city-3301",  # home
        "city-3304",  # listed
        "city-3303",  # newest
        "city-3302",  # as new as 3305, smaller node id
        "city-3305",
    ]


# --- union ----------------------------------------------------------------------------------


def test_union_is_sorted_and_deduplicated() -> None:
    t = table({"tags": "union"})
    sources = [
        src("3301", T0, tags=["vip", "aml_watch", "vip"]),
        src("3302", T1, tags=None),
        src("3303", T2, tags=["overdue", "aml_watch"]),
    ]
    d = decision(merge_golden(t, sources), "tags")
    assert d.value == ["aml_watch", "overdue", "vip"]
    assert (d.winner, d.disputed) == (None, True)


def test_union_of_nothing_is_an_empty_list() -> None:
    d = decision(merge_golden(table({"tags": "union"}), [src("3301", T0)]), "tags")
    assert (d.value, d.disputed) == ([], False)


# --- max / min ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "low", "high"),
    [
        ("count", 2, 7),
        ("amount", Decimal("10.50"), Decimal("100.00")),
        ("day", dt.date(2020, 1, 2), dt.date(2024, 5, 6)),
        ("seen_at", T0, T2),
        ("label", "alpha", "beta"),
    ],
)
def test_max_and_min(column: str, low: Any, high: Any) -> None:
    sources = [
        src("3301", T2, **{column: low}),
        src("3302", T0, **{column: high}),
        src("3303", T1, **{column: None}),
    ]
    big = decision(merge_golden(table({column: "max"}), sources), column)
    small = decision(merge_golden(table({column: "min"}), sources), column)
    assert (big.value, big.winner, big.disputed) == (high, "city-3302", True)
    assert (small.value, small.winner) == (low, "city-3301")


def test_max_of_nothing_is_none() -> None:
    d = decision(merge_golden(table({"count": "max"}), [src("3301", T0)]), "count")
    assert (d.value, d.winner) == (None, None)


def test_equal_extremes_go_to_the_greater_node_id() -> None:
    sources = [src("3302", T0, amount=Decimal("5.0")), src("3301", T0, amount=Decimal("5.00"))]
    for rule in ("max", "min"):
        for order in (sources, sources[::-1]):
            d = decision(merge_golden(table({"amount": rule}), order), "amount")
            assert d.winner == "city-3302"
            assert str(d.value) == "5.0"
            assert not d.disputed


# --- sum ------------------------------------------------------------------------------------


def test_sum_is_exact_decimal() -> None:
    sources = [
        src("3301", T0, amount=Decimal("0.10")),
        src("3302", T0, amount=Decimal("0.20")),
        src("3303", T0, amount=None),
        src("3304", T0, amount=Decimal("12345678901234567890123456789.01")),
    ]
    d = decision(merge_golden(table({"amount": "sum"}), sources), "amount")
    assert d.value == Decimal("12345678901234567890123456789.31")
    assert str(d.value) == "12345678901234567890123456789.31"
    assert (d.winner, d.rule) == (None, MergeRule.SUM)


def test_sum_of_integers_stays_integer() -> None:
    sources = [src("3301", T0, count=2), src("3302", T0, count=3)]
    d = decision(merge_golden(table({"count": "sum"}), sources), "count")
    assert d.value == 5
    assert type(d.value) is int


def test_sum_of_nothing_is_none() -> None:
    d = decision(merge_golden(table({"amount": "sum"}), [src("3301", T0)]), "amount")
    assert d.value is None


# --- manual ---------------------------------------------------------------------------------

MANUAL = {"home": {"rule": "priority", "prefer_home": "home"}, "label": "manual"}


def test_manual_agreement_is_no_conflict() -> None:
    sources = [src("3301", T0, label="same"), src("3302", T1, label="same"), src("3303", T2)]
    result = merge_golden(table(MANUAL), sources)
    d = decision(result, "label")
    assert (d.value, d.disputed, d.rule) == ("same", False, MergeRule.MANUAL)
    assert result.conflicts == ()


def test_manual_all_none_is_agreement() -> None:
    result = merge_golden(table(MANUAL), [src("3301", T0), src("3302", T1)])
    assert decision(result, "label").value is None
    assert result.conflicts == ()


def test_manual_agreement_ignores_decimal_exponent() -> None:
    t = table({"amount": "manual"})
    sources = [src("3301", T0, amount=Decimal("1.5")), src("3302", T1, amount=Decimal("1.50"))]
    result = merge_golden(t, sources)
    assert decision(result, "amount").value == Decimal("1.5")
    assert result.conflicts == ()


def test_manual_disagreement_keeps_the_home_value_and_queues_a_conflict() -> None:
    sources = [
        src("3301", T2, home="3302", label="newest edit"),
        src("3302", T0, home="3302", label="home"),
        src("3303", T1, home="3302", label="third"),
    ]
    result = merge_golden(table(MANUAL), sources)
    d = decision(result, "label")
    assert (d.value, d.winner, d.disputed) == ("home", "city-3302", True)
    assert result.conflicts == (d,)
    assert result.values["label"] == "home"
    assert d.candidates == {
        "city-3301": "newest edit",
        "city-3302": "home",
        "city-3303": "third",
    }


def test_manual_disagreement_without_home_takes_the_smallest_node_id() -> None:
    sources = [src("3302", T0, label="b"), src("3301", T2, label=None), src("3303", T2, label="c")]
    result = merge_golden(table({"label": "manual"}), sources)
    assert decision(result, "label").winner == "city-3302"
    assert [c.column for c in result.conflicts] == ["label"]


def test_manual_resolution_settles_the_dispute() -> None:
    sources = [src("3301", T0, label="a"), src("3302", T1, label="b")]
    first = merge_golden(table(MANUAL), sources)
    (conflict,) = first.conflicts
    steward = Resolution("b", dict(conflict.candidates))
    result = merge_golden(table(MANUAL), sources, {"label": steward})
    d = decision(result, "label")
    assert (d.value, d.winner, d.disputed) == ("b", None, True)
    assert result.conflicts == ()


def test_manual_resolution_is_stale_once_a_source_changes() -> None:
    steward = Resolution("b", {"city-3301": "a", "city-3302": "b"})
    changed = [src("3301", T0, label="a"), src("3302", T2, seq=2, label="c")]
    result = merge_golden(table(MANUAL), changed, {"label": steward})
    d = decision(result, "label")
    assert result.conflicts == (d,)
    assert d.value == "a"
    joined = [src("3301", T0, label="a"), src("3302", T1, label="b"), src("3303", T0)]
    assert len(merge_golden(table(MANUAL), joined, {"label": steward}).conflicts) == 1


def test_manual_resolution_matches_json_encoded_candidates() -> None:
    t = table({"amount": "manual", "day": "manual"})
    sources = [
        src("3301", T0, amount=Decimal("1.50"), day=dt.date(2024, 1, 1)),
        src("3302", T1, amount=Decimal("2"), day=dt.date(2024, 1, 2)),
    ]
    (amount, day) = merge_golden(t, sources).conflicts
    resolutions = {
        "amount": Resolution(
            Decimal("2"), {k: encode_value(v) for k, v in amount.candidates.items()}
        ),
        "day": Resolution(
            dt.date(2024, 1, 2), {"city-3301": "2024-01-01", "city-3302": "2024-01-02"}
        ),
    }
    result = merge_golden(t, sources, resolutions)
    assert result.conflicts == ()
    assert result.values["amount"] == Decimal("2")
    assert result.values["day"] == day.candidates["city-3302"]


def test_resolution_is_ignored_when_sources_agree() -> None:
    sources = [src("3301", T0, label="a"), src("3302", T1, label="a")]
    steward = Resolution("z", {"city-3301": "a", "city-3302": "b"})
    result = merge_golden(table(MANUAL), sources, {"label": steward})
    assert result.values["label"] == "a"


# --- the whole record -----------------------------------------------------------------------


def test_only_data_columns_minus_identity_are_merged() -> None:
    result = merge_golden(table(), [src("3301", T0)])
    merged = [c for c in COLUMNS if c not in ("pid", "idno")]
    assert list(result.values) == merged
    assert [d.column for d in result.decisions] == merged


def test_no_sources_is_an_error() -> None:
    with pytest.raises(ValueError, match="no source records"):
        merge_golden(table(), [])


def test_two_sources_of_one_node_is_an_error() -> None:
    with pytest.raises(ValueError, match="one source record per node"):
        merge_golden(table(), [src("3301", T0), src("3301", T1, seq=2)])


def test_customers_of_the_reference_crm() -> None:
    customers = load_policy(POLICY).table("customers")
    assert home_column(customers) == "home_city"

    def customer(node: str, at: dt.datetime, **row: Any) -> Source:
        base = {
            "customer_id": f"C-{node}",
            "customer_type": "individual",
            "name": "张三",
            "id_type": "ric",
            "id_number": "330106199001011237",
            "home_city": "3301",
            "status": "active",
            "created_at": at,
            "updated_at": at,
        }
        return Source(f"city-{node}", node, 1, at, {**base, **row})

    sources = [
        customer(
            "3301",
            T0,
            phone="13800000001",
            risk_level=2,
            risk_tags=["vip"],
            credit_limit=Decimal("50000.00"),
        ),
        customer(
            "3302",
            T2,
            name="张叁",
            customer_type="corporate",
            phone="13800000002",
            risk_level=4,
            risk_tags=["overdue", "vip"],
            credit_limit=Decimal("20000.00"),
        ),
    ]
    result = merge_golden(customers, sources)
    assert set(result.values) == set(customers.data_columns) - {"id_type", "id_number"}
    assert "rm_notes" not in result.values
    assert result.values["name"] == "张三"  # the home city's spelling
    assert result.values["home_city"] == "3301"
    assert result.values["phone"] == "13800000002"  # latest
    assert result.values["risk_level"] == 4
    assert result.values["risk_tags"] == ["overdue", "vip"]
    assert result.values["credit_limit"] == Decimal("50000.00")
    assert result.values["created_at"] == T0
    assert result.values["updated_at"] == T2
    (conflict,) = result.conflicts
    assert (conflict.column, conflict.value, conflict.winner) == (
        "customer_type",
        "individual",
        "city-3301",
    )


# --- helpers --------------------------------------------------------------------------------


def test_encode_value() -> None:
    assert encode_value(Decimal("1.50")) == "1.50"
    assert encode_value(dt.date(2024, 1, 2)) == "2024-01-02"
    assert encode_value(T0) == "2025-03-01T08:00:00"
    assert encode_value(["a", "b"]) == ["a", "b"]
    assert encode_value(None) is None
    assert encode_value(True) is True
    assert encode_value(3) == 3


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (Decimal("1.5"), Decimal("1.50"), True),
        (Decimal("1.5"), "1.50", True),
        ("1.50", Decimal("1.5"), True),
        (Decimal("1.5"), "x", False),
        (2, Decimal("2.0"), True),
        (dt.date(2024, 1, 2), "2024-01-02", True),
        (T0, "2025-03-01T08:00:00", True),
        (T0, "2025-03-01", False),
        (T0, "not a time", False),
        (True, 1, False),
        (True, "true", False),
        (True, True, True),
        (None, None, True),
        (None, "", False),
        (["a", "b"], ["a", "b"], True),
        (["a", "b"], ["b", "a"], False),
        ("a", "a", True),
    ],
)
def test_values_equal(a: Any, b: Any, equal: bool) -> None:
    assert values_equal(a, b) is equal
    assert values_equal(b, a) is equal


def test_same_candidates() -> None:
    assert same_candidates({"a": Decimal("1.0"), "b": None}, {"b": None, "a": "1"})
    assert not same_candidates({"a": 1}, {"a": 1, "b": None})
    assert not same_candidates({"a": 1}, {"a": 2})
