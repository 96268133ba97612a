"""Reconcile's pure logic: bisection finds exactly the injected differences, whatever they are."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core import reconcile as r
from syncd.core.policy import load_policy
from tests.conftest import POLICY

SPEC = r.Spec(
    "t",
    (r.Col("id", r.Kind.TEXT), r.Col("amount", r.Kind.DEC, 2), r.Col("note", r.Kind.TEXT)),
    ("id",),
)


class Memory:
    """A Side over rows in memory, computing what the databases compute."""

    def __init__(self, rows: Mapping[str, tuple[Any, ...]]) -> None:
        self.rows = {
            r.joined([k]): r.joined(r.text_of(c, v) for c, v in zip(SPEC.columns, row, strict=True))
            for k, row in rows.items()
        }
        self.amounts = {r.joined([k]): row[1] for k, row in rows.items()}
        self.questions = 0

    def digests(
        self, spec: r.Spec, modulus: int, parent_modulus: int, parents: Sequence[int] | None
    ) -> dict[int, r.Digest]:
        self.questions += 1
        out: dict[int, r.Digest] = {}
        for key, text in self.rows.items():
            k32 = r.key32(key)
            if parents is not None and k32 % parent_modulus not in parents:
                continue
            b = k32 % modulus
            d = out.get(b, r.Digest(0, (None,), 0))
            amount = self.amounts[key]
            total = d.sums[0] if amount is None else (d.sums[0] or 0) + amount
            out[b] = r.Digest(d.rows + 1, (total,), d.hash + r.row_hash60(r.md5_hex(text)))
        return out

    def leaf(self, spec: r.Spec, modulus: int, buckets: Sequence[int]) -> dict[str, str]:
        wanted = set(buckets)
        return {k: r.md5_hex(t) for k, t in self.rows.items() if r.key32(k) % modulus in wanted}

    def columns(self, spec: r.Spec, keys: Sequence[str], values: bool) -> dict[str, dict[str, Any]]:
        out = {}
        for k in keys:
            if k in self.rows:
                cells = self.rows[k].split(r.SEP)
                out[k] = {c.name: v for c, v in zip(spec.columns, cells, strict=True)}
        return out


def run(city: Memory, hub: Memory, limit: int = 10**6) -> r.KeyDiff:
    found = r.narrow(SPEC, city, hub)
    return r.compare_leaves(SPEC, city, hub, found.modulus, found.buckets, limit)


amounts = st.one_of(st.none(), st.decimals(min_value=-(10**6), max_value=10**6, places=2))
rows = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.tuples(amounts, st.text(max_size=5)),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(rows, st.data())
def test_bisection_finds_exactly_the_injected_keys(
    base: dict[str, Any], data: st.DataObject
) -> None:
    city = {k: (k, *v) for k, v in base.items()}
    keys = sorted(city)
    missing = set(data.draw(st.lists(st.sampled_from(keys), max_size=5))) if keys else set()
    rest = [k for k in keys if k not in missing]
    changed = set(data.draw(st.lists(st.sampled_from(rest), max_size=5))) if rest else set()
    extra = set(data.draw(st.lists(st.text(min_size=1, max_size=8), max_size=5))) - set(city)
    hub = {k: v for k, v in city.items() if k not in missing}
    for k in changed:
        hub[k] = (k, hub[k][1], hub[k][2] + "!")
    for k in extra:
        hub[k] = (k, decimal.Decimal("1.00"), "x")
    diff = run(Memory(city), Memory(hub))
    assert set(diff.missing) == {r.joined([k]) for k in missing}
    assert set(diff.extra) == {r.joined([k]) for k in extra}
    assert set(diff.changed) == {r.joined([k]) for k in changed}
    assert not diff.truncated


def test_equal_sides_ask_one_question_each() -> None:
    same = {f"K{i}": (f"K{i}", decimal.Decimal(i), "n") for i in range(5000)}
    city, hub = Memory(same), Memory(same)
    assert run(city, hub).count == 0
    assert city.questions == hub.questions == 1


def test_a_large_table_narrows_level_by_level() -> None:
    base = {f"K{i}": (f"K{i}", decimal.Decimal(i), "n") for i in range(20000)}
    hub = {**base, "K7": ("K7", decimal.Decimal(7), "changed")}
    city_side, hub_side = Memory(base), Memory(hub)
    diff = run(city_side, hub_side)
    assert diff.changed == [r.joined(["K7"])]
    assert city_side.questions == 1  # 2^16 buckets at once: each small enough to list


def test_crowded_buckets_are_split_further(monkeypatch: Any) -> None:
    monkeypatch.setattr(r, "FIRST_MODULUS", 4)
    base = {f"K{i}": (f"K{i}", decimal.Decimal(i), "n") for i in range(3000)}
    hub = {k: v for k, v in base.items() if k not in ("K5", "K2999")}
    city_side, hub_side = Memory(base), Memory(hub)
    found = r.narrow(SPEC, city_side, hub_side)
    assert found.modulus == 4 << r.FANOUT_BITS  # 750 rows per bucket, then 12: a leaf
    assert (found.city.rows, found.hub.rows) == (3000, 2998)
    diff = r.compare_leaves(SPEC, city_side, hub_side, found.modulus, found.buckets, 100)
    assert sorted(diff.missing) == ["K2999", "K5"]


def test_listing_stops_at_the_limit() -> None:
    city = Memory({f"K{i}": (f"K{i}", None, "") for i in range(50)})
    diff = run(city, Memory({}), limit=10)
    assert diff.count == 10
    assert diff.truncated


def test_digest_sums_compare_as_numbers_and_hash_modulo() -> None:
    a = r.Digest(2, (decimal.Decimal("1.50"),), 5)
    assert a.same(r.Digest(2, (decimal.Decimal("1.5"),), 5 + (1 << r.HASH_BITS)))
    assert not a.same(r.Digest(2, (decimal.Decimal("1.51"),), 5))
    assert r.differing({1: a}, {}) == [1]


def test_canonical_text_of_values() -> None:
    assert r.text_of(r.Col("x", r.Kind.DEC, 2), decimal.Decimal("5")) == "5.00"
    assert r.text_of(r.Col("x", r.Kind.DEC, 4), "0.04255") == "0.0426"
    assert (
        r.text_of(r.Col("x", r.Kind.TS), dt.datetime(2026, 1, 2, 3, 4, 5, 999))
        == "2026-01-02T03:04:05"
    )
    assert r.text_of(r.Col("x", r.Kind.DATE), dt.date(2026, 1, 2)) == "2026-01-02"
    assert r.text_of(r.Col("x", r.Kind.BOOL), False) == "f"
    assert r.text_of(r.Col("x", r.Kind.LIST), ["a", "b"]) == "a\x1fb"
    assert r.text_of(r.Col("x", r.Kind.INT), None) is None
    assert r.joined(["a", None]) == "a\x1f\x1e"


def test_spec_of_a_policy_table_has_public_columns_and_money() -> None:
    spec = r.spec_for(load_policy(POLICY).tables["loans"])
    names = [c.name for c in spec.columns]
    assert "approval_memo" not in names
    assert spec.key == ("loan_id",)
    assert spec.money == ("principal", "balance", "interest_rate")
    assert r.key_values(spec, "L1") == {"loan_id": "L1"}
