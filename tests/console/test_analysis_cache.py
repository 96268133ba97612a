"""The analysis pages' results, computed in the background (syncd.hub.report_cache): the first
visit computes, then the hub function's figures; a result reused; a stale one refreshed; a
failure shown; the export while nothing is computed; the per-process cap on computations; the
rows a page shows; the typed JSON, the keys and the memo of report_cache."""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from syncd.console.web import when
from syncd.core.i18n import format_amount, format_count
from syncd.hub import analysis, report_cache
from syncd.store import hub_tables as schema_hub
from syncd.store.db import utcnow
from tests.console.conftest import Console
from tests.console.test_analysis_pages import table

BEIJING = ZoneInfo("Asia/Shanghai")  # [console] timezone by default

SEGMENTS = "/analysis/segments?by=type"
SEGMENTS_KEY = report_cache.key_for("segments", {"by": ["type"]})


def _visit(console: Console, client: TestClient, url: str) -> tuple[Any, threading.Thread | None]:
    """The page, and the computation this visit started (None if none)."""
    console.app.state.report_refresh = None
    answer = client.get(url)
    thread = console.app.state.report_refresh
    return answer, thread if isinstance(thread, threading.Thread) else None


def _state(console: Console, key: str = SEGMENTS_KEY) -> report_cache.State:
    with console.node.engine.connect() as conn:
        return report_cache.read(conn, key)


def _age(console: Console, key: str, seconds: float) -> None:
    with console.node.engine.begin() as conn:
        conn.execute(
            schema_hub.console_cache.update()
            .where(schema_hub.console_cache.c.key == key)
            .values(computed_at=utcnow() - dt.timedelta(seconds=seconds))
        )


def test_first_visit_computes_then_the_cached_figures_are_reused_and_refreshed(
    sqlite_console: Console,
) -> None:
    console, client = sqlite_console, sqlite_console.client("manager")
    first, thread = _visit(console, client, SEGMENTS)
    assert first.status_code == 200
    assert 'id="analysis-computing"' in first.text
    assert 'data-refresh-seconds="3"' in first.text
    assert 'id="analysis-queued"' not in first.text  # the turn was free
    assert "segments-table" not in first.text
    assert 'id="export-xlsx"' not in first.text
    assert thread is not None
    thread.join(timeout=30)

    page, again = _visit(console, client, SEGMENTS)
    assert again is None  # fresh: nothing started
    assert 'id="analysis-computing"' not in page.text
    assert "data-refresh-seconds" not in page.text
    node = console.node
    with node.engine.connect() as conn:
        expected = analysis.segments(conn, node.policy, node.settings.report, ["type"])
    _, rows, _ = table(page.text, "segments-table")
    assert [r[1] for r in rows] == [format_count(e["customers"]) for e in expected]
    assert [r[2] for r in rows] == [format_amount(e["deposit_balance"]) for e in expected]
    state = _state(console)
    assert state.result == expected  # typed round trip: Decimal stays Decimal
    assert isinstance(state.result[0]["deposit_balance"], Decimal)
    assert state.computed_at is not None
    assert 'id="analysis-asof"' in page.text
    assert when(state.computed_at, BEIJING) in page.text

    # Reused: more visits, the export too, compute nothing (the same computed_at).
    for url in (SEGMENTS, SEGMENTS + "&unit=wan", SEGMENTS + "&format=xlsx"):
        answer, started = _visit(console, client, url)
        assert answer.status_code == 200, url
        assert started is None
    assert _state(console).computed_at == state.computed_at

    # Stale: the older figures show while a newer result is computed.
    max_age = console.settings.console.report_max_age_seconds
    _age(console, SEGMENTS_KEY, max_age + 60)
    before = _state(console).computed_at
    stale, thread = _visit(console, client, SEGMENTS)
    assert thread is not None
    assert "segments-table" in stale.text
    assert 'id="analysis-computing"' in stale.text
    assert 'data-refresh-seconds="15"' in stale.text
    thread.join(timeout=30)
    after = _state(console).computed_at
    assert before is not None
    assert after is not None
    assert after > before


def test_a_failed_computation_is_shown_and_not_retried_at_once(sqlite_console: Console) -> None:
    console, client = sqlite_console, sqlite_console.client("manager")
    with console.node.engine.begin() as conn:  # a table the analyses read is gone
        conn.exec_driver_sql("DROP TABLE syncd_report_customer_day")
    _, thread = _visit(console, client, SEGMENTS)
    assert thread is not None
    thread.join(timeout=30)
    page, again = _visit(console, client, SEGMENTS)
    assert again is None  # no hot loop
    assert 'id="analysis-error"' in page.text
    assert "syncd_report_customer_day" in page.text
    assert "data-refresh-seconds" not in page.text
    state = _state(console)
    assert state.failed
    assert state.error_at is not None
    assert when(state.error_at, BEIJING) in page.text
    assert not state.pending
    # The export has nothing to write: said at once, with 409.
    export, _ = _visit(console, client, SEGMENTS + "&format=xlsx")
    assert export.status_code == 409
    assert 'id="export-not-ready"' in export.text


def test_an_export_before_any_result_is_409_and_starts_the_computation(
    sqlite_console: Console,
) -> None:
    console, client = sqlite_console, sqlite_console.client("manager")
    answer, thread = _visit(console, client, "/analysis/key?top=2&format=xlsx")
    assert answer.status_code == 409
    assert 'id="export-not-ready"' in answer.text
    assert 'id="analysis-computing"' in answer.text
    assert thread is not None
    thread.join(timeout=30)
    export, again = _visit(console, client, "/analysis/key?top=2&format=xlsx")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert again is None
    # Any top N reads the same computation (the hub's top 10,000, of which the first N).
    page, again = _visit(console, client, "/analysis/key?top=3")
    assert again is None
    assert len(table(page.text, "key-table")[1]) == 3
    # A bad filter is still answered at once, without computing.
    bad, again = _visit(console, client, "/analysis/key?top=0&format=xlsx")
    assert bad.status_code == 400
    assert again is None


def test_one_computation_at_a_time_per_process_the_others_queued(
    sqlite_console: Console,
) -> None:
    """Two pages of different keys with the cap at 1 (the default): while one computation holds
    the console's turn, the other visit's computation is queued, shown so, then runs."""
    console, client = sqlite_console, sqlite_console.client("manager")
    assert console.settings.console.report_workers == 1
    _, running = _visit(console, client, "/analysis/warnings")  # creates the limiter
    assert running is not None
    running.join(timeout=30)
    limiter = console.app.state.report_limiter
    with limiter:  # another computation has the console's one turn
        page, waiting = _visit(console, client, SEGMENTS)
        assert waiting is not None
        assert 'id="analysis-queued"' in page.text
        assert 'id="analysis-computing"' in page.text
        time.sleep(0.2)
        assert waiting.is_alive()
        state = _state(console)
        assert state.queued
        assert state.refreshing_since is None
        assert state.computed_at is None
        again, none = _visit(console, client, SEGMENTS)  # still queued, not started twice
        assert none is None
        assert 'id="analysis-queued"' in again.text
    waiting.join(timeout=30)
    assert not waiting.is_alive()
    state = _state(console)
    assert state.computed_at is not None
    assert not state.pending
    assert "segments-table" in client.get(SEGMENTS).text


def test_the_limiter_runs_one_computation_then_the_next(sqlite_console: Console) -> None:
    """report_cache directly, two keys, cap 1: the second computation starts only once the
    first has finished (its start after the first's end)."""
    engine = sqlite_console.node.engine
    limiter = report_cache.Limiter(1)
    release = threading.Event()
    times: dict[str, tuple[float, float]] = {}

    def compute(name: str, wait: bool) -> report_cache.Compute:
        def run(conn: sa.Connection) -> Any:
            began = time.monotonic()
            if wait:
                assert release.wait(timeout=30)
            times[name] = (began, time.monotonic())
            return [{"name": name, "at": dt.date(2026, 11, 30), "n": Decimal("1.50")}]

        return run

    state = report_cache.State()
    a = report_cache.refresh_in_background(
        engine, "test:a", state, 60, compute("a", True), limiter=limiter
    )
    assert a is not None
    deadline = time.monotonic() + 10
    while limiter.running == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    b = report_cache.refresh_in_background(
        engine, "test:b", state, 60, compute("b", False), limiter=limiter
    )
    assert b is not None
    time.sleep(0.2)
    assert "b" not in times
    with engine.connect() as conn:
        assert report_cache.read(conn, "test:b").queued
        assert report_cache.read(conn, "test:a").refreshing_since is not None
    release.set()
    a.join(timeout=30)
    b.join(timeout=30)
    assert times["b"][0] >= times["a"][1]
    with engine.connect() as conn:
        got = report_cache.read(conn, "test:b")
    assert got.result == [{"name": "b", "at": dt.date(2026, 11, 30), "n": Decimal("1.50")}]


def test_typed_json_round_trip_and_keys() -> None:
    when = dt.datetime(2026, 11, 30, 6, 1, 2, 345678)
    value = {
        "rows": [
            {"a": Decimal("1.10"), "b": None, "c": dt.date(2026, 1, 2), "d": ["x", 1], "e": 3},
            {"a": None, "b": when, "c": dt.date(2026, 1, 3), "d": [], "e": Decimal("2.5")},
        ],
        "one": Decimal("-0.00"),
        "when": when,
        "mixed": [1, "a", Decimal("3"), {"k": dt.date(2026, 2, 1)}],
        "empty": [],
    }
    doc = report_cache.encode(value)
    assert report_cache.decode(doc) == value
    back = report_cache.decode(doc)
    assert isinstance(back["rows"][1]["e"], Decimal)
    assert isinstance(back["rows"][0]["e"], int)  # a column of ints and Decimals keeps both
    assert type(back["rows"][1]["b"]) is dt.datetime
    assert type(back["rows"][0]["c"]) is dt.date
    assert doc["rows"]["types"][0] == "decimal"  # by columns, typed once
    short = report_cache.key_for("segments", {"by": ["type"]})
    assert short == 'segments:{"by":["type"]}'
    long = report_cache.key_for("warnings", {"severity": 1, "reason": ["risk_tag.fraud_alert"]})
    assert len(long) <= 32
    assert long.startswith("warnings#")
    assert long == report_cache.key_for(
        "warnings", {"reason": ["risk_tag.fraud_alert"], "severity": 1}
    )
    assert long != report_cache.key_for("warnings", {"severity": 2, "reason": ["risk_tag"]})


def test_the_memo_keeps_results_by_computed_at_within_its_rows() -> None:
    memo = report_cache.Memo(max_rows=5)
    t = dt.datetime(2026, 11, 30, 6, 0)
    memo.put("a", t, [1, 2, 3])
    assert memo.get("a", t) == (True, [1, 2, 3])
    assert memo.get("a", t + dt.timedelta(seconds=1)) == (False, None)  # a newer result
    memo.put("b", t, [1, 2])
    memo.get("a", t)  # a used last
    memo.put("c", t, [1])  # 6 rows: the least recently used (b) goes
    assert [memo.get(k, t)[0] for k in "abc"] == [True, False, True]
    memo.put("d", t, list(range(6)))  # more than the memo holds: not kept
    assert not memo.get("d", t)[0]


def test_a_page_shows_its_first_rows_the_export_all(
    sqlite_console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.console.pages import analysis as pages

    monkeypatch.setattr(pages, "SHOWN_ROWS", 2)
    console, client = sqlite_console, sqlite_console.client("manager")
    _, thread = _visit(console, client, "/analysis/key?top=4")
    assert thread is not None
    thread.join(timeout=30)
    page = client.get("/analysis/key?top=4")
    assert len(table(page.text, "key-table")[1]) == 2
    assert 'id="rows-cut"' in page.text
    export = client.get("/analysis/key?top=4&format=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(export.content)).worksheets[0]
    assert sheet.max_row == 1 + 4
    assert 'id="rows-cut"' not in client.get("/analysis/key?top=2").text
