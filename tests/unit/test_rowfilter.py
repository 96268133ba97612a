"""Row filters: Python evaluation agrees with SQL's three-valued logic; enter/leave transitions."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.policy import Condition, FilterOp
from syncd.core.rowfilter import Transition, passes, transition

STATUS = ["prospect", "active", "dormant", "closed"]
SQL_OPS = {
    FilterOp.EQ: "=",
    FilterOp.NE: "<>",
    FilterOp.LT: "<",
    FilterOp.LE: "<=",
    FilterOp.GT: ">",
    FilterOp.GE: ">=",
}


def sql_of(cond: Condition) -> tuple[str, list[Any]]:
    """The condition as SQLite SQL: the oracle the Python evaluator must agree with."""
    col = cond.column
    if cond.op is FilterOp.IS_NULL:
        return f"{col} IS NULL", []
    if cond.op is FilterOp.NOT_NULL:
        return f"{col} IS NOT NULL", []
    if cond.op in (FilterOp.IN, FilterOp.NOT_IN):
        assert cond.values is not None
        marks = ",".join("?" * len(cond.values))
        neg = "NOT " if cond.op is FilterOp.NOT_IN else ""
        return f"{col} {neg}IN ({marks})", list(cond.values)
    return f"{col} {SQL_OPS[cond.op]} ?", [cond.value]


def sql_passes(conds: list[Condition], row: dict[str, Any]) -> bool:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (status TEXT, risk INTEGER)")
    db.execute("INSERT INTO t VALUES (?, ?)", (row["status"], row["risk"]))
    parts, params = [], []
    for c in conds:
        s, p = sql_of(c)
        parts.append(f"({s})")
        params += p
    where = " AND ".join(parts) or "1"
    hit = db.execute(f"SELECT count(*) FROM t WHERE {where}", params).fetchone()[0]
    db.close()
    return bool(hit)


status_values = st.sampled_from(STATUS)
risk_values = st.integers(min_value=-3, max_value=8)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    column = draw(st.sampled_from(["status", "risk"]))
    values = status_values if column == "status" else risk_values
    op = draw(st.sampled_from(list(FilterOp)))
    if op in (FilterOp.IS_NULL, FilterOp.NOT_NULL):
        return Condition(column=column, op=op)
    if op in (FilterOp.IN, FilterOp.NOT_IN):
        return Condition(
            column=column, op=op, values=tuple(draw(st.lists(values, min_size=1, max_size=3)))
        )
    return Condition(column=column, op=op, value=draw(values))


rows = st.fixed_dictionaries(
    {
        "status": st.none() | status_values,
        "risk": st.none() | risk_values,
    }
)


@settings(max_examples=300, deadline=None)
@given(conds=st.lists(conditions(), max_size=3), row=rows)
def test_python_filter_agrees_with_sql(conds: list[Condition], row: dict[str, Any]) -> None:
    assert passes(conds, row) == sql_passes(conds, row)


@settings(max_examples=200, deadline=None)
@given(conds=st.lists(conditions(), min_size=1, max_size=3), old=rows, new=rows)
def test_update_transition_matches_old_and_new(
    conds: list[Condition], old: dict[str, Any], new: dict[str, Any]
) -> None:
    t = transition(conds, "U", new, old)
    old_in, new_in = passes(conds, old), passes(conds, new)
    expected = Transition.UPSERT if new_in else (Transition.DELETE if old_in else Transition.NONE)
    assert t is expected


NOT_PROSPECT = [Condition(column="status", op=FilterOp.NE, value="prospect")]


@pytest.mark.parametrize(
    ("op", "new", "old", "expected"),
    [
        ("I", {"status": "active"}, None, Transition.UPSERT),
        ("I", {"status": "prospect"}, None, Transition.NONE),
        ("U", {"status": "active"}, {"status": "prospect"}, Transition.UPSERT),  # enters
        ("U", {"status": "prospect"}, {"status": "active"}, Transition.DELETE),  # leaves
        ("U", {"status": "prospect"}, {"status": "prospect"}, Transition.NONE),
        ("U", {"status": "active"}, None, Transition.UPSERT),  # filter columns unchanged
        ("U", {"status": "prospect"}, None, Transition.NONE),
        ("D", None, {"status": "active"}, Transition.DELETE),
        ("D", None, {"status": "prospect"}, Transition.NONE),  # its key never left the city
        ("I", {"status": None}, None, Transition.NONE),  # NULL <> 'prospect' is unknown
    ],
)
def test_transitions(
    op: str, new: dict[str, Any] | None, old: dict[str, Any] | None, expected: Transition
) -> None:
    assert transition(NOT_PROSPECT, op, new, old) is expected


def test_no_filter_publishes_everything() -> None:
    assert transition([], "U", {"x": 1}, None) is Transition.UPSERT
    assert passes([], {}) is True
