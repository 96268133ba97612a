"""The egress ledger's pure side: what a batch carried, the period summary and its statement."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.batch import DELETE, UPSERT, Change
from syncd.core.egress import (
    EgressEntry,
    EgressStatus,
    carried,
    digest,
    statement,
    summarise,
)

AT = dt.datetime(2026, 11, 29, 8, 0, 0)
SHAPE = {"customers": ["customer_id", "name", "phone"], "loans": ["balance", "loan_id"]}


def entry(n: int, what: dict[str, dict[str, object]], **kw: object) -> EgressEntry:
    fields: dict[str, object] = {
        "first_seq": n * 10 + 1,
        "last_seq": n * 10 + 10,
        "checksum": f"{n:064x}",
        "covered": 10,
        "row_count": sum(
            int(str(c.get("upsert", 0))) + int(str(c.get("delete", 0))) for c in what.values()
        ),
        "carried": what,
        "policy_fingerprint": "fp",
        "status": EgressStatus.ACCEPTED,
        "hub_batch_id": n,
        "sent_at": AT + dt.timedelta(minutes=n),
        "acknowledged_at": AT + dt.timedelta(minutes=n),
    }
    fields.update(kw)
    return EgressEntry(**fields)  # type: ignore[arg-type]


def test_carried_names_columns_and_counts_never_values() -> None:
    changes = [
        Change(1, "customers", UPSERT, {"customer_id": "C1"}, {"customer_id": "C1", "name": "甲"}),
        Change(2, "customers", DELETE, {"customer_id": "C2"}, None),
        Change(3, "loans", UPSERT, {"loan_id": "L1"}, {"loan_id": "L1", "balance": 5}),
    ]
    assert carried(changes) == {
        "customers": {"columns": ["customer_id", "name"], "upsert": 1, "delete": 1},
        "loans": {"columns": ["balance", "loan_id"], "upsert": 1, "delete": 0},
    }
    assert "甲" not in repr(carried(changes))
    assert carried([]) == {}


def test_summary_names_the_batch_table_and_column_that_should_not_have_left() -> None:
    good = entry(1, {"customers": {"columns": ["customer_id", "name"], "upsert": 2, "delete": 0}})
    bad = entry(
        2,
        {
            "customers": {"columns": ["customer_id", "rm_notes"], "upsert": 1, "delete": 0},
            "opportunities": {"columns": ["opportunity_id"], "upsert": 1, "delete": 0},
        },
        policy_fingerprint="old",
    )
    s = summarise([good, bad], SHAPE, "fp")
    assert not s.ok
    assert [v.describe() for v in s.violations] == [
        "batch 21-30 (hub batch 2) carried column customers.rm_notes, which is not public",
        "batch 21-30 (hub batch 2) carried table opportunities, which is not public",
    ]
    assert s.other_policies == ((21, 30, "old"),)
    assert s.rows_by_table["customers"] == {"upsert": 3, "delete": 0}
    text = statement(s, "city-3301", AT, AT + dt.timedelta(days=1), "crm.yaml", "fp")
    assert "NOT COMPLIANT" in text
    assert "no excluded column was sent" not in text


def test_statement_of_a_compliant_period_and_of_an_empty_one() -> None:
    s = summarise(
        [entry(1, {"loans": {"columns": ["loan_id"], "upsert": 0, "delete": 1}})], SHAPE, "fp"
    )
    text = statement(s, "city-3301", AT, AT + dt.timedelta(hours=1), "crm.yaml", "fp")
    assert text == (
        "Between 2026-11-29 08:00:00 and 2026-11-29 09:00:00 (UTC+00:00), 1 batches (1 rows) "
        "left city city-3301; only these tables and columns: loans (loan_id); no row of a local "
        "table and no excluded column was sent (checked against policy crm.yaml, fingerprint fp)."
    )
    empty = statement(summarise([], SHAPE, "fp"), "city-3301", None, AT, "crm.yaml", "fp")
    assert "no batch left city city-3301" in empty


def test_digest_changes_with_any_field_of_any_row() -> None:
    rows = [entry(1, {"loans": {"columns": ["loan_id"], "upsert": 1, "delete": 0}})]
    changed = [entry(1, {"loans": {"columns": ["loan_id"], "upsert": 1, "delete": 0}}, covered=9)]
    assert digest(rows) == digest(list(rows))
    assert digest(rows) != digest(changed)
    assert digest(rows) != digest([])


def test_unacknowledged_batches_count_as_sent() -> None:
    e = entry(
        1,
        {"loans": {"columns": ["loan_id"], "upsert": 1, "delete": 0}},
        status=EgressStatus.UNACKNOWLEDGED,
        hub_batch_id=None,
        acknowledged_at=None,
    )
    s = summarise([e], SHAPE, "fp")
    assert s.batches == 1
    assert s.acknowledged == 0
    assert s.tables == {"loans": ["loan_id"]}
    assert s.unacknowledged == ((11, 20, "unacknowledged"),)


TABLES = ["customers", "loans", "opportunities"]
COLUMNS = ["customer_id", "name", "phone", "rm_notes", "loan_id", "balance"]
carried_docs = st.dictionaries(
    st.sampled_from(TABLES),
    st.fixed_dictionaries(
        {
            "columns": st.lists(st.sampled_from(COLUMNS), min_size=1, unique=True).map(sorted),
            "upsert": st.integers(0, 5),
            "delete": st.integers(0, 5),
        }
    ),
)


@settings(deadline=None)  # timing on a shared CI machine is not what this tests
@given(st.lists(carried_docs, max_size=6))
def test_summary_is_the_union_and_flags_exactly_what_the_shape_forbids(
    docs: list[dict[str, dict[str, object]]],
) -> None:
    entries = [entry(i, d) for i, d in enumerate(docs)]
    s = summarise(entries, SHAPE, "fp")
    union: dict[str, set[str]] = {}
    for d in docs:
        for table, what in d.items():
            union.setdefault(table, set()).update(what["columns"])  # type: ignore[arg-type]
    assert s.tables == {t: sorted(c) for t, c in union.items()}
    assert s.rows == sum(e.row_count for e in entries)
    forbidden = any(
        table not in SHAPE or set(what["columns"]) - set(SHAPE[table])  # type: ignore[arg-type]
        for d in docs
        for table, what in d.items()
    )
    assert (not s.ok) == forbidden
    for v in s.violations:
        assert v.table not in SHAPE or v.column not in SHAPE[v.table]
