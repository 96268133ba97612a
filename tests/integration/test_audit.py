"""The audit log on real SQLite and PostgreSQL: chaining, tamper detection, locking, export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.core.auditchain import EXPORT_COLUMNS
from syncd.core.errors import UsageError
from syncd.hub.audit import (
    GENESIS_HASH,
    Action,
    AuditWriter,
    canonical,
    entry_hash,
    format_anchor,
    head,
    install_append_only,
    verify,
)
from syncd.hub.audit_query import AuditFilter, export, query
from syncd.store.db import create_engine
from syncd.store.dialect import is_postgres
from syncd.store.hub_tables import audit, audit_rows

T0 = dt.datetime(2025, 3, 1, 8, 0, 0)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    audit.create(eng)
    audit_rows.create(eng)
    with eng.begin() as conn:
        install_append_only(conn)
    yield eng
    eng.dispose()


def _write(
    engine: Engine,
    count: int,
    *,
    action: str = "row_applied",
    node: str | None = "3301",
    clock: Callable[[], dt.datetime] | None = None,
) -> None:
    # Version 1, one chained entry per row decision (as syncd wrote before row_decisions):
    # these chains must keep verifying, and their tampering keep being caught. Version-2
    # entries covering row decisions are tested in test_audit_rows.py.
    with engine.begin() as conn:
        writer = (
            AuditWriter(conn, group_rows=False)
            if clock is None
            else AuditWriter(conn, clock=clock, group_rows=False)
        )
        for i in range(count):
            writer.append(
                action, node_id=node, batch_id=7, table="loan", key={"loan_id": i}, detail={"i": i}
            )
        writer.flush()


def _tamper(engine: Engine, stmt: sa.Executable) -> None:
    """Change the log the way a superuser would, past the append-only triggers."""
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.execute(stmt)


def _verify(engine: Engine, against: str | None = None) -> Any:
    with engine.connect() as conn:
        return verify(conn, against)


def _head(engine: Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        return head(conn)


def _ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.select(audit.c.entry_id).order_by(audit.c.entry_id)))


def test_empty_log_verifies(engine: Engine) -> None:
    result = _verify(engine)
    assert result.ok
    assert (result.entries, result.head_id, result.head_hash) == (0, 0, GENESIS_HASH)
    assert _head(engine) == (0, GENESIS_HASH)
    assert _verify(engine, format_anchor(0, GENESIS_HASH)).ok


def test_append_stores_chained_canonical_entries(engine: Engine) -> None:
    with engine.begin() as conn:
        writer = AuditWriter(
            conn, clock=lambda: dt.datetime(2025, 3, 1, 8, 0, 0, 987654, tzinfo=dt.UTC)
        )
        writer.append(Action.BATCH_APPLIED, node_id="3301", batch_id=12, detail={"rows": 3})
        writer.append(
            "row_applied",
            node_id="3301",
            batch_id=12,
            table="customer",
            key={"id_type": "01", "id_number": "330102199001011234"},
            detail={"name": "张三", "balance": Decimal("12.50"), "at": dt.date(2025, 1, 2)},
        )
        writer.append(Action.NODE_REGISTERED)
        assert writer.pending == 3
        assert writer.flush() == 3
        assert writer.pending == 0
        assert writer.flush() == 0
    with engine.connect() as conn:
        rows = [r._asdict() for r in conn.execute(sa.select(audit).order_by(audit.c.entry_id))]
        lines = [r._asdict() for r in conn.execute(sa.select(audit_rows))]
    assert [r["entry_id"] for r in rows] == [1, 2, 3]
    # The row decision is a row line of entry 2, which covers it (test_audit_rows.py).
    assert rows[1]["action"] == "row_decisions"
    assert rows[1]["row_key"] is None
    assert json.loads(rows[1]["detail"])["count"] == 1
    assert [(r["entry_id"], r["ord"], r["action"]) for r in lines] == [(2, 1, "row_applied")]
    rows[1] = {**rows[1], **lines[0]}
    assert rows[0]["prev_hash"] == GENESIS_HASH
    assert rows[1]["prev_hash"] == rows[0]["entry_hash"]
    assert rows[2]["prev_hash"] == rows[1]["entry_hash"]
    assert all(r["at"] == T0 for r in rows)
    assert rows[0]["action"] == "batch_applied"
    assert rows[0]["row_key"] is None
    assert rows[1]["row_key"] == '{"id_number":"330102199001011234","id_type":"01"}'
    assert rows[1]["detail"] == '{"at":"2025-01-02","balance":"12.50","name":"张三"}'
    assert rows[2]["detail"] == "{}"
    assert rows[2]["node_id"] is None
    for r in (rows[0], rows[2]):
        assert r["entry_hash"] == entry_hash(r["prev_hash"], r)

    result = _verify(engine)
    assert result.ok
    assert (result.entries, result.head_id, result.head_hash) == (3, 3, rows[2]["entry_hash"])
    assert result.broken_id is None
    assert result.reason is None
    assert _head(engine) == (3, rows[2]["entry_hash"])
    assert result.anchor == format_anchor(3, rows[2]["entry_hash"])
    assert _verify(engine, result.anchor).ok


def test_append_rejects_what_the_columns_cannot_hold(engine: Engine) -> None:
    with engine.connect() as conn:
        writer = AuditWriter(conn)
        with pytest.raises(ValueError, match="action"):
            writer.append("x" * 33)
        with pytest.raises(ValueError, match="action"):
            writer.append("")
        with pytest.raises(ValueError, match="node_id"):
            writer.append("stale", node_id="n" * 64)
        with pytest.raises(TypeError, match="object"):
            writer.append("stale", detail={"x": object()})
        assert writer.pending == 0


def test_chain_continues_across_transactions_and_flushes(engine: Engine) -> None:
    _write(engine, 3)
    with engine.begin() as conn:
        writer = AuditWriter(conn)
        writer.append("stale", node_id="3302")
        writer.flush()
        writer.append("quarantined", node_id="3302")
        writer.append("quarantined", node_id="3302")
        writer.flush()
    _write(engine, 2)
    assert _ids(engine) == list(range(1, 9))
    result = _verify(engine)
    assert result.ok
    assert result.entries == 8
    assert (result.head_id, result.head_hash) == _head(engine)


def test_rolled_back_entries_leave_no_trace(engine: Engine) -> None:
    _write(engine, 2)
    with engine.connect() as conn:
        writer = AuditWriter(conn)
        writer.append("conflict_opened")
        writer.flush()
        conn.rollback()
    _write(engine, 1)
    assert _ids(engine) == [1, 2, 3]
    assert _verify(engine).ok


def test_ten_thousand_entries_in_one_flush(engine: Engine) -> None:
    _write(engine, 10_000)
    result = _verify(engine)
    assert result.ok
    assert result.entries == 10_000
    assert result.head_id == 10_000


# Tampering: each case names the first broken entry.


def test_updated_detail_is_detected(engine: Engine) -> None:
    _write(engine, 5)
    _tamper(engine, sa.update(audit).where(audit.c.entry_id == 3).values(detail='{"i":99}'))
    result = _verify(engine)
    assert not result.ok
    assert result.broken_id == 3
    assert "modified" in (result.reason or "")
    assert (result.entries, result.head_id) == (2, 2)


def test_updated_entry_with_recomputed_hash_breaks_the_next_link(engine: Engine) -> None:
    _write(engine, 5)
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit).where(audit.c.entry_id == 3)).one()._asdict()
    row["detail"] = '{"i":99}'
    _tamper(
        engine,
        sa.update(audit)
        .where(audit.c.entry_id == 3)
        .values(detail=row["detail"], entry_hash=entry_hash(row["prev_hash"], row)),
    )
    result = _verify(engine)
    assert not result.ok
    assert result.broken_id == 4
    assert "entry 3" in (result.reason or "")


def test_deleted_middle_entry_is_detected(engine: Engine) -> None:
    _write(engine, 5)
    _tamper(engine, sa.delete(audit).where(audit.c.entry_id == 3))
    result = _verify(engine)
    assert not result.ok
    assert result.broken_id == 3
    assert "missing" in (result.reason or "")
    assert (result.entries, result.head_id) == (2, 2)


def test_deleted_first_entry_is_detected(engine: Engine) -> None:
    _write(engine, 3)
    _tamper(engine, sa.delete(audit).where(audit.c.entry_id == 1))
    result = _verify(engine)
    assert (result.ok, result.broken_id) == (False, 1)


def test_deleted_last_entry_is_detected_against_the_earlier_head(engine: Engine) -> None:
    _write(engine, 5)
    anchor = _verify(engine).anchor
    assert anchor == format_anchor(*_head(engine))
    _tamper(engine, sa.delete(audit).where(audit.c.entry_id == 5))
    # A clean prefix is still a valid chain: only the anchor knows the tail existed.
    assert _verify(engine).ok
    result = _verify(engine, anchor)
    assert not result.ok
    assert result.broken_id == 5
    assert "absent" in (result.reason or "")
    assert (result.entries, result.head_id) == (4, 4)


def _forged(entry_id: int, prev_hash: str) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "at": T0,
        "action": "row_applied",
        "node_id": "3301",
        "batch_id": 7,
        "table_name": "loan",
        "row_key": '{"loan_id":1000}',
        "detail": "{}",
        "prev_hash": prev_hash,
        "entry_hash": "f" * 64,
    }


@pytest.mark.parametrize(
    ("gap", "chained", "broken_id", "reason"),
    [
        (0, False, 6, "prev_hash"),  # next id, made-up link
        (0, True, 6, "modified"),  # next id, right link, made-up hash
        (2, True, 6, "missing"),  # leaves a gap
    ],
)
def test_forged_insert_is_detected(
    engine: Engine, gap: int, chained: bool, broken_id: int, reason: str
) -> None:
    _write(engine, 5)
    head_id, head_hash = _head(engine)
    prev = head_hash if chained else "e" * 64
    with engine.begin() as conn:
        conn.execute(sa.insert(audit), _forged(head_id + 1 + gap, prev))
    result = _verify(engine)
    assert not result.ok
    assert result.broken_id == broken_id
    assert reason in (result.reason or "")
    assert (result.entries, result.head_id, result.head_hash) == (5, 5, head_hash)


def test_recomputed_rewrite_passes_alone_but_fails_against_the_anchor(engine: Engine) -> None:
    _write(engine, 6)
    early_anchor = format_anchor(2, _hash_of(engine, 2))
    anchor = _verify(engine).anchor
    with engine.connect() as conn:
        rows = [r._asdict() for r in conn.execute(sa.select(audit).order_by(audit.c.entry_id))]
    rows[3]["detail"] = '{"i":"forged"}'
    prev = GENESIS_HASH
    for row in rows:
        row["prev_hash"] = prev
        prev = row["entry_hash"] = entry_hash(prev, row)
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.exec_driver_sql("ALTER TABLE syncd_audit DISABLE TRIGGER USER")
        conn.execute(sa.delete(audit))
        conn.execute(sa.insert(audit), rows)
        if is_postgres(conn):
            conn.exec_driver_sql("ALTER TABLE syncd_audit ENABLE TRIGGER USER")
    assert _verify(engine).ok
    # An anchor vouches only for the prefix it names: entry 2 was left as it was.
    assert _verify(engine, early_anchor).ok
    result = _verify(engine, anchor)
    assert not result.ok
    assert result.broken_id == 6
    assert "rewritten" in (result.reason or "")
    assert result.entries == 5


def _hash_of(engine: Engine, entry_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(sa.select(audit.c.entry_hash).where(audit.c.entry_id == entry_id)))


def test_anchor_past_the_head_fails(engine: Engine) -> None:
    _write(engine, 2)
    result = _verify(engine, format_anchor(3, "a" * 64))
    assert (result.ok, result.broken_id, result.entries) == (False, 3, 2)


def test_anchor_with_another_hash_fails(engine: Engine) -> None:
    _write(engine, 2)
    result = _verify(engine, format_anchor(1, "a" * 64))
    assert (result.ok, result.broken_id, result.entries) == (False, 1, 0)


def test_anchor_is_case_and_space_tolerant(engine: Engine) -> None:
    _write(engine, 2)
    entry_id, hash_ = _head(engine)
    assert _verify(engine, f" {entry_id}:{hash_.upper()}\n").ok


@pytest.mark.parametrize(
    "anchor",
    ["", "3", "3:", ":" + "a" * 64, "x:" + "a" * 64, "3:" + "a" * 63, "3:" + "g" * 64,
     "-1:" + "a" * 64, "0:" + "a" * 64, "3:" + "a" * 64 + ":4"],
)  # fmt: skip
def test_malformed_anchor_is_a_usage_error(engine: Engine, anchor: str) -> None:
    with pytest.raises(UsageError, match="anchor"):
        _verify(engine, anchor)


# PostgreSQL refuses changes outright.


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    eng = create_engine(pg_url)
    audit.create(eng)
    audit_rows.create(eng)
    with eng.begin() as conn:
        install_append_only(conn)
        install_append_only(conn)  # idempotent
    yield eng
    eng.dispose()


@pytest.mark.parametrize(
    "stmt",
    [
        "UPDATE syncd_audit SET detail = '{}' WHERE entry_id = 1",
        "DELETE FROM syncd_audit WHERE entry_id = 2",
        "DELETE FROM syncd_audit",
        "TRUNCATE syncd_audit",
    ],
)
def test_postgres_refuses_changes_to_the_log(pg_engine: Engine, stmt: str) -> None:
    _write(pg_engine, 2)
    with (
        pytest.raises(sa.exc.DBAPIError, match="syncd_audit is append-only"),
        pg_engine.begin() as conn,
    ):
        conn.exec_driver_sql(stmt)
    _write(pg_engine, 1)
    assert _ids(pg_engine) == [1, 2, 3]
    assert _verify(pg_engine).ok


def test_postgres_triggers_survive_reinstall(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        install_append_only(conn)
        names = set(
            conn.scalars(
                sa.text(
                    "SELECT tgname FROM pg_trigger "
                    "WHERE tgrelid = 'syncd_audit'::regclass AND NOT tgisinternal"
                )
            )
        )
    assert names == {"syncd_audit_no_change", "syncd_audit_no_truncate"}


def test_install_is_a_no_op_on_sqlite(sqlite_url: str) -> None:
    eng = create_engine(sqlite_url)
    try:
        audit.create(eng)
        with eng.begin() as conn:
            install_append_only(conn)
            conn.execute(sa.delete(audit))
    finally:
        eng.dispose()


# Concurrent writers.


def test_concurrent_writers_keep_one_dense_chain(engine: Engine) -> None:
    transactions, per_transaction = 40, 5
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(node: str) -> None:
        try:
            start.wait()
            for t in range(transactions):
                with engine.begin() as conn:
                    w = AuditWriter(conn)
                    for i in range(per_transaction):
                        w.append("row_applied", node_id=node, detail={"t": t, "i": i})
                    w.flush()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(node,)) for node in ("3301", "3302")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    total = 2 * transactions * per_transaction
    assert _ids(engine) == list(range(1, total + 1))
    result = _verify(engine)
    assert result.ok
    assert result.entries == total
    with engine.connect() as conn:
        for node in ("3301", "3302"):
            entries = query(conn, AuditFilter(node=node))
            assert len(entries) == transactions * per_transaction
            # One flush is one contiguous run of entry ids.
            for t in range(transactions):
                ids = [e["entry_id"] for e in entries if e["detail"]["t"] == t]
                assert ids == list(range(ids[0], ids[0] + per_transaction))


# Query and export.


def _seed(engine: Engine) -> None:
    def at(hour: int) -> Callable[[], dt.datetime]:
        return lambda: T0.replace(hour=hour)

    for hour, action, node, table, key in [
        (8, "batch_applied", "3301", None, None),
        (9, "row_applied", "3301", "customer", {"id_type": "01", "id_number": "X1"}),
        (10, "stale", "3302", "loan", {"loan_id": 5}),
        (11, "row_applied", "3302", "customer", {"id_type": "01", "id_number": "X1"}),
        (12, "conflict_opened", None, "customer", {"id_type": "01", "id_number": "X1"}),
    ]:
        with engine.begin() as conn:
            # Version 1 (see _write); the same queries on version-2 lines: test_audit_rows.py.
            writer = AuditWriter(conn, clock=at(hour), group_rows=False)
            writer.append(
                action, node_id=node, batch_id=hour, table=table, key=key, detail={"h": hour}
            )
            writer.flush()


def _ids_of(entries: list[dict[str, Any]]) -> list[int]:
    return [e["entry_id"] for e in entries]


def test_query_filters(engine: Engine) -> None:
    _seed(engine)
    x1 = {"id_number": "X1", "id_type": "01"}
    with engine.connect() as conn:
        assert _ids_of(query(conn)) == [1, 2, 3, 4, 5]
        assert _ids_of(query(conn, AuditFilter(node="3302"))) == [3, 4]
        assert _ids_of(query(conn, AuditFilter(table="customer"))) == [2, 4, 5]
        assert _ids_of(query(conn, AuditFilter(key=x1))) == [2, 4, 5]
        assert _ids_of(query(conn, AuditFilter(table="customer", key=x1, node="3301"))) == [2]
        # JSON text, as `syncd audit log --key` passes it, need not be canonical.
        assert _ids_of(query(conn, AuditFilter(key='{"id_type": "01", "id_number": "X1"}'))) == [
            2,
            4,
            5,
        ]
        assert _ids_of(query(conn, AuditFilter(key='{"loan_id": 5}'))) == [3]
        assert query(conn, AuditFilter(key='"X1"')) == []
        with pytest.raises(UsageError, match="key"):
            query(conn, AuditFilter(key="{not json"))
        assert _ids_of(query(conn, AuditFilter(action="row_applied"))) == [2, 4]
        assert _ids_of(query(conn, AuditFilter(action=Action.STALE))) == [3]
        assert _ids_of(query(conn, AuditFilter(since=T0.replace(hour=10)))) == [3, 4, 5]
        since_aware = dt.datetime(2025, 3, 1, 19, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
        assert _ids_of(query(conn, AuditFilter(since=since_aware))) == [4, 5]
        assert _ids_of(query(conn, limit=2)) == [4, 5]
        assert _ids_of(query(conn, AuditFilter(table="customer"), limit=2)) == [4, 5]
        assert query(conn, limit=0) == []
        assert query(conn, AuditFilter(node="9999")) == []
        with pytest.raises(UsageError, match="limit"):
            query(conn, limit=-1)
        entry = query(conn, AuditFilter(node="3301", table="customer"))[0]
    assert set(entry) == set(EXPORT_COLUMNS)
    assert (entry["ord"], entry["row_hash"]) == (0, None)
    assert entry["row_key"] == x1
    assert entry["detail"] == {"h": 9}
    assert entry["at"] == T0.replace(hour=9)
    assert entry["batch_id"] == 9


def test_export_csv(engine: Engine) -> None:
    _seed(engine)
    out = io.StringIO(newline="")
    with engine.connect() as conn:
        assert export(conn, out, "csv") == 5
        rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
        stored = {r.entry_id: r._asdict() for r in conn.execute(sa.select(audit))}
    assert out.getvalue().splitlines()[0] == ",".join(EXPORT_COLUMNS)
    assert {(r["ord"], r["row_hash"]) for r in rows} == {("0", "")}
    assert [r["entry_id"] for r in rows] == ["1", "2", "3", "4", "5"]
    first, second = rows[0], rows[1]
    assert first["node_id"] == "3301"
    assert first["table_name"] == ""
    assert first["row_key"] == ""
    assert first["at"] == "2025-03-01T08:00:00"
    assert json.loads(first["detail"]) == {"h": 8}
    assert json.loads(second["row_key"]) == {"id_type": "01", "id_number": "X1"}
    for row in rows:
        original = stored[int(row["entry_id"])]
        assert row["entry_hash"] == original["entry_hash"]
        assert row["prev_hash"] == original["prev_hash"]
        assert row["detail"] == original["detail"]


def test_export_json_lines_can_be_verified_offline(engine: Engine) -> None:
    _seed(engine)
    out = io.StringIO()
    with engine.connect() as conn:
        assert export(conn, out, "json") == 5
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    records = [json.loads(line) for line in lines]
    assert set(records[0]) == set(EXPORT_COLUMNS)
    assert records[2]["row_key"] == {"loan_id": 5}
    assert records[2]["detail"] == {"h": 10}
    assert records[4]["node_id"] is None
    prev = GENESIS_HASH
    for record in records:
        assert (record.pop("ord"), record.pop("row_hash")) == (0, None)
        fields = {
            **record,
            "at": dt.datetime.fromisoformat(record["at"]),
            "row_key": None if record["row_key"] is None else canonical(record["row_key"]),
            "detail": canonical(record["detail"]),
        }
        assert record["prev_hash"] == prev
        prev = entry_hash(prev, fields)
        assert record["entry_hash"] == prev


def test_export_applies_filters(engine: Engine) -> None:
    _seed(engine)
    out = io.StringIO()
    with engine.connect() as conn:
        assert (
            export(conn, out, "json", AuditFilter(table="customer", since=T0.replace(hour=10))) == 2
        )
        assert export(conn, io.StringIO(), "csv", AuditFilter(node="none")) == 0
        with pytest.raises(UsageError, match="format"):
            export(conn, io.StringIO(), "xml")  # type: ignore[arg-type]
    assert [json.loads(line)["entry_id"] for line in out.getvalue().splitlines()] == [4, 5]


def test_reads_do_not_change_the_callers_connection(engine: Engine) -> None:
    _write(engine, 3)
    with engine.connect() as conn:
        verify(conn)
        export(conn, io.StringIO(), "csv")
        assert "yield_per" not in conn.get_execution_options()
        assert _count(conn) == 3


def _count(conn: Connection) -> int:
    return int(conn.scalar(sa.select(sa.func.count()).select_from(audit)) or 0)
