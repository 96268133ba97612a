"""Version-2 audit entries: the row decisions of one batch, table and outcome under one chained
entry committing to their hashes, on real SQLite and PostgreSQL. Writing, reading them back
as one line per decision, and catching an edited, inserted or removed decision in the
database and in an export. (Version-1 chains: test_audit.py.)"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd.core.auditchain import EXPORT_COLUMNS, row_hash, rows_hash
from syncd.core.canonical import canonical
from syncd.hub.audit import Action, AuditWriter, install_append_only, verify
from syncd.hub.audit_file import verify_file
from syncd.hub.audit_query import AuditFilter, export, query, query_page
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


def _batch(engine: Engine, batch_id: int = 7, *, node: str = "3301", loans: int = 3) -> None:
    """One batch's decisions in the order rows.py makes them: a refusal, stale rows, a conflict
    opened by the merge, applied rows of two tables, a quarantined row, the batch entry."""
    with engine.begin() as conn:
        w = AuditWriter(conn, clock=lambda: T0)

        def decide(action: str, table: str, key: dict[str, Any], **detail: Any) -> None:
            w.append(action, node_id=node, batch_id=batch_id, table=table, key=key, detail=detail)

        decide(Action.REFUSED_ROW, "visit", {"visit_id": 1}, reason="local table")
        decide(Action.STALE, "loan", {"loan_id": 90}, seq=1, stored_seq=5)
        w.append(
            Action.CONFLICT_OPENED, table="customer", key={"id_number": "X1"}, detail={"c": "tel"}
        )
        for i in range(loans):
            decide(Action.ROW_APPLIED, "loan", {"loan_id": i}, op="upsert", seq=10 + i)
            decide(Action.ROW_APPLIED, "customer", {"id_number": f"X{i}"}, golden_id=i + 1)
        decide(Action.STALE, "loan", {"loan_id": 91}, seq=2, stored_seq=6)
        decide(Action.QUARANTINED, "loan", {"loan_id": 92}, reason="bad amount")
        w.append(Action.BATCH_APPLIED, node_id=node, batch_id=batch_id, detail={"rows": 10})
        assert w.flush() == 6 + 2 * loans


def _entries(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [r._asdict() for r in conn.execute(sa.select(audit).order_by(audit.c.entry_id))]


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        stmt = sa.select(audit_rows).order_by(audit_rows.c.entry_id, audit_rows.c.ord)
        return [r._asdict() for r in conn.execute(stmt)]


def _tamper(engine: Engine, *stmts: sa.Executable) -> None:
    """Change the log the way a superuser would, past the append-only triggers."""
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for stmt in stmts:
            conn.execute(stmt)


def _verify(engine: Engine, against: str | None = None) -> Any:
    with engine.connect() as conn:
        return verify(conn, against)


def test_one_entry_per_batch_table_and_outcome_committing_to_its_rows(engine: Engine) -> None:
    _batch(engine)
    entries = _entries(engine)
    # Each group stands where its first decision was appended; the others keep their place.
    assert [(e["action"], e["table_name"]) for e in entries] == [
        ("row_decisions", "visit"),
        ("row_decisions", "loan"),  # stale
        ("conflict_opened", "customer"),
        ("row_decisions", "loan"),  # applied
        ("row_decisions", "customer"),
        ("row_decisions", "loan"),  # quarantined
        ("batch_applied", None),
    ]
    details = [json.loads(e["detail"]) for e in entries]
    assert [(d.get("action"), d.get("count")) for d in details] == [
        ("refused_row", 1), ("stale", 2), (None, None), ("row_applied", 3),
        ("row_applied", 3), ("quarantined", 1), (None, None),
    ]  # fmt: skip
    covering = [e for e in entries if e["action"] == "row_decisions"]
    assert all((e["node_id"], e["batch_id"], e["row_key"]) == ("3301", 7, None) for e in covering)
    assert all(json.loads(e["detail"])["version"] == 2 for e in covering)

    rows = _rows(engine)
    assert len(rows) == 10
    stale = [r for r in rows if r["entry_id"] == 2]
    assert [(r["ord"], r["action"], r["row_key"], r["detail"]) for r in stale] == [
        (1, "stale", '{"loan_id":90}', '{"seq":1,"stored_seq":5}'),
        (2, "stale", '{"loan_id":91}', '{"seq":2,"stored_seq":6}'),
    ]
    for e in covering:
        mine = [r for r in rows if r["entry_id"] == e["entry_id"]]
        assert [r["ord"] for r in mine] == list(range(1, len(mine) + 1))
        for r in mine:
            assert r["row_hash"] == row_hash(r["action"], r["row_key"], r["detail"])
        assert json.loads(e["detail"])["rows_hash"] == rows_hash([r["row_hash"] for r in mine])

    result = _verify(engine)
    assert result.ok, result.reason
    assert (result.entries, result.rows, result.head_id) == (7, 10, 7)


def test_the_row_hash_is_the_documented_canonical_json() -> None:
    def documented(action: str, row_key: Any, detail: Any) -> str:
        body = {"action": action, "detail": detail, "row_key": row_key}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    key, detail = {"k": '张"\\\n'}, {"b": [1, 0.1, None], "a": {"z": "x", "c": True}}
    stored_key, stored_detail = canonical(key), canonical(detail)
    assert row_hash("stale", stored_key, stored_detail) == documented("stale", key, detail)
    assert row_hash("refused_row", None, "{}") == documented("refused_row", None, {})


def test_rewind_forgets_rolled_back_row_decisions(engine: Engine) -> None:
    with engine.begin() as conn:
        w = AuditWriter(conn)
        w.append(Action.ROW_APPLIED, node_id="3301", batch_id=1, table="loan", key={"loan_id": 1})
        mark = w.mark()
        w.append(Action.ROW_APPLIED, node_id="3301", batch_id=1, table="loan", key={"loan_id": 2})
        w.append(Action.STALE, node_id="3301", batch_id=1, table="loan", key={"loan_id": 3})
        w.rewind(mark)
        w.append(Action.QUARANTINED, node_id="3301", batch_id=1, table="loan", key={"loan_id": 2})
        w.append(Action.ROW_APPLIED, node_id="3301", batch_id=1, table="loan", key={"loan_id": 4})
        assert w.flush() == 3
    assert [(r["entry_id"], r["ord"], r["action"], r["row_key"]) for r in _rows(engine)] == [
        (1, 1, "row_applied", '{"loan_id":1}'),
        (1, 2, "row_applied", '{"loan_id":4}'),
        (2, 1, "quarantined", '{"loan_id":2}'),
    ]
    assert _verify(engine).ok


def test_a_row_decision_without_a_batch_stays_an_entry_of_its_own(engine: Engine) -> None:
    with engine.begin() as conn:
        w = AuditWriter(conn)
        w.append(Action.STALE, node_id="3301", table="loan", key={"loan_id": 1}, detail={"q": 1})
        w.flush()
    assert [e["action"] for e in _entries(engine)] == ["stale"]
    assert _rows(engine) == []
    assert _verify(engine).ok


def test_old_entries_and_new_ones_verify_as_one_chain(engine: Engine) -> None:
    with engine.begin() as conn:
        old = AuditWriter(conn, clock=lambda: T0, group_rows=False)  # as syncd wrote before
        for i in range(3):
            key, detail = {"loan_id": i}, {"seq": i}
            old.append(
                Action.ROW_APPLIED, node_id="3301", batch_id=1, table="loan", key=key, detail=detail
            )
        old.append(Action.BATCH_APPLIED, node_id="3301", batch_id=1)
        old.flush()
    _batch(engine, 2)
    entries = _entries(engine)
    assert [e["action"] for e in entries[:4]] == ["row_applied"] * 3 + ["batch_applied"]
    assert entries[4]["prev_hash"] == entries[3]["entry_hash"]
    result = _verify(engine)
    assert result.ok, result.reason
    assert (result.entries, result.rows) == (11, 10)
    # Readers see one line per row decision, old and new alike.
    with engine.connect() as conn:
        applied = query(conn, AuditFilter(action="row_applied", table="loan"))
    assert [(e["entry_id"], e["ord"], e["row_key"]) for e in applied] == [
        (1, 0, {"loan_id": 0}), (2, 0, {"loan_id": 1}), (3, 0, {"loan_id": 2}),
        (8, 1, {"loan_id": 0}), (8, 2, {"loan_id": 1}), (8, 3, {"loan_id": 2}),
    ]  # fmt: skip


# Tampering with row decisions in the database: each case is caught at the covering entry.

R = audit_rows.c


def _loan_applied_entry(engine: Engine) -> int:
    return next(
        e["entry_id"]
        for e in _entries(engine)
        if e["table_name"] == "loan" and '"action":"row_applied"' in e["detail"]
    )


@pytest.mark.parametrize("recompute", [False, True])
def test_an_edited_row_decision_is_detected(engine: Engine, recompute: bool) -> None:
    _batch(engine)
    eid = _loan_applied_entry(engine)
    detail = '{"op":"delete","seq":11}'
    values: dict[str, Any] = {"detail": detail}
    if recompute:  # a careful forger fixes the row's own hash too: rows_hash still differs
        values["row_hash"] = row_hash("row_applied", '{"loan_id":1}', detail)
    _tamper(engine, sa.update(audit_rows).where(R.entry_id == eid, R.ord == 2).values(**values))
    result = _verify(engine)
    assert not result.ok
    assert result.broken_id == eid
    expected = "rows_hash" if recompute else f"row decision {eid}.2 does not match its row_hash"
    assert expected in (result.reason or "")
    assert result.head_id == eid  # the covering entry itself chained; its rows did not add up


def test_a_deleted_row_decision_is_detected(engine: Engine) -> None:
    _batch(engine)
    eid = _loan_applied_entry(engine)
    _tamper(engine, sa.delete(audit_rows).where(R.entry_id == eid, R.ord == 2))
    result = _verify(engine)
    assert (result.ok, result.broken_id) == (False, eid)
    assert "out of sequence" in (result.reason or "")


def test_a_deleted_last_row_decision_is_detected(engine: Engine) -> None:
    _batch(engine)
    eid = _loan_applied_entry(engine)
    _tamper(engine, sa.delete(audit_rows).where(R.entry_id == eid, R.ord == 3))
    result = _verify(engine)
    assert (result.ok, result.broken_id) == (False, eid)
    assert "covers 3 row decisions but 2 follow" in (result.reason or "")


def test_deleting_every_row_decision_of_the_last_entry_is_detected(engine: Engine) -> None:
    _batch(engine)
    with engine.begin() as conn:
        w = AuditWriter(conn)
        w.append(Action.STALE, node_id="3302", batch_id=8, table="loan", key={"loan_id": 1})
        w.flush()
    last = _entries(engine)[-1]["entry_id"]
    _tamper(engine, sa.delete(audit_rows).where(R.entry_id == last))
    result = _verify(engine)
    assert (result.ok, result.broken_id) == (False, last)
    assert "removed" in (result.reason or "")


def _row(entry_id: int, ord_: int, key: str = '{"loan_id":999}') -> dict[str, Any]:
    detail = '{"op":"upsert","seq":99}'
    return {"entry_id": entry_id, "ord": ord_, "action": "row_applied", "row_key": key,
            "detail": detail, "row_hash": row_hash("row_applied", key, detail)}  # fmt: skip


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("after", "more follow"),  # ord count + 1 of the entry
        ("orphan", "covered by no entry"),  # under an entry that covers no rows
        ("past", "covered by no entry"),  # under an entry id past the head
    ],
)
def test_an_inserted_row_decision_is_detected(engine: Engine, where: str, reason: str) -> None:
    _batch(engine)
    eid = _loan_applied_entry(engine)
    target = {"after": (eid, 4), "orphan": (3, 1), "past": (99, 1)}[where]
    with engine.begin() as conn:  # INSERT is what the append-only table allows
        conn.execute(sa.insert(audit_rows), _row(*target))
    result = _verify(engine)
    assert (result.ok, result.broken_id) == (False, target[0])
    assert reason in (result.reason or "")


def test_renumbered_rows_after_an_insert_are_detected(engine: Engine) -> None:
    """A decision slipped into the middle, the later ones moved up: the count no longer holds."""
    _batch(engine)
    eid = _loan_applied_entry(engine)
    _tamper(
        engine,
        sa.update(audit_rows).where(R.entry_id == eid, R.ord == 3).values(ord=4),
        sa.insert(audit_rows).values(**_row(eid, 3)),
    )
    result = _verify(engine)
    assert (result.ok, result.broken_id) == (False, eid)
    # The forged third decision completes the count, and the three do not add up.
    assert "do not match its rows_hash" in (result.reason or "")


def test_a_changed_covering_entry_is_detected(engine: Engine) -> None:
    _batch(engine)
    eid = _loan_applied_entry(engine)
    entry = next(e for e in _entries(engine) if e["entry_id"] == eid)
    detail = entry["detail"].replace('"count":3', '"count":2')
    _tamper(engine, sa.update(audit).where(audit.c.entry_id == eid).values(detail=detail))
    result = _verify(engine)
    assert (result.ok, result.broken_id) == (False, eid)
    assert "modified" in (result.reason or "")


def test_postgres_refuses_changes_to_row_decisions(pg_url: str) -> None:
    eng = create_engine(pg_url)
    try:
        audit.create(eng)
        audit_rows.create(eng)
        with eng.begin() as conn:
            install_append_only(conn)
        _batch(eng)
        for stmt in (
            "UPDATE syncd_audit_row SET detail = '{}' WHERE ord = 1",
            "DELETE FROM syncd_audit_row WHERE ord = 2",
            "TRUNCATE syncd_audit_row",
        ):
            with (
                pytest.raises(sa.exc.DBAPIError, match="syncd_audit is append-only"),
                eng.begin() as conn,
            ):
                conn.exec_driver_sql(stmt)
        assert len(_rows(eng)) == 10
        assert _verify(eng).ok
    finally:
        eng.dispose()


# Reading: one line per row decision.


def test_lines_filter_and_page_through_row_decisions(engine: Engine) -> None:
    _batch(engine, 7, node="3301")
    _batch(engine, 8, node="3302", loans=2)
    with engine.connect() as conn:
        everything = query(conn)
        assert len(everything) == 7 + 10 + 7 + 8
        assert [(e["entry_id"], e["ord"]) for e in everything] == sorted(
            (e["entry_id"], e["ord"]) for e in everything
        )
        row = next(e for e in everything if e["ord"] == 2 and e["action"] == "stale")
        assert row == {
            "entry_id": 2, "ord": 2, "at": T0, "action": "stale", "node_id": "3301",
            "batch_id": 7, "table_name": "loan", "row_key": {"loan_id": 91},
            "detail": {"seq": 2, "stored_seq": 6}, "prev_hash": None, "entry_hash": None,
            "row_hash": row["row_hash"],
        }  # fmt: skip
        assert set(row) == set(EXPORT_COLUMNS)

        loans = query(conn, AuditFilter(node="3302", table="loan", action="row_applied"))
        assert [e["row_key"] for e in loans] == [{"loan_id": 0}, {"loan_id": 1}]
        assert {e["batch_id"] for e in loans} == {8}
        by_key = query(conn, AuditFilter(table="customer", key={"id_number": "X1"}))
        assert [(e["node_id"], e["action"]) for e in by_key] == [
            (None, "conflict_opened"),
            ("3301", "row_applied"),
            (None, "conflict_opened"),
            ("3302", "row_applied"),
        ]
        covering = query(conn, AuditFilter(action="row_decisions", node="3301"))
        assert len(covering) == 5

        # Pages of 2 lines through 3301's 6 applied rows: positions inside an entry.
        flt = AuditFilter(node="3301", action="row_applied")
        seen: list[tuple[int, int]] = []
        before: Any = None
        while True:
            page = query_page(conn, flt, limit=2, before=before)
            seen = [(e["entry_id"], e["ord"]) for e in page.entries] + seen
            if page.next_before is None:
                break
            before = page.next_before
        assert seen == [(4, 1), (4, 2), (4, 3), (5, 1), (5, 2), (5, 3)]
        first = query_page(conn, flt, limit=2)
        assert (first.more, first.next_before) == (4, "5.2")
        assert query_page(conn, flt, limit=4, before="5").next_before is None
        assert [e["ord"] for e in query_page(conn, flt, limit=9, before="5").entries] == [1, 2, 3]


def test_export_then_verify_offline_and_catch_edits(engine: Engine, tmp_path: Path) -> None:
    _batch(engine, 7)
    with engine.begin() as conn:
        old = AuditWriter(conn, clock=lambda: T0, group_rows=False)
        old.append(Action.ROW_APPLIED, node_id="3301", batch_id=9, table="loan", key={"loan_id": 5})
        old.flush()
    _batch(engine, 8, node="3302", loans=2)
    for fmt in ("json", "csv"):
        path = tmp_path / f"audit.{fmt}"
        with engine.connect() as conn, path.open("w", encoding="utf-8", newline="") as fh:
            assert export(conn, fh, fmt) == 7 + 10 + 1 + 7 + 8  # type: ignore[arg-type]
        result = verify_file(path)
        assert result.ok, result.reason
        assert (result.entries, result.rows) == (15, 18)
        assert verify_file(path, _verify(engine).anchor).ok

    path = tmp_path / "audit.json"
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    pos = next(i for i, r in enumerate(records) if r["ord"] == 2 and r["table_name"] == "loan")
    eid = records[pos]["entry_id"]

    def broken(changed: list[dict[str, Any]]) -> Any:
        bad = tmp_path / "bad.json"
        bad.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in changed))
        return verify_file(bad)

    edited = [dict(r) for r in records]
    edited[pos]["detail"] = {**edited[pos]["detail"], "seq": 999}
    inserted = [*records[: pos + 1], {**records[pos], "ord": 3}, *records[pos + 1 :]]
    deleted = records[:pos] + records[pos + 1 :]
    moved = [dict(r) for r in records]
    moved[pos]["node_id"] = "3309"  # the line claims another city than its entry
    for changed, reason in [
        (edited, "does not match its row_hash"),
        (inserted, "covers 2 row decisions but more follow"),
        (deleted, "covers 2 row decisions but 1 follow"),
        (moved, "differs from its entry in node_id"),
    ]:
        result = broken(changed)
        assert (result.ok, result.broken_id) == (False, eid), reason
        assert reason in (result.reason or "")


def test_an_export_starting_inside_an_entry_checks_from_the_next_entry(
    engine: Engine, tmp_path: Path
) -> None:
    _batch(engine, 7)
    _batch(engine, 8)
    path = tmp_path / "tail.json"
    with engine.connect() as conn, path.open("w", encoding="utf-8") as fh:
        export(conn, fh, "json", limit=14)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first["ord"] > 0  # the page starts among an entry's row decisions
    result = verify_file(path)
    assert result.ok, result.reason
    assert result.starts_after > first["entry_id"] - 1


def test_an_export_is_what_audit_log_shows(engine: Engine) -> None:
    _batch(engine)
    out = io.StringIO()
    with engine.connect() as conn:
        export(conn, out, "json", AuditFilter(action="stale"))
        shown = query(conn, AuditFilter(action="stale"))
    exported = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["entry_id"], r["ord"], r["row_key"]) for r in exported] == [
        (e["entry_id"], e["ord"], e["row_key"]) for e in shown
    ]
    assert [r["row_key"] for r in exported] == [{"loan_id": 90}, {"loan_id": 91}]


def test_an_export_written_before_row_decisions_still_verifies(
    engine: Engine, tmp_path: Path
) -> None:
    """Ten CSV columns and no `ord` in JSON, as `audit export` wrote them before version 2."""
    with engine.begin() as conn:
        old = AuditWriter(conn, clock=lambda: T0, group_rows=False)
        for i in range(3):
            old.append(Action.ROW_APPLIED, node_id="3301", batch_id=1, table="loan", key={"i": i})
        old.flush()
    for fmt in ("json", "csv"):
        out = io.StringIO(newline="")
        with engine.connect() as conn:
            export(conn, out, fmt)  # type: ignore[arg-type]
        if fmt == "json":
            records = [json.loads(line) for line in out.getvalue().splitlines()]
            for r in records:
                del r["ord"], r["row_hash"]
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        else:
            rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
            assert rows[0][-2:] == ["ord", "row_hash"]
            buf = io.StringIO(newline="")
            csv.writer(buf).writerows(row[:-2] for row in rows)
            text = buf.getvalue()
        path = tmp_path / f"old.{fmt}"
        path.write_text(text, encoding="utf-8", newline="")
        result = verify_file(path)
        assert (result.ok, result.entries, result.rows) == (True, 3, 0), result.reason
        forged = text.replace('""i"":1', '""i"":7').replace('"i": 1', '"i": 7')  # CSV, JSON
        assert forged != text
        path.write_text(forged, encoding="utf-8", newline="")
        assert (verify_file(path).ok, verify_file(path).broken_id) == (False, 2)
