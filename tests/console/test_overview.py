"""The province overview: the figures of `report cities` and `report trend`, from the cache that
a background refresh fills (syncd.hub.overview), on the fixed province of test_reports."""

from __future__ import annotations

import datetime as dt
import re
import threading
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi.testclient import TestClient

from syncd.console.web import when
from syncd.core.i18n import Unit, format_amount, format_count
from syncd.hub import analysis, reports
from syncd.hub import overview as cache
from syncd.store import hub_tables as schema_hub
from syncd.store.db import utcnow
from tests.console.conftest import Console
from tests.integration.test_reports import deposit

BEIJING = ZoneInfo("Asia/Shanghai")  # [console] timezone by default

D = Decimal


def _refreshed(console: Console, client: TestClient, url: str = "/overview") -> str:
    """The page once the refresh its visit started has finished."""
    console.app.state.overview_refresh = None
    first = client.get(url)
    assert first.status_code == 200, first.text
    thread = console.app.state.overview_refresh
    assert isinstance(thread, threading.Thread), "the visit started no refresh"
    thread.join(timeout=30)
    assert not thread.is_alive()
    page = client.get(url)
    assert page.status_code == 200
    return page.text


def _cells(html: str, table: str) -> dict[str, dict[str, str]]:
    """node_id -> data-key -> the cell's text, of the table with id `table`."""
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    rows: dict[str, dict[str, str]] = {}
    for node, row in re.findall(r'<tr data-node="([^"]+)"[^>]*>(.*?)</tr>', body, re.S):
        cells = re.findall(
            r'<td class="num"(?: data-since="([^"]+)")? data-key="([^"]+)">([^<]*)</td>', row
        )
        rows[node] = {(f"{since}:{key}" if since else key): text for since, key, text in cells}
    return rows


def _name(console: Console, node: str, name: str) -> None:
    with console.node.engine.begin() as conn:
        conn.execute(
            schema_hub.nodes.update()
            .where(schema_hub.nodes.c.node_id == node)
            .values(display_name=name)
        )


def test_first_visit_computes_then_shows_the_cli_figures(console: Console) -> None:
    """Both dialects: the cache row, the lease, the figures of `report cities`, the trend."""
    _name(console, "city-3301", "杭州")
    engine, policy = console.node.engine, console.node.policy
    today = analysis.today()
    with engine.begin() as conn:  # yesterday's snapshot, then a deposit more in city-3301
        analysis.take_snapshot(
            conn, policy, console.settings.report, as_of=today - dt.timedelta(days=1)
        )
        md = schema_hub.policy_metadata(policy)
        conn.execute(
            sa.insert(md.tables["deposit_accounts"]), [deposit("city-3301", "A9", "C2", "700.25")]
        )
    client = console.client("manager")
    console.app.state.overview_refresh = None
    first = client.get("/overview")
    assert first.status_code == 200
    assert 'id="overview-computing"' in first.text
    assert "data-refresh-seconds" in first.text
    assert 'id="overview-table"' not in first.text
    thread = console.app.state.overview_refresh
    assert isinstance(thread, threading.Thread)
    thread.join(timeout=30)
    html = client.get("/overview").text

    # The figures of `syncd report cities`, through the CLI's function.
    with engine.connect() as conn:
        cli = analysis.with_province_total(reports.city_summary(conn), reports.CITY_SUMS)
        trend = analysis.trend(conn, policy, console.settings.report, "yesterday")
    cells = _cells(html, "overview-table")
    assert list(cells) == ["city-3301", "city-3302", "city-3303", "province"]
    for row in cli:
        shown = cells[row["node_id"]]
        npl = row["loan_substandard"] + row["loan_doubtful"] + row["loan_loss"]
        assert shown == {
            "customers": format_count(row["customers"]),
            "deposit_balance": format_amount(row["deposit_balance"]),
            "loan_balance": format_amount(row["loan_balance"]),
            "npl_balance": format_amount(npl),
            "fee_income": format_amount(row["fee_income"]),
        }
    # By hand: A1 + A2 + A9; L2 substandard; the province total (471000.75 + 700.25).
    assert cells["city-3301"]["deposit_balance"] == "150,700.75"
    assert cells["city-3301"]["npl_balance"] == "80,000.00"
    assert cells["city-3303"]["npl_balance"] == "40,000.00"  # the orphan loss loan N1
    assert cells["province"]["deposit_balance"] == "471,701.00"
    assert cells["province"]["customers"] == "5"
    assert "杭州" in html
    assert "全省" in html

    # The change since yesterday is `report trend --since yesterday`'s.
    changes = _cells(html, "trend-table")
    for row in trend:
        for key in analysis.TREND_FIGURES:
            value = row[f"{key}_change"]
            text = format_count(value) if key == "customers" else format_amount(value)
            assert changes[row["node_id"]][f"yesterday:{key}"] == ("+" if value > 0 else "") + text
    assert changes["city-3301"]["yesterday:deposit_balance"] == "+700.25"
    assert changes["province"]["yesterday:deposit_balance"] == "+700.25"
    if today.day != 1:  # month-end is before yesterday's snapshot: none on or before it
        month_end = analysis.since_date("month-end", today).isoformat()
        cell = '<td colspan="5" class="muted" data-since="month-end">'
        assert html.count(cell) == 4
        assert month_end in html.split(cell, 1)[1].split("</td>")[0]

    # The as-of time, the charts, the ids a browser test uses; the cached row itself.
    state = client.get("/overview")
    assert console.app.state.overview_refresh is thread  # fresh: no new refresh
    for element in ("overview-table", "trend-table", "chart-cities", "chart-trend",
                    "overview-asof", "unit-switch"):  # fmt: skip
        assert f'id="{element}"' in state.text
    assert 'data-chart="chart-cities"' in state.text
    assert "echarts.min.js" in state.text
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema_hub.console_cache)).mappings().one()
        got = cache.read(conn)
    assert row["key"] == "overview"
    assert row["lease_owner"] is None
    assert row["error"] is None
    assert got.cities == cli
    assert got.refreshing_since is None
    assert row["computed_at"] is not None
    assert when(row["computed_at"], BEIJING) in state.text

    # Two console processes: the second claimer loses until the lease is given back or has
    # expired (a refresh that died with its process).
    now = utcnow()
    assert cache.claim(engine, "a", now)
    assert not cache.claim(engine, "b", now)
    with engine.connect() as conn:
        assert cache.read(conn, now).refreshing_since == now
    assert 'id="overview-computing"' in client.get("/overview").text  # said, not started again
    assert console.app.state.overview_refresh is thread
    later = now + dt.timedelta(seconds=cache.LEASE_SECONDS + 1)
    assert cache.claim(engine, "b", later)
    assert cache.refresh(engine, "b") is None
    assert cache.claim(engine, "c")  # given back by b's refresh


def test_unit_switch_and_province_total(sqlite_console: Console) -> None:
    client = sqlite_console.client("manager")
    html = _refreshed(sqlite_console, client)
    assert 'id="overview-no-snapshot"' in html  # said plainly, with how to get one
    assert "syncd report snapshot" in html
    yuan = client.get("/overview")
    wan = client.get("/overview?unit=wan")
    assert _cells(yuan.text, "overview-table")["province"]["deposit_balance"] == "471,000.75"
    cells = _cells(wan.text, "overview-table")
    assert cells["province"]["deposit_balance"] == format_amount(D("471000.75"), Unit.WAN)
    assert cells["province"]["deposit_balance"] == "47.10"
    assert cells["province"]["loan_balance"] == "98.00"  # 980,000.00 元
    assert cells["province"]["customers"] == "5"  # counts keep no unit
    assert "万元" in wan.text
    switch = wan.text.split('id="unit-switch"', 1)[1].split("</div>\n</div>", 1)[0]
    assert 'href="/overview"' in switch
    assert 'aria-current="true">万元' in switch
    option = re.search(
        r'<script type="application/json" id="chart-cities">(.*?)</script>', wan.text
    )
    assert option
    assert "47.1" not in option[1]
    assert "32.0" in option[1]


def test_only_managers_and_only_signed_in(sqlite_console: Console) -> None:
    for role in ("ops", "auditor", "steward"):
        answer = sqlite_console.client(role).get("/overview")
        assert answer.status_code == 403, role
        assert "overview-table" not in answer.text
    answer = sqlite_console.anonymous().get("/overview", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/signin?next=")
    with sqlite_console.node.engine.connect() as conn:  # and none of them started a refresh
        assert conn.execute(sa.select(schema_hub.console_cache)).first() is None


def _age(console: Console, seconds: float) -> None:
    with console.node.engine.begin() as conn:
        conn.execute(
            schema_hub.console_cache.update().values(
                computed_at=utcnow() - dt.timedelta(seconds=seconds)
            )
        )


def test_stale_figures_are_refreshed_and_a_failure_shown(sqlite_console: Console) -> None:
    client = sqlite_console.client("manager")
    _refreshed(sqlite_console, client)
    max_age = sqlite_console.settings.console.overview_max_age_seconds
    _age(sqlite_console, max_age + 60)
    with sqlite_console.node.engine.connect() as conn:
        before = cache.read(conn).computed_at
    sqlite_console.app.state.overview_refresh = None
    stale = client.get("/overview")
    # The old figures show while the new ones are computed; the page reloads itself.
    assert 'id="overview-table"' in stale.text
    assert 'id="overview-computing"' in stale.text
    assert "data-refresh-seconds" in stale.text
    thread = sqlite_console.app.state.overview_refresh
    assert isinstance(thread, threading.Thread)
    thread.join(timeout=30)
    with sqlite_console.node.engine.connect() as conn:
        after = cache.read(conn)
    assert before is not None
    assert after.computed_at is not None
    assert after.computed_at > before
    fresh = client.get("/overview")
    assert 'id="overview-computing"' not in fresh.text
    assert "data-refresh-seconds" not in fresh.text

    # A failing refresh: shown with its time and error, the older figures kept, no hot loop.
    _age(sqlite_console, 10_000)
    with sqlite_console.node.engine.begin() as conn:  # the report's view is gone
        conn.exec_driver_sql("DROP VIEW report_city_summary")
    html = _refreshed(sqlite_console, client)
    assert 'id="overview-error"' in html
    assert "report_city_summary" in html  # what failed, and when
    with sqlite_console.node.engine.connect() as conn:
        state: Any = cache.read(conn)
    assert state.failed
    assert state.error_at is not None
    assert state.refreshing_since is None
    assert when(state.error_at, BEIJING) in html
    assert 'id="overview-table"' in html  # the older figures stay, said to be older
    # No hot loop: visits before the retry time start nothing.
    sqlite_console.app.state.overview_refresh = None
    for _ in range(3):
        assert client.get("/overview").status_code == 200
    assert sqlite_console.app.state.overview_refresh is None
    assert state.retry_at(sqlite_console.settings.console.overview_max_age_seconds) > utcnow()
