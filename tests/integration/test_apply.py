"""The hub's apply on real SQLite and PostgreSQL: source records, golden records, refusals.

The helpers at the top (hub, node, submit, customer, loan) are shared with the other apply
tests, which import them from here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from stdnum.cn import ric

from syncd.core.agreement import stamp
from syncd.core.batch import DELETE, UPSERT, Change, make_batch
from syncd.core.policy import Policy, load_policy
from syncd.hub.agreement import record_policy
from syncd.hub.apply import ApplySummary, apply_pending, orphans
from syncd.hub.audit import Action, verify
from syncd.hub.audit_query import query
from syncd.store import hub_tables as h
from syncd.store.bulk import golden_table, source_table
from syncd.store.db import create_engine
from tests.conftest import POLICY as POLICY_PATH

POLICY = load_policy(POLICY_PATH)
STAMP = stamp(POLICY)  # what a city running the demo policy stamps its batches with
T0 = dt.datetime(2026, 3, 1, 9, 0, 0)


def id_number(body: str) -> str:
    """A valid resident ID number: 17 digits of region and birth date, stdnum's check digit."""
    return body + ric.calc_check_digit(body + "0")


ZHANG = id_number("33010219850101123")  # Hangzhou
LI = id_number("11010119900307001")  # Beijing
WANG = id_number("33020319901111002")  # Ningbo


def make_hub(url: str, policy: Policy = POLICY) -> Engine:
    engine = create_engine(url)
    h.metadata.create_all(engine)
    with engine.begin() as conn:
        h.install(conn, policy)
        record_policy(conn, policy)
    return engine


@pytest.fixture
def hub(db_url: str) -> Iterator[Engine]:
    engine = make_hub(db_url)
    yield engine
    engine.dispose()


def add_node(engine: Engine, node_id: str, city: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(h.nodes.insert().values(node_id=node_id, city_code=city, registered_at=T0))


def submit(
    engine: Engine,
    node_id: str,
    changes: Sequence[Change],
    *,
    first_seq: int | None = None,
    last_seq: int | None = None,
    rows: bool = False,
) -> int:
    """Store a batch in the inbox as the submit path does; return its batch_id.

    As one payload (a city of today), or with `rows` one inbox row per change (a city of
    issue 12, whose batches a hub still applies).
    """
    first = first_seq if first_seq is not None else min(c.seq for c in changes)
    last = last_seq if last_seq is not None else max(c.seq for c in changes)
    batch = make_batch(node_id, first, last, changes)
    with engine.begin() as conn:
        batch_id = conn.execute(
            h.batches.insert()
            .values(
                node_id=node_id,
                first_seq=first,
                last_seq=last,
                row_count=batch.row_count,
                checksum=batch.checksum,
                received_at=T0,
                status="pending",
                payload=None if rows else batch.wire_json,
            )
            .returning(h.batches.c.batch_id)
        ).scalar_one()
        if rows:
            conn.execute(
                h.batch_rows.insert(),
                [
                    {
                        "batch_id": batch_id,
                        "ord": i,
                        "seq": c.seq,
                        "table_name": c.table,
                        "op": c.op,
                        "row_key": c.key,
                        "row_data": c.row,
                    }
                    for i, c in enumerate(changes)
                ],
            )
        conn.execute(h.nodes.update().where(h.nodes.c.node_id == node_id).values(received_seq=last))
    return int(batch_id)


def customer(
    customer_id: str,
    number: str,
    *,
    at: dt.datetime = T0,
    **fields: Any,
) -> dict[str, Any]:
    """A customer row as a city sends it (public columns only, JSON-friendly values)."""
    row: dict[str, Any] = {
        "customer_id": customer_id,
        "customer_type": "individual",
        "name": "张三",
        "id_type": "ric",
        "id_number": number,
        "phone": "13800000000",
        "address": "杭州市西湖区",
        "home_city": "3301",
        "status": "active",
        "risk_level": 2,
        "risk_tags": [],
        "credit_limit": "50000.00",
        "created_at": "2020-01-01 08:00:00",
        "updated_at": at.isoformat(sep=" "),
    }
    row.update(fields)
    return row


def loan(loan_id: str, customer_id: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "loan_id": loan_id,
        "customer_id": customer_id,
        "product": "mortgage",
        "principal": "1000000.00",
        "balance": 812345.67,
        "interest_rate": "0.0425",
        "five_class": "normal",
        "overdue_days": 0,
        "issued_on": "2021-06-01",
        "maturity_on": "2051-06-01",
        "collateral": "房产",
        "updated_at": "2026-03-01T09:00:00",
    }
    row.update(fields)
    return row


def up(seq: int, table: str, row: dict[str, Any], key: str | None = None) -> Change:
    key_col = key or POLICY.table(table).primary_key[0]
    return Change(seq, table, UPSERT, {key_col: row[key_col]}, row)


def rm(seq: int, table: str, key: dict[str, Any]) -> Change:
    return Change(seq, table, DELETE, key, None)


def rows(conn: Connection, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(table).where(*where)).mappings()]


def goldens(engine: Engine, policy: Policy = POLICY) -> list[dict[str, Any]]:
    g = golden_table(policy, policy.table("customers"))
    with engine.connect() as conn:
        return rows(conn, g)


def golden_of(engine: Engine, number: str) -> dict[str, Any]:
    (found,) = [g for g in goldens(engine) if g["id_number"] == number]
    return found


def sources(engine: Engine, table: str = "customers") -> list[dict[str, Any]]:
    src = source_table(POLICY, POLICY.table(table))
    with engine.connect() as conn:
        return rows(conn, src)


def actions(engine: Engine, action: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return query(conn, action=action)


def open_conflicts(engine: Engine) -> list[dict[str, Any]]:
    from syncd.hub.conflicts import list_conflicts

    with engine.connect() as conn:
        return list_conflicts(conn)


def two_cities(engine: Engine) -> None:
    add_node(engine, "hz", "3301")
    add_node(engine, "nb", "3302")


# --- tests --------------------------------------------------------------------------------


def test_applied_rows_land_typed_with_audit(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    submit(
        hub,
        "hz",
        [
            up(1, "customers", customer("c1", ZHANG, risk_tags=["vip"])),
            up(2, "loans", loan("l1", "c1")),
        ],
        last_seq=3,
    )
    summary = apply_pending(hub, POLICY)
    assert (summary.batches, summary.applied, summary.quarantined, summary.refused) == (1, 2, 0, 0)

    (src,) = sources(hub)
    assert src["origin_node"] == "hz"
    assert src["credit_limit"] == Decimal("50000.00")
    assert src["created_at"] == dt.datetime(2020, 1, 1, 8, 0)
    assert src["risk_tags"] == ["vip"]
    assert (src["_seq"], src["_deleted"]) == (1, False)
    golden = golden_of(hub, ZHANG)
    assert golden["name"] == "张三"
    assert golden["credit_limit"] == Decimal("50000.00")
    assert golden["_sources"] == 1
    assert golden["_deleted"] is False
    (ln,) = sources(hub, "loans")
    assert ln["balance"] == Decimal("812345.67")
    assert ln["interest_rate"] == Decimal("0.0425")
    assert ln["issued_on"] == dt.date(2021, 6, 1)
    assert ln["updated_at"] == dt.datetime(2026, 3, 1, 9, 0)

    with hub.connect() as conn:
        node = conn.execute(sa.select(h.nodes).where(h.nodes.c.node_id == "hz")).one()
        batch = conn.execute(sa.select(h.batches)).one()
        assert verify(conn).ok
    assert node.applied_seq == 3
    assert node.applied_at is not None
    assert batch.status == "applied"
    assert batch.stats["applied"] == 2
    applied = actions(hub, Action.ROW_APPLIED)
    assert [(a["table_name"], a["row_key"]) for a in applied] == [
        ("customers", {"customer_id": "c1"}),
        ("loans", {"loan_id": "l1"}),
    ]
    assert applied[0]["detail"]["golden_id"] == golden["golden_id"]
    (done,) = actions(hub, Action.BATCH_APPLIED)
    assert done["detail"]["applied"] == 2
    assert done["detail"]["checksum"] == batch.checksum


def test_bad_national_id_is_quarantined_and_the_rest_applies(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    bad = ZHANG[:-1] + ("0" if ZHANG[-1] != "0" else "1")
    submit(
        hub,
        "hz",
        [
            up(1, "customers", customer("c1", LI)),
            up(2, "customers", customer("c2", bad)),
            up(3, "customers", customer("c3", WANG, risk_level=9)),
            up(4, "loans", loan("l2", "c2")),
        ],
    )
    summary = apply_pending(hub, POLICY)
    assert (summary.applied, summary.quarantined) == (2, 2)
    assert sorted(s["customer_id"] for s in sources(hub)) == ["c1"]
    assert [ln["loan_id"] for ln in sources(hub, "loans")] == ["l2"]

    from syncd.hub.quarantine import list_entries

    with hub.connect() as conn:
        entries = list_entries(conn)
    assert [e["row_key"] for e in entries] == [{"customer_id": "c2"}, {"customer_id": "c3"}]
    reason = entries[0]["reason"]
    assert reason.startswith("id_number: not a valid Chinese resident identity card number")
    assert bad not in reason  # the audit log keeps reasons forever: never an ID number
    assert "check digit" in reason
    assert entries[1]["reason"] == "risk_level: input should be less than or equal to 5"
    assert entries[0]["row_data"]["name"] == "张三"
    assert entries[0]["status"] == "open"
    quarantined = actions(hub, Action.QUARANTINED)
    assert [q["detail"]["reason"] for q in quarantined] == [e["reason"] for e in entries]


def test_stale_version_is_ignored_and_audited(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    submit(hub, "hz", [up(5, "customers", customer("c1", LI, phone="111"))], first_seq=1)
    apply_pending(hub, POLICY)
    submit(
        hub, "hz", [up(3, "customers", customer("c1", LI, phone="222"))], first_seq=6, last_seq=6
    )
    summary = apply_pending(hub, POLICY)
    assert (summary.applied, summary.stale) == (0, 1)
    (src,) = sources(hub)
    assert (src["phone"], src["_seq"]) == ("111", 5)
    (stale,) = actions(hub, Action.STALE)
    assert stale["row_key"] == {"customer_id": "c1"}
    assert stale["detail"] == {"seq": 3, "op": "upsert", "stored_seq": 5}


def test_sovereignty_refusals_are_never_stored(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    secret = "客户私下透露的家庭矛盾"
    opportunity = {"opportunity_id": "o1", "customer_id": "c1", "notes": secret}
    batch_id = submit(
        hub,
        "hz",
        [
            Change(1, "opportunities", UPSERT, {"opportunity_id": "o1"}, opportunity),
            up(2, "customers", customer("c1", LI, rm_notes=secret)),
            up(3, "customers", customer("c2", ZHANG, status="prospect", name="潜在客户甲")),
            Change(4, "payroll", UPSERT, {"id": 1}, {"id": 1, "salary": secret}),
            up(5, "customers", customer("c3", WANG)),
        ],
    )
    summary = apply_pending(hub, POLICY)
    assert (summary.applied, summary.refused, summary.quarantined) == (1, 4, 0)
    assert [s["customer_id"] for s in sources(hub)] == ["c3"]
    assert [g["id_number"] for g in goldens(hub)] == [WANG]

    refused = actions(hub, Action.REFUSED_ROW)
    reasons = {r["table_name"]: [] for r in refused}
    for r in refused:
        reasons[r["table_name"]].append(r["detail"]["reason"])
    assert reasons["opportunities"] == ["table opportunities is local to the city"]
    assert reasons["payroll"] == ["table 'payroll' is not declared in the policy"]
    rm_notes, prospect = reasons["customers"]
    assert "rm_notes excluded from customers" in rm_notes
    assert prospect == "row fails the row filter of customers (status)"
    assert [r["row_key"] for r in refused if r["table_name"] == "customers"] == [
        {"customer_id": "c1"},
        {"customer_id": "c2"},
    ]
    with hub.connect() as conn:
        everything = json.dumps(query(conn), ensure_ascii=False, default=str)
        kept = conn.execute(
            sa.select(h.batches.c.payload).where(h.batches.c.batch_id == batch_id)
        ).scalar_one()
        quarantined = conn.execute(sa.select(sa.func.count()).select_from(h.quarantine))
        assert quarantined.scalar_one() == 0
    assert secret not in everything
    assert "潜在客户甲" not in everything
    # The inbox keeps nothing of a refused row either: only the applied row's data remains.
    assert secret not in kept
    assert "潜在客户甲" not in kept
    assert WANG in kept


def test_golden_record_of_a_customer_in_two_cities(hub: Engine) -> None:
    two_cities(hub)
    later = T0 + dt.timedelta(hours=2)
    hz = customer(
        "hz-9",
        ZHANG,
        name="张三",
        phone="13800000001",
        risk_tags=["overdue"],
        risk_level=2,
        customer_type="individual",
        credit_limit="80000.00",
    )
    nb = customer(
        "nb-4",
        ZHANG,
        at=later,
        name="张叁",
        phone="13900000002",
        risk_tags=["guarantor", "overdue"],
        risk_level=4,
        customer_type="corporate",
        credit_limit="50000.00",
        created_at="2018-05-05 10:00:00",
    )
    submit(hub, "hz", [up(1, "customers", hz)])
    submit(hub, "nb", [up(7, "customers", nb)])
    summary = apply_pending(hub, POLICY)
    assert summary.conflicts_opened == 1

    golden = golden_of(hub, ZHANG)
    assert golden["_sources"] == 2
    assert golden["phone"] == "13900000002"  # latest
    assert golden["name"] == "张三"  # priority: the home city's (3301) record
    assert golden["risk_tags"] == ["guarantor", "overdue"]  # union
    assert golden["risk_level"] == 4  # max
    assert golden["credit_limit"] == Decimal("80000.00")  # max
    assert golden["created_at"] == dt.datetime(2018, 5, 5, 10, 0)  # min
    assert golden["customer_type"] == "individual"  # manual: the home city's value stays

    (conflict,) = open_conflicts(hub)
    assert conflict["column_name"] == "customer_type"
    assert conflict["golden_id"] == golden["golden_id"]
    assert conflict["identity"] == {"id_type": "ric", "id_number": ZHANG}
    assert conflict["candidates"] == {"hz": "individual", "nb": "corporate"}
    assert conflict["golden_value"] == "individual"
    (opened,) = actions(hub, Action.CONFLICT_OPENED)
    assert opened["detail"]["conflict_id"] == conflict["conflict_id"]
    nb_applied = [a for a in actions(hub, Action.ROW_APPLIED) if a["node_id"] == "nb"]
    disputed = nb_applied[0]["detail"]["disputed"]
    assert disputed["phone"] == {"rule": "latest", "winner": "nb"}
    assert disputed["name"] == {"rule": "priority", "winner": "hz"}
    assert disputed["customer_type"]["rule"] == "manual"

    # The same dispute again opens nothing new; an ended dispute supersedes the conflict.
    submit(hub, "nb", [up(8, "customers", {**nb, "phone": "13900000003"})])
    assert apply_pending(hub, POLICY).conflicts_opened == 0
    assert len(open_conflicts(hub)) == 1
    submit(hub, "nb", [up(9, "customers", {**nb, "customer_type": "individual"})])
    apply_pending(hub, POLICY)
    assert open_conflicts(hub) == []


def test_source_delete_recomputes_and_last_delete_marks_golden_deleted(hub: Engine) -> None:
    two_cities(hub)
    submit(hub, "hz", [up(1, "customers", customer("a", LI, risk_level=1))])
    submit(hub, "nb", [up(1, "customers", customer("b", LI, risk_level=5))])
    apply_pending(hub, POLICY)
    assert golden_of(hub, LI)["risk_level"] == 5

    submit(hub, "nb", [rm(2, "customers", {"customer_id": "b"})])
    apply_pending(hub, POLICY)
    golden = golden_of(hub, LI)
    assert (golden["risk_level"], golden["_sources"], golden["_deleted"]) == (1, 1, False)
    tomb = next(s for s in sources(hub) if s["origin_node"] == "nb")
    assert (tomb["_deleted"], tomb["_seq"], tomb["risk_level"]) == (True, 2, 5)

    submit(hub, "hz", [rm(2, "customers", {"customer_id": "a"})])
    apply_pending(hub, POLICY)
    golden = golden_of(hub, LI)
    assert (golden["_sources"], golden["_deleted"]) == (0, True)
    assert golden["name"] == "张三"  # history stays
    assert len(sources(hub)) == 2


def test_child_before_parent_is_kept_then_linked(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    submit(hub, "hz", [up(1, "loans", loan("l1", "c1")), up(2, "deposit_accounts", deposit())])
    apply_pending(hub, POLICY)
    assert [ln["loan_id"] for ln in sources(hub, "loans")] == ["l1"]
    with hub.connect() as conn:
        assert orphans(conn, POLICY) == {
            "deposit_accounts": 1,
            "loans": 1,
            "intermediary_business": 0,
        }
        assert linked_golden(conn, "l1") is None

    submit(hub, "hz", [up(3, "customers", customer("c1", ZHANG))])
    apply_pending(hub, POLICY)
    golden_id = golden_of(hub, ZHANG)["golden_id"]
    with hub.connect() as conn:
        assert orphans(conn, POLICY)["loans"] == 0
        assert linked_golden(conn, "l1") == golden_id


def deposit() -> dict[str, Any]:
    return {
        "account_id": "d1",
        "customer_id": "c1",
        "product": "fixed",
        "currency": "CNY",
        "balance": "200000.00",
        "interest_rate": "0.0175",
        "opened_on": "2024-01-02",
        "maturity_on": None,
        "status": "open",
        "updated_at": "2026-03-01 09:00:00",
    }


def linked_golden(conn: Connection, loan_id: str) -> int | None:
    """The golden customer a loan belongs to: (origin, customer_id) → source → identity."""
    loans = source_table(POLICY, POLICY.table("loans"))
    src = source_table(POLICY, POLICY.table("customers"))
    golden = golden_table(POLICY, POLICY.table("customers"))
    stmt = (
        sa.select(golden.c.golden_id)
        .select_from(
            loans.join(
                src,
                sa.and_(
                    src.c.origin_node == loans.c.origin_node,
                    src.c.customer_id == loans.c.customer_id,
                ),
            ).join(
                golden,
                sa.and_(golden.c.id_type == src.c.id_type, golden.c.id_number == src.c.id_number),
            )
        )
        .where(loans.c.loan_id == loan_id)
    )
    found = conn.execute(stmt).scalar()
    return None if found is None else int(found)


@pytest.mark.parametrize("stored", ["payload", "rows"])
def test_altered_batch_is_refused(hub: Engine, stored: str) -> None:
    add_node(hub, "hz", "3301")
    change = up(1, "customers", customer("c1", LI, credit_limit="100.00"))
    batch_id = submit(hub, "hz", [change], rows=stored == "rows")
    with hub.begin() as conn:
        tampered = customer("c1", LI, credit_limit="99999999.00")
        if stored == "rows":
            conn.execute(
                h.batch_rows.update()
                .where(h.batch_rows.c.batch_id == batch_id)
                .values(row_data=tampered)
            )
        else:
            text = make_batch("hz", 1, 1, [up(1, "customers", tampered)]).wire_json
            conn.execute(
                h.batches.update().where(h.batches.c.batch_id == batch_id).values(payload=text)
            )
    summary = apply_pending(hub, POLICY)
    assert (summary.batches, summary.batches_refused, summary.applied) == (0, 1, 0)
    assert sources(hub) == []
    with hub.connect() as conn:
        batch = conn.execute(sa.select(h.batches)).one()
        node = conn.execute(sa.select(h.nodes)).one()
    assert batch.status == "refused"
    assert node.applied_seq == 0
    (refused,) = actions(hub, Action.BATCH_REFUSED)
    assert refused["batch_id"] == batch_id
    assert "altered" in refused["detail"]["reason"]
    # Refused is final: the next cycle does not look at it again.
    assert apply_pending(hub, POLICY).batches_refused == 0


def test_unaudited_inbox_events_become_audit_entries(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    with hub.begin() as conn:
        conn.execute(
            h.inbox_events.insert(),
            [
                {
                    "node_id": "hz",
                    "kind": "duplicate",
                    "first_seq": 1,
                    "last_seq": 4,
                    "checksum": "ab" * 32,
                    "reason": "batch already received",
                    "at": T0,
                },
                {
                    "node_id": "hz",
                    "kind": "refused",
                    "first_seq": 2,
                    "last_seq": 3,
                    "checksum": "cd" * 32,
                    "reason": "batch 2..3 overlaps",
                    "at": T0,
                },
            ],
        )
    assert apply_pending(hub, POLICY).events == 2
    (dup,) = actions(hub, Action.BATCH_DUPLICATE)
    (ref,) = actions(hub, Action.BATCH_REFUSED)
    assert (dup["node_id"], dup["detail"]["last_seq"]) == ("hz", 4)
    assert ref["detail"]["reason"] == "batch 2..3 overlaps"
    with hub.connect() as conn:
        flags = conn.execute(sa.select(h.inbox_events.c.audited)).scalars().all()
    assert flags == [True, True]
    assert apply_pending(hub, POLICY).events == 0


def test_identity_change_moves_a_source_between_goldens(hub: Engine) -> None:
    two_cities(hub)
    submit(hub, "hz", [up(1, "customers", customer("a", LI, phone="1"))])
    submit(hub, "nb", [up(1, "customers", customer("b", LI, phone="2", at=T0 + dt.timedelta(1)))])
    apply_pending(hub, POLICY)
    assert golden_of(hub, LI)["_sources"] == 2

    # A typo fixed in Ningbo: its record is another person's.
    submit(hub, "nb", [up(2, "customers", customer("b", WANG, phone="2"))])
    apply_pending(hub, POLICY)
    old, new = golden_of(hub, LI), golden_of(hub, WANG)
    assert (old["_sources"], old["phone"], old["_deleted"]) == (1, "1", False)
    assert (new["_sources"], new["phone"]) == (1, "2")

    submit(hub, "hz", [up(2, "customers", customer("a", WANG, phone="1"))])
    apply_pending(hub, POLICY)
    old, new = golden_of(hub, LI), golden_of(hub, WANG)
    assert (old["_sources"], old["_deleted"]) == (0, True)
    assert new["_sources"] == 2


def test_a_later_valid_version_supersedes_open_quarantine(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    submit(hub, "hz", [up(1, "customers", customer("c1", LI, risk_level=7))])
    apply_pending(hub, POLICY)
    submit(hub, "hz", [up(2, "customers", customer("c1", LI, risk_level=3))])
    apply_pending(hub, POLICY)
    with hub.connect() as conn:
        (entry,) = conn.execute(sa.select(h.quarantine)).all()
    assert entry.status == "superseded"
    assert entry.closed_at is not None
    assert len(actions(hub, "quarantine_superseded")) == 1


def test_batches_wait_for_their_nodes_earlier_batches(hub: Engine) -> None:
    two_cities(hub)
    submit(hub, "hz", [up(1, "customers", customer("a", LI, phone="1"))])
    submit(hub, "hz", [up(2, "customers", customer("a", LI, phone="2"))])
    submit(hub, "nb", [up(1, "customers", customer("b", ZHANG))])
    first = apply_pending(hub, POLICY, max_batches=2)
    assert (first.batches, first.waiting) == (2, 1)
    # Nodes take turns: both cities have been served before hz's second batch.
    assert {s["origin_node"] for s in sources(hub)} == {"hz", "nb"}
    assert [s["phone"] for s in sources(hub) if s["origin_node"] == "hz"] == ["1"]
    apply_pending(hub, POLICY)
    assert [s["phone"] for s in sources(hub) if s["origin_node"] == "hz"] == ["2"]


def test_nothing_pending_is_a_no_op(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    submit(hub, "hz", [up(1, "customers", customer("c1", LI))])
    apply_pending(hub, POLICY)
    with hub.connect() as conn:
        before = len(query(conn))
    again = apply_pending(hub, POLICY)
    assert again == ApplySummary(duration=again.duration)
    with hub.connect() as conn:
        assert len(query(conn)) == before


def test_validate_row_types_and_reasons() -> None:
    from syncd.core.validate import validate_key, validate_row, validate_value

    customers = POLICY.table("customers")
    typed, reason = validate_row(
        customers,
        customer(
            "c1",
            LI,
            updated_at="2026-03-01T17:00:00+08:00",
            credit_limit=Decimal("12.5"),
            risk_level="3",
        ),
    )
    assert reason is None
    assert typed is not None
    assert typed["updated_at"] == dt.datetime(2026, 3, 1, 9, 0)  # naive UTC
    assert str(typed["credit_limit"]) == "12.50"  # quantized to the column's scale
    assert typed["risk_level"] == 3
    _, reason = validate_row(customers, customer("c1", LI, credit_limit="1.001", name=None))
    assert reason == "name: must not be null; credit_limit: more than 2 decimal places"
    _, reason = validate_row(customers, customer("c1", LI, created_at="yesterday"))
    assert reason is not None
    assert reason.startswith("created_at: input should be a valid datetime")
    _, reason = validate_row(customers, customer("c1", "91330100MA27XXXX0X", id_type="uscc"))
    assert reason is not None
    assert reason.startswith("id_number: not a valid unified social credit code")
    typed, _ = validate_row(customers, customer("c1", " e1234 5678", id_type="passport"))
    assert typed is not None
    assert typed["id_number"] == "E12345678"  # normalised: the identity the hub merges on
    _, reason = validate_row(customers, customer("c1", "", id_type="passport"))
    assert reason == "id_number: not a valid passport number: empty"
    assert validate_key(customers, {"customer_id": None}) == (
        None,
        "customer_id: must not be null",
    )
    assert validate_value(customers, "risk_tags", '["a", "b"]') == (["a", "b"], None)
    assert validate_value(customers, "risk_level", "0")[1] == (
        "risk_level: input should be greater than or equal to 1"
    )


def test_a_failing_batch_rolls_back_whole_and_other_nodes_go_on(
    hub: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import syncd.hub.apply as apply_module
    from syncd.core.errors import TransientError

    two_cities(hub)
    submit(hub, "hz", [up(1, "customers", customer("a", LI)), up(2, "loans", loan("l1", "a"))])
    submit(hub, "hz", [up(3, "customers", customer("a", LI, phone="2"))])
    submit(hub, "nb", [up(1, "customers", customer("b", ZHANG))])
    finish = apply_module._finish_batch

    def crash(conn: Connection, head: Any, *args: Any) -> None:
        if head.node_id == "hz":
            raise TransientError("connection lost")
        finish(conn, head, *args)

    monkeypatch.setattr(apply_module, "_finish_batch", crash)
    summary = apply_pending(hub, POLICY, max_backoff=0)
    assert list(summary.failed) == ["hz"]
    assert "connection lost" in summary.failed["hz"]
    assert summary.by_node["nb"]["applied"] == 1
    assert [s["origin_node"] for s in sources(hub)] == ["nb"]
    assert sources(hub, "loans") == []
    assert [a["node_id"] for a in actions(hub, Action.ROW_APPLIED)] == ["nb"]
    with hub.connect() as conn:
        statuses = conn.execute(
            sa.select(h.batches.c.node_id, h.batches.c.status).order_by(h.batches.c.batch_id)
        ).all()
    assert [tuple(s) for s in statuses] == [("hz", "pending"), ("hz", "pending"), ("nb", "applied")]

    with hub.connect() as conn:
        failing = conn.execute(
            sa.select(h.nodes.c.failures, h.nodes.c.last_error).where(h.nodes.c.node_id == "hz")
        ).one()
    assert failing.failures == 1
    assert "connection lost" in failing.last_error

    monkeypatch.setattr(apply_module, "_finish_batch", finish)
    assert apply_pending(hub, POLICY, max_backoff=0).batches == 2
    assert [s["phone"] for s in sources(hub) if s["origin_node"] == "hz"] == ["2"]
    with hub.connect() as conn:
        cleared = conn.execute(
            sa.select(h.nodes.c.failures, h.nodes.c.last_error).where(h.nodes.c.node_id == "hz")
        ).one()
    assert tuple(cleared) == (0, None)


def test_concurrent_appliers_apply_each_batch_once(pg_url: str) -> None:
    import threading

    engine = make_hub(pg_url)
    try:
        two_cities(engine)
        for i in range(1, 9):
            node = "hz" if i % 2 else "nb"
            submit(engine, node, [up(i, "customers", customer(f"{node}-{i}", LI, phone=str(i)))])
        errors: list[BaseException] = []

        def run() -> None:
            try:
                apply_pending(engine, POLICY)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(actions(engine, Action.BATCH_APPLIED)) == 8
        assert golden_of(engine, LI)["_sources"] == 8
        with engine.connect() as conn:
            assert verify(conn).ok
    finally:
        engine.dispose()
