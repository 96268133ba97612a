"""Audit queries an auditor uses, on real SQLite and PostgreSQL hubs: a golden record's
history across cities, pages with what is left, the columns an applied row changed."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from syncd.core.errors import UsageError
from syncd.hub.apply import apply_pending
from syncd.hub.audit import Action
from syncd.hub.audit_file import verify_file
from syncd.hub.audit_golden import golden_scope
from syncd.hub.audit_query import (
    AuditFilter,
    count,
    export,
    format_position,
    left_out,
    query,
    query_page,
)
from tests.integration.test_apply import (
    LI,
    POLICY,
    ZHANG,
    customer,
    golden_of,
    make_hub,
    rm,
    submit,
    two_cities,
    up,
)


@pytest.fixture
def hub(db_url: str) -> Iterator[Engine]:
    engine = make_hub(db_url)
    yield engine
    engine.dispose()


def _history(hub: Engine) -> None:
    """Zhang in two cities (under different customer ids), Li in one, then edits and a delete."""
    two_cities(hub)
    submit(
        hub,
        "hz",
        [
            up(1, "customers", customer("c1", ZHANG)),
            up(2, "customers", customer("c2", LI, name="李四")),
        ],
    )
    submit(hub, "nb", [up(1, "customers", customer("n7", ZHANG, customer_type="corporate"))])
    apply_pending(hub, POLICY)
    submit(hub, "hz", [up(3, "customers", customer("c1", ZHANG, phone="13900000000"))])
    submit(hub, "nb", [rm(2, "customers", {"customer_id": "n7"})])
    apply_pending(hub, POLICY)


def _entries(hub: Engine, flt: AuditFilter) -> list[dict[str, Any]]:
    with hub.connect() as conn:
        return query(conn, flt)


def _scope(hub: Engine, **kwargs: Any) -> AuditFilter:
    with hub.connect() as conn:
        return AuditFilter(golden=golden_scope(conn, POLICY, **kwargs))


def _about(entries: list[dict[str, Any]]) -> list[tuple[str, str | None, Any]]:
    return [(e["action"], e["node_id"], e["row_key"]) for e in entries]


def test_id_number_finds_every_entry_of_one_golden_record_across_cities(hub: Engine) -> None:
    _history(hub)
    zhang = golden_of(hub, ZHANG)["golden_id"]
    # Typed as people type it: spaces, hyphens, full-width digits, a lowercase check letter.
    typed = " ".join([ZHANG[:6], ZHANG[6:14], ZHANG[14:]]).lower()
    typed = typed.replace("3", "３")
    entries = _entries(hub, _scope(hub, id_number=typed))
    assert _about(entries) == [
        ("row_applied", "hz", {"customer_id": "c1"}),
        ("conflict_opened", None, {"id_number": ZHANG, "id_type": "ric"}),
        ("row_applied", "nb", {"customer_id": "n7"}),
        ("row_applied", "hz", {"customer_id": "c1"}),
        ("conflict_superseded", None, None),  # found by its golden_id
        ("row_applied", "nb", {"customer_id": "n7"}),
    ]
    assert {e["detail"].get("golden_id", zhang) for e in entries} == {zhang}
    # --golden-id finds the same; Li's record is apart.
    assert _entries(hub, _scope(hub, golden_id=zhang)) == entries
    li = _entries(hub, _scope(hub, id_number=LI))
    assert _about(li) == [("row_applied", "hz", {"customer_id": "c2"})]
    # Combined with other criteria (AND), and an unknown number finds nothing.
    with hub.connect() as conn:
        scope = golden_scope(conn, POLICY, id_number=ZHANG)
        assert len(query(conn, AuditFilter(node="nb", golden=scope))) == 2
        assert query(conn, AuditFilter(golden=golden_scope(conn, POLICY, id_number="X"))) == []
        assert query(conn, AuditFilter(golden=golden_scope(conn, POLICY, golden_id=999))) == []


def test_golden_scope_refuses_what_it_cannot_answer(hub: Engine) -> None:
    with hub.connect() as conn:
        with pytest.raises(UsageError, match="one of --golden-id or --id-number"):
            golden_scope(conn, POLICY)
        with pytest.raises(UsageError, match="--table loans"):
            golden_scope(conn, POLICY, table="loans", golden_id=1)


def _positions(entries: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(e["entry_id"], e["ord"]) for e in entries]


def test_pages_say_how_many_older_entries_are_left(hub: Engine) -> None:
    _history(hub)
    with hub.connect() as conn:
        # Lines: each entry (ord 0) and each row decision its entry covers (ord 1, 2, ...).
        every = _positions(query(conn))
        total = count(conn)
        assert total == len(every) > len({entry_id for entry_id, _ in every})
        page = query_page(conn, AuditFilter(), limit=3)
        assert _positions(page.entries) == every[-3:]
        assert (page.more, page.next_before) == (total - 3, format_position(every[-3]))
        older = query_page(conn, AuditFilter(), limit=3, before=page.next_before)
        assert _positions(older.entries) == every[-6:-3]
        assert older.more == total - 6
        last = query_page(conn, AuditFilter(), limit=total, before=4)
        assert (_positions(last.entries), last.more, last.next_before) == (
            [p for p in every if p[0] < 4],
            0,
            None,
        )
        exact = query_page(conn, AuditFilter(action=Action.BATCH_APPLIED), limit=4)
        assert (len(exact.entries), exact.more) == (4, 0)
        assert left_out(conn, AuditFilter(), limit=3) == (total - 3, format_position(every[-3]))
        assert left_out(conn, AuditFilter(), limit=None) == (0, None)


def test_applied_rows_name_the_columns_they_changed(hub: Engine) -> None:
    _history(hub)
    applied = _entries(hub, AuditFilter(action=Action.ROW_APPLIED, table="customers"))
    by_version = {(e["node_id"], e["detail"]["seq"]): e["detail"] for e in applied}
    every = list(POLICY.table("customers").public_columns)
    assert by_version["hz", 1]["columns"] == every
    assert by_version["nb", 1]["columns"] == every
    # The update changed phone only (updated_at is the same T0 in this test's rows).
    assert by_version["hz", 3]["columns"] == ["phone"]
    assert "columns" not in by_version["nb", 2]  # a delete writes no values
    # Back after a delete: every column again.
    submit(hub, "nb", [up(3, "customers", customer("n7", ZHANG))])
    apply_pending(hub, POLICY)
    (back,) = _entries(
        hub, AuditFilter(action=Action.ROW_APPLIED, node="nb", key='{"customer_id":"n7"}')
    )[-1:]
    assert back["detail"]["columns"] == every


def test_unchanged_resend_names_no_columns(hub: Engine) -> None:
    two_cities(hub)
    row = customer("c1", ZHANG, risk_tags=["vip", "new"], credit_limit="1200.50")
    submit(hub, "hz", [up(1, "customers", row)])
    apply_pending(hub, POLICY)
    submit(hub, "hz", [up(2, "customers", dict(row))])
    apply_pending(hub, POLICY)
    entries = _entries(hub, AuditFilter(action=Action.ROW_APPLIED))
    assert entries[-1]["detail"]["columns"] == []


def test_export_of_a_hub_verifies_offline(hub: Engine, tmp_path: Path) -> None:
    _history(hub)
    for fmt in ("json", "csv"):
        path = tmp_path / f"audit.{fmt}"
        with hub.connect() as conn, path.open("w", encoding="utf-8", newline="") as fh:
            export(conn, fh, fmt)  # type: ignore[arg-type]
        result = verify_file(path)
        assert result.ok, result
        entries, rows = count_all(hub)
        assert (result.entries, result.rows, result.starts_after) == (entries, rows, 0)
        assert verify_file(path, result.anchor).ok


def count_all(hub: Engine) -> tuple[int, int]:
    """How many chain entries, and how many row decisions they cover."""
    with hub.connect() as conn:
        lines = query(conn)
    entries = sum(1 for e in lines if not e["ord"])
    return entries, len(lines) - entries


def test_export_from_a_later_entry_verifies_from_there(hub: Engine, tmp_path: Path) -> None:
    _history(hub)
    path = tmp_path / "tail.jsonl"
    out = io.StringIO()
    with hub.connect() as conn:
        export(conn, out, "json", limit=4)
    path.write_text(out.getvalue(), encoding="utf-8")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    # Row decisions before the first entry of the export have no entry to be checked by.
    entries = [e["entry_id"] for e in lines if not e["ord"]]
    result = verify_file(path)
    assert (result.ok, result.entries, result.starts_after) == (True, len(entries), entries[0] - 1)
    early = verify_file(path, f"1:{'0' * 64}")
    assert not early.ok
    assert "not in the entries checked" in (early.reason or "")
