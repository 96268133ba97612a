"""Statements that write many rows: captured row by row, with the row filter and key changes.

PostgreSQL captures a statement at once from its transition tables (one trigger call per
statement, old and new rows paired by primary key); SQLite with a trigger call per row. The
changelog must read the same on both, and `init` must convert a city still on the row triggers
of earlier builds.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from syncd.city.capture import CaptureReport
from syncd.city.push import cut_batch
from syncd.core.batch import DELETE, UPSERT, Captured, to_change
from syncd.core.policy import load_policy
from syncd.store.db import create_engine
from tests.conftest import POLICY
from tests.e2e.cluster import Cluster
from tests.integration.test_capture import (
    PUBLIC,
    city_engine,
    insert,
    install,
    logged,
    problems,
    trigger_catalog,
)
from tests.integration.test_capture_key_change import (  # noqa: F401 (the pair fixture)
    changes_of,
    city,
    crm,
    hub_keys,
    pair,
    sync,
)
from tests.integration.test_push import Pair

LEGACY = Path(__file__).parent / "data" / "pg_row_triggers_ddd8ad7.sql"
ACCOUNTS = (
    "INSERT INTO deposit_accounts (account_id, customer_id, product, currency, balance,"
    " interest_rate, opened_on, status, updated_at)"
    " SELECT 'A' || customer_id, customer_id, 'current', 'CNY', '1.00', '0.0100',"
    " '2026-01-02', 'open', '2026-11-26 08:00:00' FROM customers"
)


def shipped(captured: list[Captured]) -> dict[str, str]:
    """What the hub is told per key once the policy is applied (None: nothing leaves)."""
    policy = load_policy(POLICY)
    out: dict[str, str] = {}
    for row in captured:
        change = to_change(policy, row)
        if change is not None:
            out[str(next(iter(change.key.values())))] = change.op
    return out


def by_key(captured: list[Captured], key: str) -> dict[tuple[str, str], Any]:
    """(op, key) → old_filter of each captured row; every pair occurs once."""
    out = {(c.op, str(c.image[key])): c.old_filter for c in captured}
    assert len(out) == len(captured), "a row was captured twice"
    return out


def test_a_multi_row_update_follows_the_row_filter(crm: sa.Engine) -> None:  # noqa: F811
    with crm.begin() as conn:
        for cid, status in (("C1", "active"), ("C2", "prospect"), ("C3", "active")):
            insert(conn, "customers", cid, status=status)
        insert(conn, "customers", "C4", status="prospect")

    captured = changes_of(
        crm,
        "UPDATE customers SET phone = '2', rm_notes = 'SECRET-X', status = CASE customer_id"
        " WHEN 'C1' THEN 'prospect' WHEN 'C2' THEN 'active' ELSE status END",
    )

    # One row per customer; old filter values only where the status changed.
    assert by_key(captured, "customer_id") == {
        ("U", "C1"): {"status": "active"},
        ("U", "C2"): {"status": "prospect"},
        ("U", "C3"): None,
        ("U", "C4"): None,
    }
    assert all(c.image["phone"] == "2" for c in captured)
    assert all("SECRET" not in json.dumps(c.image, default=str) for c in captured)
    # C1 left the filter (a delete), C2 entered it, C3 stays, C4 never leaves the city.
    assert shipped(captured) == {"C1": DELETE, "C2": UPSERT, "C3": UPSERT}


def test_a_multi_row_key_change_deletes_every_old_key(crm: sa.Engine) -> None:  # noqa: F811
    with crm.begin() as conn:
        for lid in ("L1", "L2", "L3"):
            insert(conn, "loans", lid)
        insert(conn, "customers", "C1")
        insert(conn, "customers", "C2", status="prospect")
        insert(conn, "customers", "C3")

    # Two keys move, one row keeps its key; all in one statement.
    moved = changes_of(
        crm,
        "UPDATE loans SET five_class = 'loss', loan_id = CASE loan_id WHEN 'L3' THEN loan_id"
        " ELSE 'N' || loan_id END",
    )
    assert set(by_key(moved, "loan_id")) == {
        ("D", "L1"),
        ("D", "L2"),
        ("U", "NL1"),
        ("U", "NL2"),
        ("U", "L3"),
    }
    for row in moved:
        # A deleted key's image is its old row, public columns only.
        assert row.image["five_class"] == ("normal" if row.op == "D" else "loss")
        assert "approval_memo" not in row.image
    assert shipped(moved) == {
        "L1": DELETE,
        "L2": DELETE,
        "NL1": UPSERT,
        "NL2": UPSERT,
        "L3": UPSERT,
    }

    # On the filtered table, in one statement: a customer that changes key and leaves the
    # filter, a prospect that changes key and enters it, one that changes its key only.
    customers = changes_of(
        crm,
        "UPDATE customers SET customer_id = customer_id || 'X', status = CASE customer_id"
        " WHEN 'C1' THEN 'prospect' WHEN 'C2' THEN 'active' ELSE status END",
    )
    assert set(by_key(customers, "customer_id")) == {
        ("D", "C1"),
        ("D", "C2"),
        ("D", "C3"),
        ("U", "C1X"),
        ("U", "C2X"),
        ("U", "C3X"),
    }
    # The hub had C1 and C3 and drops them; it never had the prospect C2. SQLite's row
    # trigger also sends a delete of C1X (the row's old status passed), which the hub never
    # had either: a no-op there.
    sent = shipped(customers)
    assert sent.pop("C1X", DELETE) == DELETE
    assert sent == {"C1": DELETE, "C3": DELETE, "C2X": UPSERT, "C3X": UPSERT}


def test_keys_shifted_in_one_statement_end_live(crm: sa.Engine) -> None:  # noqa: F811
    """B→C and A→B in one statement: B is deleted as A's old key is, yet B ends live."""
    policy = load_policy(POLICY)
    with crm.begin() as conn:
        # B first: a sequential scan moves it to C before A takes its key (the primary key
        # is checked row by row on both databases).
        insert(conn, "loans", "B")
        insert(conn, "loans", "A")

    shifted = changes_of(
        crm, "UPDATE loans SET loan_id = CASE loan_id WHEN 'A' THEN 'B' WHEN 'B' THEN 'C' END"
    )

    assert sorted((c.op, str(c.image["loan_id"])) for c in shifted) == [
        ("D", "A"),
        ("D", "B"),
        ("U", "B"),
        ("U", "C"),
    ]
    if crm.dialect.name == "postgresql":
        # Row triggers (the old keys' deletes) fire before the statement's update trigger.
        assert max(c.seq for c in shifted if c.op == "D") < min(
            c.seq for c in shifted if c.op == "U"
        )
    batch, _ = cut_batch("city-3301", policy, shifted, 10**6)
    assert {c.key["loan_id"]: c.op for c in batch.changes} == {
        "A": DELETE,
        "B": UPSERT,
        "C": UPSERT,
    }


def test_insert_select_and_delete_of_many_rows(crm: sa.Engine) -> None:  # noqa: F811
    with crm.begin() as conn:
        for i in range(150):
            insert(conn, "customers", f"C{i:03d}")

    inserted = changes_of(crm, ACCOUNTS)
    updated = changes_of(crm, "UPDATE deposit_accounts SET balance = balance + 1")
    deleted = changes_of(crm, "DELETE FROM deposit_accounts WHERE customer_id < 'C100'")
    nothing = changes_of(crm, "UPDATE deposit_accounts SET balance = 0 WHERE account_id = 'none'")

    keys = {f"AC{i:03d}" for i in range(150)}
    for captured, op, expected in (
        (inserted, "I", keys),
        (updated, "U", keys),
        (deleted, "D", {k for k in keys if k < "AC100"}),
    ):
        assert {c.op for c in captured} == {op}
        assert {c.image["account_id"] for c in captured} == expected
        assert len(captured) == len(expected)
        # One sequence number per row, consecutive: the statement's rows in one run.
        seqs = [c.seq for c in captured]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert {Decimal(str(c.image["balance"])) for c in updated} == {Decimal(2)}
    assert nothing == []


def test_pg_upsert_statement_logs_inserts_and_updates(pg_url: str) -> None:
    """INSERT … ON CONFLICT DO UPDATE fires both the insert and the update statement trigger."""
    engine = city(pg_url, load_policy(POLICY))
    with engine.begin() as conn:
        for cid in ("C1", "C2"):
            insert(conn, "customers", cid)
        conn.exec_driver_sql(ACCOUNTS)

    captured = changes_of(
        engine,
        "INSERT INTO deposit_accounts AS d (account_id, customer_id, product, currency,"
        " balance, interest_rate, opened_on, status, updated_at)"
        " SELECT id, 'C1', 'current', 'CNY', '5.00', '0.0100', '2026-01-02', 'open',"
        " '2026-11-27 08:00:00' FROM (VALUES ('AC1'), ('AC2'), ('AC9')) v(id)"
        " ON CONFLICT (account_id) DO UPDATE SET balance = excluded.balance",
    )

    assert set(by_key(captured, "account_id")) == {("U", "AC1"), ("U", "AC2"), ("I", "AC9")}
    assert {Decimal(str(c.image["balance"])) for c in captured} == {Decimal(5)}
    engine.dispose()


def test_hub_holds_what_many_row_statements_leave(
    tmp_path: Path,
    db_url: str,
    pair: Pair,  # noqa: F811
) -> None:
    hub = create_engine(pair.hub_url)
    compare = tmp_path / "compare"
    compare.mkdir()
    cluster = Cluster(compare, pair.hub_url, {"city-3301": db_url})
    city = pair.pusher.city
    try:
        with city.begin() as conn:
            for i in range(40):
                insert(
                    conn, "customers", f"C{i:02d}", status="prospect" if i % 4 == 0 else "active"
                )
            for i in range(20):
                insert(conn, "loans", f"L{i:02d}")
            conn.exec_driver_sql(ACCOUNTS)
        sync(pair, hub)
        with city.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE customers SET status = CASE WHEN status = 'prospect' THEN 'active'"
                " ELSE 'prospect' END WHERE customer_id < 'C10'"
            )
            conn.exec_driver_sql("UPDATE loans SET loan_id = 'M' || loan_id WHERE loan_id < 'L10'")
            conn.exec_driver_sql("UPDATE deposit_accounts SET balance = balance * 2")
            conn.exec_driver_sql("DELETE FROM deposit_accounts WHERE customer_id >= 'C30'")
        sync(pair, hub)

        assert hub_keys(hub, "loans") == {f"ML{i:02d}" for i in range(10)} | {
            f"L{i:02d}" for i in range(10, 20)
        }
        assert hub_keys(hub, "customers") == {
            f"C{i:02d}" for i in range(40) if (i % 4 == 0) == (i < 10)
        }
        assert cluster.expected_sources() == cluster.hub_sources()
    finally:
        hub.dispose()


# --- PostgreSQL: converting a city on the row triggers of earlier builds -----------------


def test_init_converts_the_row_triggers_of_earlier_builds(pg_url: str) -> None:
    policy = load_policy(POLICY)
    engine = city_engine(pg_url, policy)
    try:
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as raw:
            raw.execute(LEGACY.read_text(encoding="utf-8").encode())
        with engine.begin() as conn:
            insert(conn, "customers", "C1")  # captured by the old row trigger
        found = problems(engine, policy)
        assert any("syncd_capture_customers_ins is missing" in p for p in found)
        assert any("syncd_capture_loans_key is out of date" in p for p in found)
        assert any("unexpected capture trigger syncd_capture_loans_ntf" in p for p in found)

        report = install(engine, policy)

        assert set(report.replaced) == set(PUBLIC)
        assert report.added == report.dropped == report.kept == ()
        assert problems(engine, policy) == []
        assert install(engine, policy) == CaptureReport(kept=PUBLIC)
        with engine.connect() as conn:
            levels = conn.exec_driver_sql(
                "SELECT tgname, tgtype & 1 FROM pg_trigger"
                " WHERE starts_with(tgname, 'syncd_capture') ORDER BY 1"
            ).all()
        # Three statement triggers per table (tgtype bit 0 clear) and the key-change row
        # trigger; nothing of the old ones.
        assert len(levels) == 4 * len(PUBLIC)
        assert {str(name) for name, level in levels if level} == {
            f"syncd_capture_{t}_key" for t in PUBLIC
        }
        assert {name for _, name, *_ in trigger_catalog(engine) if str(name).endswith("_fn")}
        with engine.begin() as conn:
            conn.exec_driver_sql(ACCOUNTS)
            conn.exec_driver_sql("UPDATE customers SET customer_id = 'C2', status = 'dormant'")
        rows = [(r["table"], r["op"], r["image"].get("customer_id")) for r in logged(engine)]
        # Each change once: the old row triggers are gone, not left beside the new ones.
        assert rows[:2] == [("customers", "I", "C1"), ("deposit_accounts", "I", "C1")]
        assert sorted(rows[2:]) == [("customers", "D", "C1"), ("customers", "U", "C2")]
    finally:
        engine.dispose()
