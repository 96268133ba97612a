"""Values a SQLite city cannot send (BLOB, text that is not UTF-8, NUL) never fail or wedge.

Real SQLite city files, real hubs (SQLite file and PostgreSQL), the real capture triggers,
snapshot, pusher and apply. Each bad value travels as the stand-in of `batch.unsendable`, the
hub quarantines its row with a reason that names the column and never holds the value, the
rest of the batch applies, and fixing the row at the city supersedes the quarantine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.app import init_node
from syncd.city import snapshot as snap
from syncd.city.capture import verify_triggers
from syncd.city.push import read_changes
from syncd.city.triggers import TRIGGER_PREFIX
from syncd.core.batch import Unsendable, unsendable, unsendable_kind
from syncd.core.policy import load_policy
from syncd.hub import quarantine
from syncd.hub.apply import apply_pending
from syncd.store.city_tables import changelog
from syncd.store.db import create_engine
from tests.conftest import POLICY
from tests.helpers import run_syncd, settings_for, write_config
from tests.integration.test_apply import sources
from tests.integration.test_push import Pair, make_pair

TS = "2026-11-26 08:00:00"
# Every bad value carries this marker: it must never show at the hub or in a reason.
SECRET = "SECRET"
BLOB = SECRET.encode() + b"-\x00\xff"
# SQL expressions for the three kinds, as a CRM could write them through any driver.
BAD_UTF8 = f"'{SECRET}-' || CAST(x'e4b8ff41' AS TEXT)"
NUL = f"'{SECRET}-nul' || char(0) || 'x'"
INSERT = (
    "INSERT INTO customers (customer_id, customer_type, name, id_type, id_number, phone,"
    " address, status, risk_tags, rm_notes, created_at, updated_at)"
    " VALUES (:id, 'individual', {name}, 'ric', '11010519491231002X', {phone}, {address},"
    " 'active', {tags}, :notes, :ts, :ts)"
)


def insert(conn: sa.Connection, cid: str, notes: Any = "备注", **sql: str) -> None:
    """A customer row; `sql` gives SQL expressions for name, phone, address or tags."""
    exprs = {"name": "'张三'", "phone": "'13800000000'", "address": "NULL", "tags": "'[\"a\"]'"}
    exprs.update(sql)
    conn.execute(
        sa.text(INSERT.format(**exprs)), {"id": cid, "notes": notes, "ts": TS, "blob": BLOB}
    )


# customer id → (column, kind) of the bad value it holds.
BAD = {
    "C2": ("name", Unsendable.INVALID_UTF8),
    "C3": ("phone", Unsendable.NUL),
    "C4": ("address", Unsendable.BLOB),
    "C5": ("risk_tags", Unsendable.INVALID_UTF8),
}


def write_batch(conn: sa.Connection) -> None:
    """Good rows around one row per kind of bad value; C6's BLOB is in an excluded column."""
    insert(conn, "C1")
    insert(conn, "C2", name=BAD_UTF8)
    insert(conn, "C3", phone=NUL)
    insert(conn, "C4", address=":blob")
    insert(conn, "C5", tags=f"'[\"ok\", \"' || {BAD_UTF8} || '\"]'")
    insert(conn, "C6", notes=BLOB)


def fix_rows(conn: sa.Connection) -> None:
    conn.execute(
        sa.text(
            "UPDATE customers SET name = '张二', phone = '139', address = '杭州',"
            " risk_tags = '[\"ok\"]' WHERE customer_id IN ('C2', 'C3', 'C4', 'C5')"
        )
    )


def open_entries(hub: sa.Engine, status: str | None = "open") -> list[dict[str, Any]]:
    with hub.connect() as conn:
        return quarantine.list_entries(conn, status=status, table="customers")


def applied(hub: sa.Engine) -> set[str]:
    return {r["customer_id"] for r in sources(hub, "customers")}


def assert_quarantined_and_rest_applied(hub: sa.Engine) -> None:
    apply_pending(hub, load_policy(POLICY))
    assert applied(hub) == {"C1", "C6"}
    entries = {e["row_key"]["customer_id"]: e for e in open_entries(hub)}
    assert set(entries) == set(BAD)
    for cid, (column, kind) in BAD.items():
        entry = entries[cid]
        assert column in entry["reason"], entry["reason"]
        assert SECRET not in entry["reason"]
        value = entry["row_data"][column]
        if column == "risk_tags":  # a list element is replaced where it stands
            assert value[0] == "ok"
            value = value[1]
        assert unsendable_kind(value) is kind, (cid, value)
        assert SECRET not in repr(entry["row_data"])


def assert_fix_supersedes(pair: Pair, hub: sa.Engine) -> None:
    with pair.pusher.city.begin() as conn:
        fix_rows(conn)
    pair.pusher.push_once()
    apply_pending(hub, load_policy(POLICY))
    assert applied(hub) == {"C1", "C2", "C3", "C4", "C5", "C6"}
    assert open_entries(hub) == []
    assert {e["status"] for e in open_entries(hub, status=None)} == {"superseded"}


@pytest.fixture(params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> Iterator[Pair]:
    """A SQLite city and its hub, on SQLite or on PostgreSQL."""
    if request.param == "sqlite":
        hub_url = f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        hub_url = request.getfixturevalue("pg_url")
    p = make_pair(tmp_path, sqlite_url, hub_url, gap_wait_seconds=0.2)
    yield p
    p.pusher.hub.close()
    p.pusher.city.dispose()


def changelog_bytes(engine: sa.Engine) -> list[bytes]:
    """Every changelog document as SQLite stores it, byte for byte."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                sa.cast(changelog.c.row_image, sa.LargeBinary),
                sa.cast(changelog.c.old_filter, sa.LargeBinary),
            ).order_by(changelog.c.seq)
        ).all()
    return [doc for row in rows for doc in row if doc is not None]


# --- capture ------------------------------------------------------------------------------


def test_a_blob_never_fails_a_crm_write_and_an_excluded_one_is_never_read(
    tmp_path: Path, sqlite_url: str
) -> None:
    conf = write_config(
        tmp_path / "city.toml", "city-3301", "city", sqlite_url, f"sqlite:///{tmp_path / 'h.db'}"
    )
    init_node(settings_for(conf))
    city = create_engine(sqlite_url)
    try:
        _write_and_check_blobs(city)
    finally:
        city.dispose()


def _write_and_check_blobs(city: sa.Engine) -> None:
    blob = unsendable(Unsendable.BLOB)
    with city.begin() as conn:
        insert(conn, "C1", notes=BLOB, phone=":blob")
        insert(conn, "C2", tags=":blob")
        conn.execute(
            sa.text(
                "UPDATE customers SET address = :blob, rm_notes = :blob WHERE customer_id = 'C2'"
            ),
            {"blob": BLOB},
        )
        # A filter column that changes logs its old value: a BLOB there too.
        conn.execute(
            sa.text("UPDATE customers SET status = :blob WHERE customer_id = 'C1'"),
            {"blob": BLOB},
        )
        conn.execute(sa.text("UPDATE customers SET status = 'dormant' WHERE customer_id = 'C1'"))
        conn.execute(sa.text("DELETE FROM customers WHERE customer_id = 'C2'"))
    with city.connect() as conn:
        logged = read_changes(conn, 0, None, 100)
    assert [(c.table, c.op, c.image["customer_id"]) for c in logged] == [
        ("customers", "I", "C1"),
        ("customers", "I", "C2"),
        ("customers", "U", "C2"),
        ("customers", "U", "C1"),
        ("customers", "U", "C1"),
        ("customers", "D", "C2"),
    ]
    assert logged[0].image["phone"] == blob
    assert logged[0].image["name"] == "张三"
    assert logged[1].image["risk_tags"] == blob
    assert logged[2].image["address"] == logged[2].image["risk_tags"] == blob
    assert logged[3].image["status"] == blob
    assert logged[3].old_filter == {"status": "active"}
    assert logged[4].image["status"] == "dormant"
    assert logged[4].old_filter == {"status": blob}
    assert logged[5].image["address"] == blob
    # The excluded column's BLOB is not read at all: not even its stand-in is written.
    docs = changelog_bytes(city)
    assert len(docs) == 8
    assert all(b"rm_notes" not in doc and SECRET.encode() not in doc for doc in docs)


def disarm(ddl: str) -> str:
    """A trigger as builds before the BLOB stand-in wrote it (each value as it is)."""
    guard = r"CASE typeof\((\w+\.\w+)\) WHEN 'blob' THEN json_object\([^)]*\) ELSE \1 END"
    old = re.sub(guard, r"\1", ddl)
    list_guard = (
        r"CASE typeof\((\w+\.\w+)\) WHEN 'blob' THEN json_object\([^)]*\) ELSE (CASE WHEN"
        r" \(json_valid\(\1\) = 1\) THEN json\(\1\) ELSE \1 END) END"
    )
    return re.sub(list_guard, r"\2", old)


def test_init_replaces_triggers_of_earlier_builds(tmp_path: Path, sqlite_url: str) -> None:
    conf = write_config(
        tmp_path / "city.toml", "city-3301", "city", sqlite_url, f"sqlite:///{tmp_path / 'h.db'}"
    )
    run_syncd(conf, "init", check=True)
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            triggers = conn.execute(
                sa.text(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                    " AND tbl_name = 'customers' AND name LIKE :p"
                ),
                {"p": TRIGGER_PREFIX + "%"},
            ).all()
            assert triggers
            for name, ddl in triggers:
                assert disarm(ddl) != ddl
                conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
                conn.exec_driver_sql(disarm(ddl))
        with (
            pytest.raises(sa.exc.OperationalError, match="JSON cannot hold BLOB values"),
            engine.begin() as conn,
        ):
            insert(conn, "C1", phone=":blob")
        check = run_syncd(conf, "schema", "check", "--json")
        assert check.returncode != 0
        stale = {p["problem"] for p in json.loads(check.stdout)["problems"]}
        assert {
            f"capture trigger {n} is out of date, disabled or altered" for n, _ in triggers
        } <= (stale)
        run_syncd(conf, "init", check=True)
        assert run_syncd(conf, "schema", "check").returncode == 0
        with engine.connect() as conn:
            assert verify_triggers(conn, load_policy(POLICY)) == []
        with engine.begin() as conn:
            insert(conn, "C1", phone=":blob")
    finally:
        engine.dispose()


# --- push ---------------------------------------------------------------------------------


def test_unsendable_values_are_quarantined_and_the_batch_applies(pair: Pair) -> None:
    hub = create_engine(pair.hub_url)
    try:
        with pair.pusher.city.begin() as conn:
            write_batch(conn)
        result = pair.pusher.push_once()
        assert result.batches == 1
        assert result.rows == 6
        assert_quarantined_and_rest_applied(hub)
        assert_fix_supersedes(pair, hub)
    finally:
        hub.dispose()


def test_a_snapshot_of_unsendable_values_is_quarantined_and_the_rest_applies(
    tmp_path: Path, sqlite_url: str, pair: Pair
) -> None:
    # The city's rows predate capture: drop the triggers, write, then load them by snapshot.
    city = pair.pusher.city
    with city.begin() as conn:
        names = conn.execute(
            sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE :p"),
            {"p": TRIGGER_PREFIX + "%"},
        ).scalars()
        for name in list(names):
            conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
        write_batch(conn)
        assert conn.execute(sa.select(sa.func.count()).select_from(changelog)).scalar_one() == 0
    init_node(pair.city)  # the triggers again, as on a city that starts syncing its CRM
    report = snap.snapshot(pair.city, table_name="customers")
    assert report.rows == 6
    assert pair.pusher.push_once().batches == 1
    hub = create_engine(pair.hub_url)
    try:
        assert_quarantined_and_rest_applied(hub)
        assert_fix_supersedes(pair, hub)
    finally:
        hub.dispose()


def test_a_bad_value_in_the_primary_key_does_not_wedge_the_push(pair: Pair) -> None:
    with pair.pusher.city.begin() as conn:
        insert(conn, "K1")
        conn.exec_driver_sql(
            "INSERT INTO customers (customer_id, customer_type, name, id_type, id_number,"
            " status, created_at, updated_at) VALUES"
            f" ({BAD_UTF8}, 'individual', '李四', 'ric', '11010519491231002X', 'active',"
            f" '{TS}', '{TS}')"
        )
        insert(conn, "K3")
    pair.pusher.push_once()
    pair.pusher.push_once()  # again: nothing is stuck
    hub = create_engine(pair.hub_url)
    try:
        apply_pending(hub, load_policy(POLICY))
        assert applied(hub) == {"K1", "K3"}
        (entry,) = open_entries(hub)
        assert "customer_id" in entry["reason"]
        assert SECRET not in entry["reason"]
        assert unsendable_kind(entry["row_key"]["customer_id"]) is Unsendable.INVALID_UTF8
    finally:
        hub.dispose()
