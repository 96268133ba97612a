"""An update that changes a row's primary key: the old key's delete is captured and shipped."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.city.capture import CaptureReport
from syncd.city.crm import create_crm_schema
from syncd.city.push import cut_batch, read_changes
from syncd.city.triggers import KEY_SUFFIX, trigger_name
from syncd.core.batch import DELETE, UPSERT, Captured, to_change
from syncd.core.policy import Policy, SchemaProblem, load_policy, parse_policy
from syncd.hub.apply import apply_pending
from syncd.store import hub_tables as h
from syncd.store.city_tables import changelog
from syncd.store.city_tables import metadata as city_metadata
from syncd.store.db import create_engine
from tests.conftest import POLICY
from tests.e2e.cluster import Cluster
from tests.integration.test_capture import (
    PUBLIC,
    insert,
    install,
    problems,
    schema_problems,
    trigger_catalog,
)
from tests.integration.test_push import Pair, make_pair

# A composite primary key, a row filter and an excluded column, in a policy of its own.
COMPOSITE = parse_policy(
    {
        "version": 1,
        "tables": {
            "branch_limits": {
                "class": "public",
                "primary_key": ["region", "limit_code"],
                "columns": {
                    "region": {"type": "string", "length": 8, "nullable": False},
                    "limit_code": {"type": "string", "length": 16, "nullable": False},
                    "amount": {"type": "decimal", "precision": 18, "scale": 2},
                    "state": {"type": "string", "length": 16, "nullable": False},
                    "memo": {"type": "text"},
                },
                "exclude": ["memo"],
                "filter": [{"column": "state", "op": "eq", "value": "open"}],
            },
        },
    },
    "composite",
)


def city(db_url: str, policy: Policy) -> sa.Engine:
    """A city database with the policy's tables, the changelog and the capture triggers."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        create_crm_schema(conn, policy)
        city_metadata.create_all(conn)
    install(engine, policy)
    return engine


@pytest.fixture
def crm(db_url: str) -> Iterator[sa.Engine]:
    engine = city(db_url, load_policy(POLICY))
    yield engine
    engine.dispose()


@pytest.fixture
def limits(db_url: str) -> Iterator[sa.Engine]:
    engine = city(db_url, COMPOSITE)
    yield engine
    engine.dispose()


def last_seq(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(changelog.c.seq))).scalar_one() or 0)


def changes_of(engine: sa.Engine, statement: str) -> list[Captured]:
    """What one statement, in a transaction of its own, adds to the changelog."""
    after = last_seq(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)
    with engine.connect() as conn:
        return read_changes(conn, after, None, 1000)


def ops(captured: list[Captured], *key: str) -> list[tuple[str, tuple[Any, ...]]]:
    """(op, key) of each captured row, sorted: a statement's D and U may come in either order."""
    return sorted((c.op, tuple(c.image[k] for k in key)) for c in captured)


def test_key_change_logs_a_delete_of_the_old_key(crm: sa.Engine) -> None:
    policy = load_policy(POLICY)
    with crm.begin() as conn:
        insert(conn, "loans", "L1")
        insert(conn, "customers", "C1")
        insert(conn, "customers", "P1", status="prospect")

    moved = changes_of(crm, "UPDATE loans SET loan_id = 'L2' WHERE loan_id = 'L1'")

    assert ops(moved, "loan_id") == [("D", ("L1",)), ("U", ("L2",))]
    loans = policy.table("loans")
    for row in moved:
        # The old row in full, minus what never leaves the city, like any delete's image.
        assert set(row.image) == set(loans.public_columns)
        assert row.image["five_class"] == "normal"
        assert "SECRET" not in json.dumps(row.image, default=str)
        assert row.old_filter is None
    shipped = [to_change(policy, c) for c in moved]
    assert sorted((c.op, c.key["loan_id"]) for c in shipped if c is not None) == [
        (DELETE, "L1"),
        (UPSERT, "L2"),
    ]

    # On a filtered table the old key's delete ships only if the hub could have had the row.
    active = changes_of(crm, "UPDATE customers SET customer_id = 'C2' WHERE customer_id = 'C1'")
    prospect = changes_of(crm, "UPDATE customers SET customer_id = 'P2' WHERE customer_id = 'P1'")
    assert ops(active, "customer_id") == [("D", ("C1",)), ("U", ("C2",))]
    assert ops(prospect, "customer_id") == [("D", ("P1",)), ("U", ("P2",))]
    customers = policy.table("customers")
    for row in active + prospect:
        assert set(row.image) == set(customers.public_columns)
        assert "rm_notes" not in row.image
    shipped = [to_change(policy, c) for c in active + prospect]
    assert sorted((c.op, c.key["customer_id"]) for c in shipped if c is not None) == [
        (DELETE, "C1"),
        (UPSERT, "C2"),
    ]


def test_an_ordinary_update_logs_nothing_extra(crm: sa.Engine) -> None:
    with crm.begin() as conn:
        for table in PUBLIC:
            insert(conn, table, "K1")
    for statement in (
        "UPDATE loans SET five_class = 'loss' WHERE loan_id = 'K1'",
        # The key is set but keeps its value: not a key change.
        "UPDATE loans SET loan_id = 'K1', overdue_days = 3 WHERE loan_id = 'K1'",
        "UPDATE customers SET customer_id = customer_id, status = 'dormant'",
        "UPDATE deposit_accounts SET status = 'frozen'",
        "UPDATE intermediary_business SET business_id = business_id",
    ):
        assert [c.op for c in changes_of(crm, statement)] == ["U"], statement


def test_composite_key_change_logs_a_delete_of_the_old_key(limits: sa.Engine) -> None:
    with limits.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO branch_limits (region, limit_code, amount, state, memo) VALUES"
            " ('R1', 'A', '100.00', 'open', 'SECRET-A'), ('R1', 'B', '200.00', 'closed',"
            " 'SECRET-B'), ('R7', 'X', '1.00', 'open', 'SECRET-X'),"
            " ('R7', 'Y', '2.00', 'open', 'SECRET-Y')"
        )
    key = ("region", "limit_code")

    def statement(sql: str) -> list[tuple[str, tuple[Any, ...]]]:
        captured = changes_of(limits, sql)
        for row in captured:
            assert set(row.image) == set(COMPOSITE.table("branch_limits").public_columns)
            assert "SECRET" not in json.dumps(row.image, default=str)
        return ops(captured, *key)

    assert statement("UPDATE branch_limits SET amount = 5, memo = 'SECRET-2'") == [
        ("U", k) for k in (("R1", "A"), ("R1", "B"), ("R7", "X"), ("R7", "Y"))
    ]
    assert statement("UPDATE branch_limits SET region = 'R1' WHERE region = 'R1'") == [
        ("U", ("R1", "A")),
        ("U", ("R1", "B")),
    ]
    # Either key column alone, both together, and several rows in one statement.
    assert statement("UPDATE branch_limits SET limit_code = 'A2' WHERE limit_code = 'A'") == [
        ("D", ("R1", "A")),
        ("U", ("R1", "A2")),
    ]
    assert statement("UPDATE branch_limits SET region = 'R2' WHERE limit_code = 'A2'") == [
        ("D", ("R1", "A2")),
        ("U", ("R2", "A2")),
    ]
    closed = changes_of(
        limits, "UPDATE branch_limits SET region = 'R3', limit_code = 'B3' WHERE state = 'closed'"
    )
    assert ops(closed, *key) == [("D", ("R1", "B")), ("U", ("R3", "B3"))]
    assert statement("UPDATE branch_limits SET region = 'R8' WHERE region = 'R7'") == [
        ("D", ("R7", "X")),
        ("D", ("R7", "Y")),
        ("U", ("R8", "X")),
        ("U", ("R8", "Y")),
    ]
    # The old row failed the filter: the hub never had it, so its delete does not leave.
    assert all(to_change(COMPOSITE, c) is None for c in closed)

    before = trigger_catalog(limits)
    assert install(limits, COMPOSITE) == CaptureReport(kept=("branch_limits",))
    assert trigger_catalog(limits) == before
    assert problems(limits, COMPOSITE) == []


def test_key_trigger_is_verified_and_reconciled_like_the_main_trigger(
    crm: sa.Engine,
) -> None:
    policy = load_policy(POLICY)
    key_trigger = trigger_name("loans", KEY_SUFFIX)
    with crm.begin() as conn:
        if crm.dialect.name == "postgresql":
            conn.exec_driver_sql(f"DROP TRIGGER {key_trigger} ON loans")
            conn.exec_driver_sql(
                f"ALTER TABLE customers DISABLE TRIGGER {trigger_name('customers', KEY_SUFFIX)}"
            )
        else:
            conn.exec_driver_sql(f"DROP TRIGGER {key_trigger}")
    expected = [f"loans: capture trigger {key_trigger} is missing"]
    if crm.dialect.name == "postgresql":
        expected.insert(
            0,
            f"customers: capture trigger {trigger_name('customers', KEY_SUFFIX)}"
            " is out of date, disabled or altered",
        )
    assert problems(crm, policy) == expected
    assert SchemaProblem(
        "loans", None, f"capture trigger {key_trigger} is missing"
    ) in schema_problems(crm, policy)

    report = install(crm, policy)

    changed = ("customers", "loans") if crm.dialect.name == "postgresql" else ("loans",)
    assert report.replaced == changed
    assert report.added == report.dropped == ()
    assert set(report.kept) == set(PUBLIC) - set(changed)
    assert problems(crm, policy) == []
    assert schema_problems(crm, policy) == []
    assert install(crm, policy) == CaptureReport(kept=PUBLIC)
    with crm.begin() as conn:
        insert(conn, "loans", "L1")
    assert ops(changes_of(crm, "UPDATE loans SET loan_id = 'L2'"), "loan_id") == [
        ("D", ("L1",)),
        ("U", ("L2",)),
    ]


def test_key_changed_there_and_back_in_one_batch(crm: sa.Engine) -> None:
    """A→B then B→A: coalescing keeps each key's last change, so A stays and B goes."""
    policy = load_policy(POLICY)
    with crm.begin() as conn:
        insert(conn, "loans", "A")
    after = last_seq(crm)
    changes_of(crm, "UPDATE loans SET loan_id = 'B' WHERE loan_id = 'A'")
    changes_of(crm, "UPDATE loans SET loan_id = 'A' WHERE loan_id = 'B'")
    with crm.connect() as conn:
        captured = read_changes(conn, after, None, 1000)
    assert len(captured) == 4

    batch, used = cut_batch("city-3301", policy, captured, 10**6)

    assert used == 4
    assert {c.key["loan_id"]: c.op for c in batch.changes} == {"A": UPSERT, "B": DELETE}


# --- city → hub --------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path, db_url: str, pg_url_factory: Any) -> Iterator[Pair]:
    # A hub of the city's dialect, as in test_push: a PostgreSQL city's decimals do not yet
    # pass a SQLite hub's submit (a separate issue).
    hub_url = (
        f"sqlite:///{tmp_path / 'hub.db'}" if db_url.startswith("sqlite") else pg_url_factory()
    )
    p = make_pair(tmp_path, db_url, hub_url)
    yield p
    p.pusher.hub.close()
    p.pusher.city.dispose()


def sync(pair: Pair, hub: sa.Engine) -> None:
    """Push everything the city has logged, then apply it at the hub."""
    target = last_seq(pair.pusher.city)
    deadline = time.monotonic() + 30
    # Other tests' transactions on a shared PostgreSQL may hold the gap-safe horizon back.
    while pair.pusher.push_once().acked_seq < target:
        assert time.monotonic() < deadline, "the city did not push all its changes"
    apply_pending(hub, pair.pusher.policy)


def hub_keys(hub: sa.Engine, table: str, *, live: bool = True) -> set[str]:
    """Keys of the hub's source rows of a table: live ones, or tombstones too."""
    policy = load_policy(POLICY)
    source = h.policy_metadata(policy).tables[h.source_table_name(policy.table(table))]
    query = sa.select(source.c[policy.table(table).primary_key[0]])
    if live:
        query = query.where(source.c._deleted.is_(False))
    with hub.connect() as conn:
        return {str(r) for (r,) in conn.execute(query)}


def test_hub_drops_the_old_key_after_a_key_change(tmp_path: Path, db_url: str, pair: Pair) -> None:
    hub = create_engine(pair.hub_url)
    compare = tmp_path / "compare"
    compare.mkdir()
    cluster = Cluster(compare, pair.hub_url, {"city-3301": db_url})
    try:
        with pair.pusher.city.begin() as conn:
            for cid in ("C1", "C2"):
                insert(conn, "customers", cid)
            insert(conn, "customers", "P1", status="prospect")
            for lid in ("L1", "A"):
                insert(conn, "loans", lid)
        sync(pair, hub)
        assert hub_keys(hub, "loans") == {"L1", "A"}
        assert hub_keys(hub, "customers") == {"C1", "C2"}

        with pair.pusher.city.begin() as conn:
            conn.exec_driver_sql("UPDATE loans SET loan_id = 'L2' WHERE loan_id = 'L1'")
            conn.exec_driver_sql("UPDATE customers SET customer_id = 'C3' WHERE customer_id = 'C2'")
            conn.exec_driver_sql("UPDATE customers SET customer_id = 'P2' WHERE customer_id = 'P1'")
        # There and back before the next push: the final state is right however it is cut
        # into batches (test_key_changed_there_and_back_in_one_batch pins the one-batch case).
        with pair.pusher.city.begin() as conn:
            conn.exec_driver_sql("UPDATE loans SET loan_id = 'B' WHERE loan_id = 'A'")
        with pair.pusher.city.begin() as conn:
            conn.exec_driver_sql("UPDATE loans SET loan_id = 'A' WHERE loan_id = 'B'")
        sync(pair, hub)

        assert hub_keys(hub, "loans") == {"L2", "A"}
        assert hub_keys(hub, "customers") == {"C1", "C3"}
        # The old keys are tombstones now. The prospect never reached the hub, so neither
        # did the delete of its old key.
        assert {"L1", "B"} >= hub_keys(hub, "loans", live=False) - {"L2", "A"} >= {"L1"}
        assert hub_keys(hub, "customers", live=False) == {"C1", "C2", "C3"}
        assert cluster.expected_sources() == cluster.hub_sources()
    finally:
        hub.dispose()
