"""A batch travels as one payload: the JSON text the city hashed, stored and checked as sent.

The hub takes a payload only if it is a JSON array of changes, each an object with an integer
seq, a text table and op and an object key; PostgreSQL checks that at submit
(`syncd_payload_problem`), a SQLite hub and apply in Python (`syncd.hub.payload`). Hypothesis
holds the two to the same answer, word for word.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.app import init_node
from syncd.core.batch import UPSERT, Change, checksum, make_batch, payload_checksum
from syncd.core.canonical import canonical
from syncd.hub import payload
from syncd.hub.apply import apply_pending, load_changes
from syncd.hub.inbox import HubInbox
from syncd.hub.nodes import register_node
from syncd.store import hub_tables as h
from syncd.store.db import create_engine
from tests.helpers import settings_for, write_config
from tests.integration.test_apply import LI, POLICY, STAMP, customer

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
CHANGE = st.fixed_dictionaries(
    {
        "seq": st.integers(min_value=1, max_value=10**6),
        "table": st.text(max_size=8),
        "op": st.sampled_from(["upsert", "delete", "x"]),
        "key": st.dictionaries(st.text(max_size=4), SCALARS, max_size=2),
    },
    optional={"row": VALUES},
)
# A change with any one of its required members replaced by anything, or missing.
BROKEN = st.builds(
    lambda c, name, value, drop: (
        {k: v for k, v in c.items() if k != name} if drop else {**c, name: value}
    ),
    CHANGE,
    st.sampled_from(["seq", "table", "op", "key"]),
    VALUES,
    st.booleans(),
)
PAYLOADS = st.one_of(
    st.lists(CHANGE, max_size=4).map(canonical),
    st.lists(st.one_of(CHANGE, BROKEN, VALUES), max_size=4).map(json.dumps),
    VALUES.map(json.dumps),
    st.text(st.characters(exclude_characters="\x00"), max_size=30),
    st.sampled_from(
        [
            "[NaN]",
            '[{"seq": 1e3}]',
            "[1,]",
            '["\\ud800"]',
            '["\\u0000"]',
            "[",
            "",
            "\\u0000",
            # jsonb prints these seqs without a decimal point: integers to the SQL's pattern.
            '[{"seq": 1e+16, "table": "t", "op": "upsert", "key": {}}]',
            '[{"seq": 1.5e1, "table": "t", "op": "upsert", "key": {}}]',
            '[{"seq": 1.0, "table": "t", "op": "upsert", "key": {}}]',
            '[{"seq": 10e-1, "table": "t", "op": "upsert", "key": {}}]',
            '[{"seq": 1e18, "table": "t", "op": "upsert", "key": {}}]',
        ]
    ),
)
# A raw NUL never reaches PostgreSQL (psycopg refuses text holding one); JSON has no raw NUL
# either, so Python refuses it as not JSON.


@settings(max_examples=150, deadline=None)
@given(text=PAYLOADS)
def test_pg_takes_a_payload_exactly_when_python_does(
    pg_functions: psycopg.Connection[Any], text: str
) -> None:
    found = pg_functions.execute(
        "SELECT syncd_payload_problem(%s::text, NULL::jsonb)", (text,)
    ).fetchone()
    assert found is not None
    assert found[0] == payload.problem(text, as_jsonb=True)


@pytest.mark.parametrize(
    ("seq", "taken"),
    [("1e+16", True), ("1.5e1", True), ("1.0", False), ("10e-1", False), ("1e18", False)],
)
def test_a_seq_written_as_a_float_is_taken_where_jsonb_reads_an_integer(
    pg_functions: psycopg.Connection[Any], seq: str, taken: bool
) -> None:
    """Hypothesis found 1e+16: jsonb reads it as 10000000000000000, an integer to the SQL."""
    text = f'[{{"seq": {seq}, "table": "t", "op": "upsert", "key": {{}}}}]'
    found = pg_functions.execute(
        "SELECT syncd_payload_problem(%s::text, NULL::jsonb)", (text,)
    ).fetchone()
    assert found is not None
    assert (found[0] is None) is taken
    assert payload.problem(text, as_jsonb=True) == found[0]
    changes, _ = payload.read(text)
    assert changes is None or type(changes[0].seq) is int


@given(
    node=st.text(min_size=1, max_size=10),
    first=st.integers(min_value=0, max_value=10**12),
    changes=st.lists(CHANGE, max_size=4),
)
def test_checksum_over_the_payload_text_is_the_batch_checksum(
    node: str, first: int, changes: list[dict[str, Any]]
) -> None:
    last = first + len(changes)
    text = canonical(changes)
    assert payload_checksum(node, first, last, text) == checksum(node, first, last, changes)


def test_a_float_from_a_city_applies_on_either_hub(tmp_path: Path, db_url: str) -> None:
    """A city that writes a JSON float (no syncd city does; a hostile one may) gets its row
    validated like any other: before the payload, a PostgreSQL hub stored it as jsonb, which
    rewrote the number, and refused the whole batch as altered."""
    init_node(settings_for(write_config(tmp_path / "hub.toml", "hub-33", "hub", db_url)))
    hub = create_engine(db_url)
    register_node(hub, db_url, "hz", "3301")
    row = customer("c1", LI)
    row["credit_limit"] = 1e16  # jsonb would print it as 10000000000000000
    change = Change(1, "customers", UPSERT, {"customer_id": "c1"}, row)
    batch = make_batch("hz", 1, 1, [change], STAMP)
    assert "1e+16" in batch.wire_json
    client = HubInbox(db_url, "hz")
    try:
        result = client.submit(batch)
    finally:
        client.close()
    assert result.status == "accepted", result.reason
    summary = apply_pending(hub, POLICY)
    # Validation's verdict on the value, not a refusal of the batch: 1e16 does not fit the
    # column's NUMERIC(18, 2), so the row is quarantined with the column named.
    assert (summary.batches, summary.batches_refused, summary.quarantined) == (1, 0, 1)
    with hub.connect() as conn:
        stored = conn.execute(sa.select(h.batches.c.payload)).scalar_one()
        ((_, kept),) = load_changes(conn, result.batch_id or 0)
        reason = conn.execute(sa.select(h.quarantine.c.reason)).scalar_one()
    hub.dispose()
    assert stored == batch.wire_json  # kept as sent, byte for byte
    assert kept.wire_row["credit_limit"] == 1e16
    assert reason.startswith("credit_limit:"), reason


def test_a_nul_is_refused_only_where_jsonb_cannot_hold_it() -> None:
    """A PostgreSQL hub cannot read a payload with a NUL at all; a SQLite hub takes it, and
    validation quarantines the one row (the city's other rows and batches go on)."""
    key = {"customer_id": "c\x00"}
    text = canonical([{"seq": 1, "table": "customers", "op": "upsert", "key": key, "row": None}])
    assert "\\u0000" in text
    assert payload.problem(text) is None
    assert payload.problem(text, as_jsonb=True) == payload.NOT_JSON
