"""Batches: policy applied to captured changes, coalescing, checksums."""

from __future__ import annotations

import decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.batch import (
    DELETE,
    UPSERT,
    Captured,
    Change,
    checksum,
    coalesce,
    make_batch,
    to_change,
)
from syncd.core.policy import Policy, load_policy
from tests.conftest import POLICY


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(POLICY)


def cust(status: str = "active", **kw: Any) -> dict[str, Any]:
    row = {
        "customer_id": "C1",
        "customer_type": "individual",
        "name": "张三",
        "id_type": "ric",
        "id_number": "11010519491231002X",
        "status": status,
        "rm_notes": "secret",
    }
    row.update(kw)
    return row


def test_local_table_never_leaves(policy: Policy) -> None:
    assert (
        to_change(policy, Captured(1, "opportunities", "I", {"opportunity_id": "O1"}, None)) is None
    )
    assert to_change(policy, Captured(2, "not_declared", "I", {"x": 1}, None)) is None


def test_excluded_and_undeclared_columns_dropped(policy: Policy) -> None:
    ch = to_change(policy, Captured(1, "customers", "I", {**cust(), "hacked": 1}, None))
    assert ch is not None
    assert ch.op == UPSERT
    assert ch.row is not None
    assert "rm_notes" not in ch.row
    assert "hacked" not in ch.row
    assert ch.key == {"customer_id": "C1"}


def test_filter_transitions(policy: Policy) -> None:
    enter = to_change(policy, Captured(1, "customers", "U", cust(), {"status": "prospect"}))
    leave = to_change(policy, Captured(2, "customers", "U", cust("prospect"), {"status": "active"}))
    stay_out = to_change(policy, Captured(3, "customers", "I", cust("prospect"), None))
    gone = to_change(policy, Captured(4, "customers", "D", cust(), None))
    assert enter is not None
    assert enter.op == UPSERT
    assert leave is not None
    assert leave.op == DELETE
    assert leave.row is None
    assert stay_out is None
    assert gone is not None
    assert gone.op == DELETE


def test_coalesce_keeps_last_change_per_row() -> None:
    a1 = Change(1, "loans", UPSERT, {"loan_id": "L1"}, {"balance": 1})
    b1 = Change(2, "loans", UPSERT, {"loan_id": "L2"}, {"balance": 5})
    a2 = Change(3, "loans", DELETE, {"loan_id": "L1"}, None)
    b2 = Change(4, "loans", UPSERT, {"loan_id": "L2"}, {"balance": 6})
    c1 = Change(5, "customers", UPSERT, {"loan_id": "L1"}, {})  # same key, other table
    assert coalesce([a1, b1, a2, b2, c1]) == [a2, b2, c1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["L1", "L2", "L3"]), st.booleans()), max_size=30))
def test_coalesce_properties(ops: list[tuple[str, bool]]) -> None:
    changes = [
        Change(i + 1, "loans", UPSERT if up else DELETE, {"loan_id": k}, {"v": i} if up else None)
        for i, (k, up) in enumerate(ops)
    ]
    out = coalesce(changes)
    keys = [c.key["loan_id"] for c in out]
    assert len(keys) == len(set(keys))  # one change per row
    assert [c.seq for c in out] == sorted(c.seq for c in out)
    for c in out:  # and it is that row's last change
        assert c == [x for x in changes if x.key == c.key][-1]


def test_checksum_is_stable_and_sensitive() -> None:
    ch = [Change(7, "loans", UPSERT, {"loan_id": "L1"}, {"balance": decimal.Decimal("10.50")})]
    b = make_batch("city-3301", 5, 9, ch)
    assert b.checksum == checksum("city-3301", 5, 9, [c.wire() for c in ch])
    assert make_batch("city-3302", 5, 9, ch).checksum != b.checksum
    other = [Change(7, "loans", UPSERT, {"loan_id": "L1"}, {"balance": decimal.Decimal("10.51")})]
    assert make_batch("city-3301", 5, 9, other).checksum != b.checksum
