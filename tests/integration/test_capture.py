"""Capture triggers on real city databases: every public write logged, nothing local, reconcile."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import yaml

from syncd.city.capture import CaptureReport, install_triggers, verify_triggers
from syncd.city.crm import check_schema, create_crm_schema
from syncd.city.triggers import CAPTURE_CHANNEL, trigger_name
from syncd.core.errors import DatabaseError, SchemaMismatch
from syncd.core.policy import Policy, SchemaProblem, load_policy, parse_policy
from syncd.store.city_tables import changelog
from syncd.store.city_tables import metadata as city_metadata
from syncd.store.db import create_engine
from tests.conftest import POLICY

PUBLIC = ("customers", "deposit_accounts", "loans", "intermediary_business")
LOCAL = ("opportunities", "sales_activities", "service_activities")
TS = "2026-11-26 08:00:00"

# Plain SQL, as any CRM writer would issue it: syncd must capture writers that never call it.
INSERTS = {
    "customers": (
        "INSERT INTO customers (customer_id, customer_type, name, id_type, id_number, phone,"
        " address, home_city, status, risk_level, risk_tags, credit_limit, rm_notes,"
        " created_at, updated_at) VALUES (:id, 'individual', '张三', 'ric',"
        " '11010519491231002X', '13800000000', '杭州市', '3301', :status, 2,"
        " :tags, '1000.50', :secret, :ts, :ts)"
    ),
    "deposit_accounts": (
        "INSERT INTO deposit_accounts (account_id, customer_id, product, currency, balance,"
        " interest_rate, opened_on, status, updated_at) VALUES (:id, 'C1', 'current', 'CNY',"
        " '2500.00', '0.0150', '2026-01-02', 'open', :ts)"
    ),
    "loans": (
        "INSERT INTO loans (loan_id, customer_id, product, principal, balance, five_class,"
        " overdue_days, issued_on, maturity_on, approval_memo, updated_at) VALUES (:id, 'C1',"
        " 'mortgage', '500000.00', '480000.00', 'normal', 0, '2026-01-01', '2046-01-01',"
        " :secret, :ts)"
    ),
    "intermediary_business": (
        "INSERT INTO intermediary_business (business_id, customer_id, product_type, amount,"
        " fee_income, trade_date, updated_at) VALUES (:id, 'C1', 'fund', '10000.00', '15.00',"
        " '2026-03-04', :ts)"
    ),
    "opportunities": (
        "INSERT INTO opportunities (opportunity_id, customer_id, notes, updated_at)"
        " VALUES (:id, 'C1', :secret, :ts)"
    ),
    "sales_activities": (
        "INSERT INTO sales_activities (activity_id, customer_id, happened_at, summary)"
        " VALUES (:id, 'C1', :ts, :secret)"
    ),
    "service_activities": (
        "INSERT INTO service_activities (activity_id, customer_id, happened_at, resolved,"
        " summary) VALUES (:id, 'C1', :ts, :resolved, :secret)"
    ),
}
KEYS = {
    "customers": "customer_id",
    "deposit_accounts": "account_id",
    "loans": "loan_id",
    "intermediary_business": "business_id",
    "opportunities": "opportunity_id",
    "sales_activities": "activity_id",
    "service_activities": "activity_id",
}
# One column per table that an update changes, with its new value.
UPDATES = {
    "customers": ("phone", "13900000000"),
    "deposit_accounts": ("status", "frozen"),
    "loans": ("five_class", "special_mention"),
    "intermediary_business": ("product_name", "稳健理财"),
    "opportunities": ("stage", "won"),
    "sales_activities": ("kind", "visit"),
    "service_activities": ("kind", "complaint"),
}


def policy_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    return data


def modified_policy(change: Any) -> Policy:
    data = copy.deepcopy(policy_data())
    change(data["tables"])
    return parse_policy(data, "modified")


@pytest.fixture
def policy() -> Policy:
    return load_policy(POLICY)


def city_engine(url: str, policy: Policy) -> sa.Engine:
    """A city database with the policy's CRM tables and syncd's changelog, no triggers yet."""
    eng = create_engine(url)
    with eng.begin() as conn:
        create_crm_schema(conn, policy)
        city_metadata.create_all(conn)
    return eng


@pytest.fixture
def engine(db_url: str, policy: Policy) -> Iterator[sa.Engine]:
    eng = city_engine(db_url, policy)
    yield eng
    eng.dispose()


def install(engine: sa.Engine, policy: Policy, lock_timeout_ms: int = 3000) -> CaptureReport:
    with engine.begin() as conn:
        return install_triggers(conn, policy, lock_timeout_ms)


def problems(engine: sa.Engine, policy: Policy) -> list[str]:
    with engine.connect() as conn:
        return verify_triggers(conn, policy)


def schema_problems(engine: sa.Engine, policy: Policy) -> list[SchemaProblem]:
    with engine.connect() as conn:
        return check_schema(conn, policy)


def params(table: str, key: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": key,
        "ts": TS,
        "secret": f"SECRET-{table}-{key}",
        "status": "active",
        "tags": '["vip", "mortgage"]',
        "resolved": True,
    }
    return {**base, **kw}


def insert(conn: sa.Connection, table: str, key: str, **kw: Any) -> None:
    conn.execute(sa.text(INSERTS[table]), params(table, key, **kw))


def logged(engine: sa.Engine) -> list[dict[str, Any]]:
    """The changelog as stored, JSON parsed from its text with exact decimals."""
    query = sa.select(
        changelog.c.seq,
        changelog.c.table_name,
        changelog.c.op,
        sa.cast(changelog.c.row_image, sa.Text),
        sa.cast(changelog.c.old_filter, sa.Text),
    ).order_by(changelog.c.seq)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "seq": seq,
            "table": table,
            "op": op,
            "image": json.loads(image, parse_float=Decimal),
            "old_filter": json.loads(old, parse_float=Decimal) if old is not None else None,
            "old_filter_text": old,
            "image_text": image,
        }
        for seq, table, op, image, old in rows
    ]


def trigger_catalog(engine: sa.Engine) -> list[tuple[Any, ...]]:
    """Every syncd trigger with what identifies its exact definition."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            query = (
                "SELECT c.relname, t.tgname, t.oid, t.xmin::text, pg_get_triggerdef(t.oid),"
                " obj_description(t.oid, 'pg_trigger') FROM pg_trigger t"
                " JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE t.tgname LIKE :pattern ORDER BY 1, 2"
            )
        else:
            query = (
                "SELECT tbl_name, name, sql FROM sqlite_master"
                " WHERE type = 'trigger' AND name LIKE :pattern ORDER BY 1, 2"
            )
        found = [tuple(r) for r in conn.execute(sa.text(query), {"pattern": "syncd%"})]
        if engine.dialect.name == "postgresql":
            function = conn.exec_driver_sql(
                "SELECT proname, oid, xmin::text, obj_description(oid, 'pg_proc') FROM pg_proc"
                " WHERE starts_with(proname, 'syncd_capture') ORDER BY 1"
            )
            found.extend(("(function)", *r) for r in function)
        return found


def same_timestamp(value: Any) -> bool:
    return str(value).replace("T", " ").startswith(TS)


def test_every_public_write_is_captured_and_nothing_local(
    engine: sa.Engine, policy: Policy
) -> None:
    report = install(engine, policy)
    assert set(report.added) == set(PUBLIC)
    assert report.replaced == report.dropped == report.kept == ()
    assert problems(engine, policy) == []

    with engine.begin() as conn:
        for table in (*PUBLIC, *LOCAL):
            insert(conn, table, "K1")
    with engine.begin() as conn:
        for table in (*PUBLIC, *LOCAL):
            column, value = UPDATES[table]
            conn.execute(
                sa.text(f"UPDATE {table} SET {column} = :v WHERE {KEYS[table]} = 'K1'"),
                {"v": value},
            )
    with engine.begin() as conn:
        for table in (*PUBLIC, *LOCAL):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE {KEYS[table]} = 'K1'"))

    rows = logged(engine)
    assert [(r["table"], r["op"]) for r in rows] == [
        *((t, "I") for t in PUBLIC),
        *((t, "U") for t in PUBLIC),
        *((t, "D") for t in PUBLIC),
    ]
    assert [r["seq"] for r in rows] == sorted({r["seq"] for r in rows})
    for row in rows:
        table = policy.table(row["table"])
        assert set(row["image"]) == set(table.public_columns)
        assert row["image"][KEYS[table.name]] == "K1"
        column, value = UPDATES[table.name]
        # An insert logs the new row; an update the updated row; a delete the old row.
        assert (row["image"][column] == value) is (row["op"] != "I")
        # Old filter values only when an update changes a filter column (none does here).
        assert row["old_filter"] is None

    customer = rows[0]["image"]
    assert customer["risk_tags"] == ["vip", "mortgage"]
    assert Decimal(str(customer["credit_limit"])) == Decimal("1000.50")
    assert customer["status"] == "active"
    assert same_timestamp(customer["updated_at"])
    assert rows[4]["image"]["phone"] == "13900000000"
    assert rows[8]["image"]["phone"] == "13900000000"
    deposit = rows[1]["image"]
    assert Decimal(str(deposit["interest_rate"])) == Decimal("0.0150")
    assert str(deposit["opened_on"]).startswith("2026-01-02")


def test_excluded_columns_never_reach_the_changelog(engine: sa.Engine, policy: Policy) -> None:
    install(engine, policy)
    with engine.begin() as conn:
        insert(conn, "customers", "C1", status="prospect")
        insert(conn, "loans", "L1")
        conn.execute(
            sa.text(
                "UPDATE customers SET rm_notes = 'SECRET-2', status = 'active'"
                " WHERE customer_id = 'C1'"
            )
        )
        conn.execute(sa.text("UPDATE loans SET approval_memo = 'SECRET-3' WHERE loan_id = 'L1'"))
        conn.execute(sa.text("DELETE FROM customers"))
        conn.execute(sa.text("DELETE FROM loans"))

    rows = logged(engine)
    assert len(rows) == 6
    for row in rows:
        stored = row["image_text"] + (row["old_filter_text"] or "")
        assert "SECRET" not in stored
        assert "rm_notes" not in stored
        assert "approval_memo" not in stored


def test_filter_transitions_log_the_old_status(engine: sa.Engine, policy: Policy) -> None:
    install(engine, policy)
    with engine.begin() as conn:
        insert(conn, "customers", "C1", status="prospect")
    for status in ("active", "prospect"):
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE customers SET status = :s WHERE customer_id = 'C1'"), {"s": status}
            )
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET phone = '1' WHERE customer_id = 'C1'"))

    rows = logged(engine)
    assert [(r["op"], r["image"]["status"], r["old_filter"]) for r in rows] == [
        ("I", "prospect", None),
        ("U", "active", {"status": "prospect"}),
        ("U", "prospect", {"status": "active"}),
        # The filter column did not change: the old row passes exactly as the new one does.
        ("U", "prospect", None),
    ]


def test_install_twice_changes_nothing(engine: sa.Engine, policy: Policy) -> None:
    install(engine, policy)
    before = trigger_catalog(engine)
    # Per public table: PostgreSQL's insert, update and delete statement triggers, its
    # key-change row trigger and the table's function; SQLite's insert, update, delete and
    # key-change row triggers.
    assert len(before) == (4 * 5 if engine.dialect.name == "postgresql" else 4 * 4)

    again = install(engine, policy)

    assert again == CaptureReport(kept=PUBLIC)
    assert not again.changed
    assert trigger_catalog(engine) == before


def test_changed_policy_is_reconciled(engine: sa.Engine, policy: Policy) -> None:
    install(engine, policy)
    with engine.begin() as conn:
        # Someone else's trigger on a captured table: syncd must never touch it.
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION crm_touch() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER crm_touch BEFORE UPDATE ON customers"
                " FOR EACH ROW EXECUTE FUNCTION crm_touch()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER crm_touch AFTER UPDATE ON loans BEGIN SELECT 1; END"
            )

    def change(tables: dict[str, Any]) -> None:
        tables["customers"]["exclude"] = ["rm_notes", "phone"]
        tables["loans"]["class"] = "local"
        del tables["intermediary_business"]

    changed = modified_policy(change)
    assert problems(engine, changed) != []

    report = install(engine, changed)

    assert report == CaptureReport(
        replaced=("customers",),
        dropped=("intermediary_business", "loans"),
        kept=("deposit_accounts",),
    )
    assert problems(engine, changed) == []
    assert install(engine, changed) == CaptureReport(kept=("customers", "deposit_accounts"))
    names = {str(name) for _, name, *_ in trigger_catalog(engine)}
    assert not any("loans" in n or "intermediary" in n for n in names)
    with engine.connect() as conn:
        others = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'crm_touch'"
            if engine.dialect.name == "postgresql"
            else "SELECT count(*) FROM sqlite_master WHERE name = 'crm_touch'"
        ).scalar_one()
    assert others == 1

    with engine.begin() as conn:
        insert(conn, "customers", "C1")
        insert(conn, "loans", "L1")
        insert(conn, "intermediary_business", "B1")
    rows = logged(engine)
    assert [(r["table"], r["op"]) for r in rows] == [("customers", "I")]
    assert "phone" not in rows[0]["image"]
    assert "13800000000" not in rows[0]["image_text"]
    assert set(rows[0]["image"]) == set(changed.table("customers").public_columns)

    # The old policy again: everything comes back, the stale customers trigger is replaced.
    assert install(engine, policy) == CaptureReport(
        added=("loans", "intermediary_business"),
        replaced=("customers",),
        kept=("deposit_accounts",),
    )
    assert problems(engine, policy) == []


def test_syncd_trigger_on_a_local_table_is_reported_and_dropped(
    engine: sa.Engine, policy: Policy
) -> None:
    install(engine, policy)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE TRIGGER syncd_capture_opportunities AFTER INSERT ON opportunities"
                " FOR EACH ROW EXECUTE FUNCTION syncd_capture_customers_fn('0')"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER syncd_capture_opportunities_ins AFTER INSERT ON opportunities"
                " BEGIN INSERT INTO syncd_changelog (table_name, op, row_image)"
                " VALUES ('opportunities', 'I', json_object('notes', NEW.notes)); END"
            )

    assert any(p.startswith("opportunities: table is local") for p in problems(engine, policy))
    assert SchemaProblem(
        "opportunities",
        None,
        f"table is local but has capture trigger {next(iter(local_trigger_names(engine)))}",
    ) in schema_problems(engine, policy)

    report = install(engine, policy)

    assert report == CaptureReport(dropped=("opportunities",), kept=PUBLIC)
    assert problems(engine, policy) == []
    with engine.begin() as conn:
        insert(conn, "opportunities", "O1")
    assert logged(engine) == []


def local_trigger_names(engine: sa.Engine) -> set[str]:
    return {name for table, name, *_ in trigger_catalog(engine) if table == "opportunities"}


def test_busy_table_makes_install_fail_fast(pg_url: str, policy: Policy) -> None:
    engine = city_engine(pg_url, policy)
    try:
        locked = threading.Event()
        release = threading.Event()

        def hold_lock() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(30)

        holder = threading.Thread(target=hold_lock)
        holder.start()
        try:
            assert locked.wait(10)
            start = time.monotonic()
            with pytest.raises(DatabaseError) as err:
                install(engine, policy, lock_timeout_ms=200)
            elapsed = time.monotonic() - start
        finally:
            release.set()
            holder.join()
        assert "cannot install capture trigger on customers: table is busy" in str(err.value)
        assert "lock_timeout 200 ms" in str(err.value)
        assert elapsed < 5
        # The failed install was one transaction: nothing of it remains, not even the function.
        assert trigger_catalog(engine) == []
        assert install(engine, policy).added == PUBLIC
    finally:
        engine.dispose()


def test_install_refuses_a_database_that_lacks_declared_columns(
    engine: sa.Engine, policy: Policy
) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE loans DROP COLUMN collateral")
        conn.exec_driver_sql("DROP TABLE deposit_accounts")
    with pytest.raises(SchemaMismatch) as err:
        install(engine, policy)
    assert "table deposit_accounts" in str(err.value)
    assert "column loans.collateral" in str(err.value)
    assert trigger_catalog(engine) == []


def test_undeclared_columns_are_never_captured(engine: sa.Engine, policy: Policy) -> None:
    install(engine, policy)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE customers ADD COLUMN internal_score TEXT")
    # Both dialects name the declared public columns in the image: a new column changes
    # nothing, the triggers stay current.
    assert problems(engine, policy) == []
    assert install(engine, policy).replaced == ()
    with engine.begin() as conn:
        insert(conn, "customers", "C1")
        conn.exec_driver_sql("UPDATE customers SET internal_score = 'SECRET-SCORE'")
    rows = logged(engine)
    assert len(rows) == 2
    assert all("internal_score" not in r["image"] for r in rows)
    assert all("SECRET" not in r["image_text"] for r in rows)


def test_disabled_trigger_is_stale_and_replaced(pg_url: str, policy: Policy) -> None:
    engine = city_engine(pg_url, policy)
    try:
        with engine.begin() as conn:
            install_triggers(conn, policy, 3000)
            conn.exec_driver_sql("ALTER TABLE loans DISABLE TRIGGER syncd_capture_loans_ins")
        assert problems(engine, policy) == [
            "loans: capture trigger syncd_capture_loans_ins is out of date, disabled or altered"
        ]
        assert install(engine, policy).replaced == ("loans",)
        with engine.begin() as conn:
            insert(conn, "loans", "L1")
        assert [r["table"] for r in logged(engine)] == ["loans"]
    finally:
        engine.dispose()


def test_check_schema_reports_every_problem(engine: sa.Engine, policy: Policy) -> None:
    install(engine, policy)
    # Decimals stored as text on SQLite, lengths and the like: all fine.
    assert schema_problems(engine, policy) == []

    drop_one = (
        "DROP TRIGGER syncd_capture_deposit_accounts_upd ON deposit_accounts"
        if engine.dialect.name == "postgresql"
        else "DROP TRIGGER syncd_capture_deposit_accounts_upd"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE sales_activities")
        conn.exec_driver_sql("ALTER TABLE opportunities DROP COLUMN owner")
        conn.exec_driver_sql(drop_one)

    def stage_is_integer(tables: dict[str, Any]) -> None:
        tables["opportunities"]["columns"]["stage"] = {"type": "integer"}

    found = schema_problems(engine, modified_policy(stage_is_integer))

    missing_trigger = trigger_name("deposit_accounts", "_upd")
    assert found[:3] == [
        SchemaProblem("opportunities", "stage", found[0].problem),
        SchemaProblem("opportunities", "owner", "column is missing"),
        SchemaProblem("sales_activities", None, "table is missing"),
    ]
    assert "not compatible with policy type integer" in found[0].problem
    assert found[3:] == [
        SchemaProblem("deposit_accounts", None, f"capture trigger {missing_trigger} is missing")
    ]


def test_check_schema_reports_a_missing_public_table_once(
    engine: sa.Engine, policy: Policy
) -> None:
    install(engine, policy)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE intermediary_business")
    assert schema_problems(engine, policy) == [
        SchemaProblem("intermediary_business", None, "table is missing")
    ]
    assert problems(engine, policy) == [
        "intermediary_business: table is missing, so its changes cannot be captured"
    ]


def test_long_table_names_get_distinct_short_trigger_names() -> None:
    long_a, long_b = "a" * 60, "a" * 59 + "b"
    names = {trigger_name(long_a), trigger_name(long_b), trigger_name(long_a, "_upd")}
    assert len(names) == 3
    assert all(len(n) <= 63 and n.startswith("syncd_capture_") for n in names)
    assert trigger_name("customers") == "syncd_capture_customers"


def test_a_wide_table_is_captured_whole(db_url: str) -> None:
    """120 public columns: more than one jsonb_build_object call (100 arguments) can take."""

    def widen(tables: dict[str, Any]) -> None:
        columns = tables["loans"]["columns"]
        for i in range(120):
            columns[f"extra_{i:03d}"] = {"type": "integer"}

    wide = modified_policy(widen)
    engine = city_engine(db_url, wide)
    try:
        install(engine, wide)
        with engine.begin() as conn:
            insert(conn, "loans", "L1")
            conn.exec_driver_sql("UPDATE loans SET extra_119 = 119, extra_000 = 7")
        rows = logged(engine)
    finally:
        engine.dispose()
    assert [r["op"] for r in rows] == ["I", "U"]
    assert set(rows[1]["image"]) == set(wide.table("loans").public_columns)
    assert len(rows[1]["image"]) == 12 + 120  # loans' public columns and the extra ones
    assert (rows[1]["image"]["extra_000"], rows[1]["image"]["extra_119"]) == (7, 119)


def test_init_retires_the_generic_function_of_early_builds(pg_url: str, policy: Policy) -> None:
    """Triggers on the one generic `syncd_capture()` are replaced, and the function dropped."""
    engine = city_engine(pg_url, policy)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION syncd_capture() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN RETURN NULL; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER syncd_capture_loans AFTER INSERT OR UPDATE OR DELETE ON loans"
                " FOR EACH ROW EXECUTE FUNCTION syncd_capture('0', '0')"
            )
        assert install(engine, policy).replaced == ("loans",)
        assert problems(engine, policy) == []
        with engine.connect() as conn:
            legacy = conn.exec_driver_sql("SELECT to_regprocedure('syncd_capture()')").scalar()
        assert legacy is None
        with engine.begin() as conn:
            insert(conn, "loans", "L1")
        assert [r["table"] for r in logged(engine)] == ["loans"]
    finally:
        engine.dispose()


def test_pg_capture_notifies_once_at_commit(pg_url: str, policy: Policy) -> None:
    """The statement trigger's NOTIFY reaches a listener at commit, once per transaction."""
    engine = city_engine(pg_url, policy)
    install(engine, policy)
    listener = psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True)
    try:
        listener.execute(f"LISTEN {CAPTURE_CHANNEL}")

        def heard() -> int:
            return len(list(listener.notifies(timeout=0.5)))

        with engine.connect() as conn:
            insert(conn, "customers", "C1")
            insert(conn, "loans", "L1")
            conn.execute(sa.text("UPDATE customers SET phone = '2' WHERE customer_id = 'C1'"))
            assert heard() == 0  # nothing before the commit
            conn.commit()
        assert heard() == 1  # three statements, two tables: one notification
        with engine.begin() as conn:
            insert(conn, "opportunities", "O1")  # a local table: no capture, no wake-up
            conn.exec_driver_sql("UPDATE customers SET phone = '3' WHERE false")  # no rows
        assert heard() == 0
        # The notification of a rolled-back subtransaction is gone; the next write notifies.
        with engine.begin() as conn:
            conn.exec_driver_sql("SAVEPOINT s")
            insert(conn, "loans", "L2")
            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT s")
            conn.execute(sa.text("UPDATE customers SET phone = '4' WHERE customer_id = 'C1'"))
        assert heard() == 1
    finally:
        listener.close()
        engine.dispose()
