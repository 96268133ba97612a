"""The pure chain check (`syncd.core.auditchain`), fed entries as hub and offline verify do."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncd.core.auditchain import (
    COLUMNS,
    GENESIS_HASH,
    ChainCheck,
    covering_detail,
    entry_hash,
    format_anchor,
    from_export_csv,
    parse_export_line,
    row_hash,
)
from syncd.core.canonical import canonical
from syncd.core.errors import UsageError


def chain(n: int) -> list[dict[str, Any]]:
    entries, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        entry: dict[str, Any] = {
            "entry_id": i,
            "at": "2026-11-01T08:00:00",
            "action": "row_applied",
            "node_id": "city-3301" if i % 2 else None,
            "batch_id": i if i % 3 else None,
            "table_name": "customers",
            "row_key": canonical({"customer_id": f"客户{i}"}),
            "detail": canonical({"columns": ["phone"], "amount": "12.50", "f": 0.1}),
            "prev_hash": prev,
        }
        prev = entry["entry_hash"] = entry_hash(prev, entry)
        entries.append(entry)
    return entries


def check(entries: list[dict[str, Any]], against: str | None = None, **kw: Any) -> Any:
    c = ChainCheck(against, **kw)
    for e in entries:
        if not c.feed(e):
            break
    return c.result()


def test_intact_chain_and_anchor() -> None:
    entries = chain(5)
    result = check(entries)
    assert (result.ok, result.entries, result.head_id, result.starts_after) == (True, 5, 5, 0)
    assert check(entries, format_anchor(3, entries[2]["entry_hash"])).ok
    assert check([], format_anchor(0, GENESIS_HASH)).ok


@pytest.mark.parametrize(
    ("change", "broken", "reason"),
    [
        (lambda es: es[2].update(detail="{}"), 3, "modified"),
        (lambda es: es.pop(2), 3, "missing"),
        (lambda es: es[3].update(prev_hash="e" * 64), 4, "prev_hash"),
        (lambda es: es.insert(2, dict(es[1])), 2, "out of sequence"),
    ],
)
def test_each_break_is_named(change: Any, broken: int, reason: str) -> None:
    entries = chain(5)
    change(entries)
    result = check(entries)
    assert (result.ok, result.broken_id) == (False, broken)
    assert reason in result.reason


def test_trust_first_checks_a_tail_and_refuses_an_anchor_before_it() -> None:
    tail = chain(6)[3:]
    assert not check(tail).ok  # from genesis, entry 1 is missing
    result = check(tail, trust_first=True)
    assert (result.ok, result.entries, result.starts_after, result.head_id) == (True, 3, 3, 6)
    early = check(tail, format_anchor(2, "a" * 64), trust_first=True)
    assert (early.ok, early.broken_id) == (False, 2)
    assert "not in the entries checked" in early.reason


def test_malformed_anchor() -> None:
    with pytest.raises(UsageError, match="anchor"):
        ChainCheck("3:xyz")


def test_export_records_give_back_the_stored_fields() -> None:
    (entry,) = chain(1)
    record = {
        **entry,
        "row_key": json.loads(entry["row_key"]),
        "detail": json.loads(entry["detail"]),
    }
    # An export from before version 2 has no ord: every line is an entry (ord 0).
    assert parse_export_line(json.dumps(record, ensure_ascii=False)) == {**entry, "ord": 0}
    cells = {k: "" if entry[k] is None else str(entry[k]) for k in COLUMNS}
    assert from_export_csv(cells) == {**entry, "ord": 0}
    # A row decision's line (version 2): ord and row_hash, no entry hashes.
    row = {**record, "ord": 3, "row_hash": "a" * 64, "prev_hash": None, "entry_hash": None}
    parsed = parse_export_line(json.dumps(row, ensure_ascii=False))
    assert (parsed["ord"], parsed["row_hash"], parsed["detail"]) == (3, "a" * 64, entry["detail"])
    csv_row = {**cells, "ord": "3", "row_hash": "a" * 64, "prev_hash": "", "entry_hash": ""}
    assert from_export_csv(csv_row) == {**parsed, "prev_hash": None, "entry_hash": None}
    with pytest.raises(ValueError, match="entry_id"):
        from_export_csv({**cells, "entry_id": ""})
    with pytest.raises(ValueError, match="JSON object"):
        parse_export_line("[1]")


def covered(n_rows: int) -> list[dict[str, Any]]:
    """Entry 1 (a batch_applied), entry 2 covering n_rows stale decisions, each line as an
    export has it (the row lines with their entry's fields), entry 3 after them."""
    rows = [
        {"action": "stale", "row_key": canonical({"k": i}), "detail": canonical({"seq": i})}
        for i in range(n_rows)
    ]
    hashes = [row_hash(r["action"], r["row_key"], r["detail"]) for r in rows]
    shared = {"at": "2026-11-01T08:00:00", "node_id": "n", "batch_id": 4, "table_name": "t"}
    lines: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for entry_id, action, detail in [
        (1, "batch_applied", "{}"),
        (2, "row_decisions", canonical(covering_detail("stale", hashes))),
        (3, "batch_applied", "{}"),
    ]:
        entry = {"entry_id": entry_id, **shared, "action": action, "row_key": None}
        entry |= {"detail": detail, "prev_hash": prev}
        prev = entry["entry_hash"] = entry_hash(prev, entry)
        lines.append(entry)
        if entry_id == 2:
            lines += [
                {"entry_id": 2, **shared, **r, "ord": i, "row_hash": h}
                for i, (r, h) in enumerate(zip(rows, hashes, strict=True), start=1)
            ]
    return lines


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda ls: ls[2].update(detail='{"seq":9}'), "does not match its row_hash"),
        (lambda ls: ls.pop(3), "out of sequence"),
        (lambda ls: ls.pop(4), "but 2 follow"),
        (lambda ls: ls.insert(5, {**ls[4], "ord": 4}), "more follow"),
        (lambda ls: ls[2].update(batch_id=5), "differs from its entry in batch_id"),
        (lambda ls: ls[2].update(action="row_applied"), "is not a 'stale' decision"),
        (lambda ls: ls.insert(1, {**ls[2], "entry_id": 1}), "covered by no entry"),
    ],
)
def test_row_decisions_add_up_to_their_entry(change: Any, reason: str) -> None:
    lines = covered(3)
    intact = check(lines)
    assert (intact.ok, intact.entries, intact.rows) == (True, 3, 3)
    change(lines)
    result = check(lines)
    assert not result.ok
    assert result.broken_id in (1, 2)
    assert reason in result.reason
