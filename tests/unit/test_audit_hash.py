"""The audit log's pure part: canonical JSON and the entry hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from syncd.core.errors import UsageError
from syncd.hub.audit import (
    COLUMNS,
    GENESIS_HASH,
    HASHED_FIELDS,
    Action,
    canonical,
    entry_hash,
    hashed_body,
    parse_anchor,
)
from syncd.store.hub_tables import audit

ENTRY: dict[str, Any] = {
    "entry_id": 1,
    "at": dt.datetime(2025, 3, 1, 8, 0, 0),
    "action": "row_applied",
    "node_id": "3301",
    "batch_id": 12,
    "table_name": "customer",
    "row_key": '{"id_number":"330102199001011234","id_type":"01"}',
    "detail": '{"name":"张三"}',
}


def test_keys_are_sorted_at_every_level() -> None:
    a = {"b": 1, "a": {"y": [1, 2], "x": None}}
    b = {"a": {"x": None, "y": [1, 2]}, "b": 1}
    assert canonical(a) == canonical(b) == '{"a":{"x":null,"y":[1,2]},"b":1}'


def test_decimals_keep_their_exact_text() -> None:
    assert canonical({"amount": Decimal("12.50")}) == '{"amount":"12.50"}'
    assert canonical(Decimal("-0.001")) == '"-0.001"'


def test_dates_and_times_are_iso() -> None:
    assert canonical(dt.datetime(2025, 3, 1, 8, 0, 5)) == '"2025-03-01T08:00:05"'
    assert canonical(dt.datetime(2025, 3, 1, 8, 0, 5, 120)) == '"2025-03-01T08:00:05.000120"'
    assert canonical(dt.date(2025, 3, 1)) == '"2025-03-01"'
    aware = dt.datetime(2025, 3, 1, 8, tzinfo=dt.UTC)
    assert canonical(aware) == '"2025-03-01T08:00:00+00:00"'


def test_unicode_is_kept_not_escaped() -> None:
    assert canonical({"name": "张三", "city": "杭州"}) == '{"city":"杭州","name":"张三"}'


def test_tuples_and_sets_become_lists() -> None:
    assert canonical((1, "a")) == '[1,"a"]'
    assert canonical({"tags": {"vip", "high_risk", "agri"}}) == (
        '{"tags":["agri","high_risk","vip"]}'
    )
    assert canonical(frozenset({3, 1, 2})) == "[1,2,3]"


def test_enums_encode_as_their_value() -> None:
    assert canonical(Action.STALE) == '"stale"'


def test_what_json_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError, match="bytes"):
        canonical({"x": b"raw"})
    with pytest.raises(ValueError, match="JSON"):
        canonical(math.nan)


def test_entry_hash_is_sha256_of_prev_and_canonical_fields() -> None:
    body = canonical({name: ENTRY[name] for name in HASHED_FIELDS})
    expected = hashlib.sha256((GENESIS_HASH + body).encode("utf-8")).hexdigest()
    assert entry_hash(GENESIS_HASH, ENTRY) == expected


def test_entry_hash_is_pinned() -> None:
    # Anchors kept by auditors must keep verifying: the encoding may never drift.
    assert entry_hash(GENESIS_HASH, ENTRY) == (
        "39f8558e12ab51ee87ffb354ff5db6d5d053ff23f91b8ab068d01c8875b033f0"
    )


def test_every_column_but_the_hashes_is_hashed() -> None:
    assert sorted(HASHED_FIELDS) == sorted(FIELD_VALUES)
    assert (
        tuple(c.name for c in audit.columns)
        == COLUMNS
        == (*HASHED_FIELDS, "prev_hash", "entry_hash")
    )


def test_entry_hash_ignores_other_keys_and_needs_every_field() -> None:
    stored = {**ENTRY, "prev_hash": GENESIS_HASH, "entry_hash": "f" * 64}
    assert entry_hash(GENESIS_HASH, stored) == entry_hash(GENESIS_HASH, ENTRY)
    partial = {k: v for k, v in ENTRY.items() if k != "detail"}
    with pytest.raises(KeyError, match="detail"):
        entry_hash(GENESIS_HASH, partial)


def test_anchor_parsing() -> None:
    assert parse_anchor("12:" + "AB" * 32) == (12, "ab" * 32)
    assert parse_anchor("0:" + GENESIS_HASH) == (0, GENESIS_HASH)
    with pytest.raises(UsageError, match="malformed"):
        parse_anchor("12:" + "ab" * 31)


_text = st.text(max_size=40)
_optional_text = st.none() | st.text(min_size=1, max_size=40)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "entry_id": st.integers(min_value=1, max_value=2**63 - 1),
    "at": st.datetimes(min_value=dt.datetime(2000, 1, 1)).map(lambda d: d.replace(microsecond=0)),
    "action": st.text(min_size=1, max_size=32),
    "node_id": _optional_text,
    "batch_id": st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    "table_name": _optional_text,
    "row_key": st.none() | _text,
    "detail": _text,
}
_entries = st.fixed_dictionaries(FIELD_VALUES)
_hashes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@given(entry=_entries, prev=_hashes, data=st.data())
def test_any_single_field_change_changes_the_hash(
    entry: dict[str, Any], prev: str, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(FIELD_VALUES)))
    value = data.draw(FIELD_VALUES[name])
    assume(value != entry[name])
    assert entry_hash(prev, {**entry, name: value}) != entry_hash(prev, entry)


@given(entry=_entries, prev=_hashes, other=_hashes)
def test_a_different_predecessor_changes_the_hash(
    entry: dict[str, Any], prev: str, other: str
) -> None:
    assume(prev != other)
    assert entry_hash(prev, entry) != entry_hash(other, entry)


@given(entry=_entries)
def test_the_hash_does_not_depend_on_key_order(entry: dict[str, Any]) -> None:
    reordered = dict(reversed(list(entry.items())))
    assert entry_hash(GENESIS_HASH, reordered) == entry_hash(GENESIS_HASH, entry)


_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
_STORED = st.one_of(
    st.none(),
    _TEXT,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.datetimes(),
)


@given(st.fixed_dictionaries(dict.fromkeys(HASHED_FIELDS, _STORED)))
def test_hashed_body_is_canonical_byte_for_byte(fields: dict[str, Any]) -> None:
    # Quotes, backslashes, control characters, CJK: one text either way.
    assert hashed_body(fields) == canonical({n: fields[n] for n in HASHED_FIELDS})


def test_hashed_body_hands_other_types_to_canonical() -> None:
    fields = {**ENTRY, "detail": {"b": Decimal("1.50"), "a": [1, True]}}
    assert hashed_body(fields) == canonical({n: fields[n] for n in HASHED_FIELDS})
