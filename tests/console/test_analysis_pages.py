"""The segments, key customers and risk warnings pages: the hub's figures as the CLI shows
them, filters, bad filters (400 with a message), the Excel export (the workbook `--xlsx`
writes), masked IDs and the audited unmask, and who may open them.

The pages show results computed in the background (test_analysis_cache.py tests that): here a
`Waiting` client waits for the computation a visit started, then looks again."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import openpyxl
import pytest
from fastapi.testclient import TestClient

from syncd.cli.context import state
from syncd.core.i18n import Unit, format_amount, format_count, in_unit, mask_id
from syncd.hub import analysis, console_users
from syncd.hub.console_users import PERMISSIONS, Permission, Role
from tests.console.conftest import PASSWORD, Console, make_console, sign_in
from tests.integration.test_report_i18n import _audit, ok
from tests.integration.test_reports import CORP, LI, ZHANG

PAGES = ("/analysis/segments", "/analysis/key", "/analysis/warnings")


class _Tables(HTMLParser):
    """The rows (cell texts) of the table with a given id, and the tr classes."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows = table_id, False, []
        self.classes: list[str] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
            self.classes.append(a.get("class") or "")
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table(html: str, table_id: str) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, body rows, body rows' classes) of the table with this id."""
    parser = _Tables(table_id)
    parser.feed(html)
    assert parser.rows, f"no table {table_id}"
    return parser.rows[0], parser.rows[1:], parser.classes[1:]


class Waiting:
    """A signed-in client whose GET, when it started a computation, waits for it and asks
    again: the page as it shows once its figures are computed."""

    def __init__(self, console: Console, client: TestClient) -> None:
        self.console, self.client = console, client

    def get(self, url: str, **kw: Any) -> Any:
        self.console.app.state.report_refresh = None
        answer = self.client.get(url, **kw)
        thread = self.console.app.state.report_refresh
        if isinstance(thread, threading.Thread):
            thread.join(timeout=60)
            assert not thread.is_alive()
            answer = self.client.get(url, **kw)
        return answer


def hub(console: Console, fn: Any) -> Any:
    node = console.node
    with node.engine.connect() as conn:
        return fn(conn, node.policy, node.settings.report)


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("analysis")


@pytest.fixture(scope="module")
def sqlite_console(hub_dir: Path) -> Iterator[Console]:
    """One console for the module (these pages only read; a sign-in costs an argon2 hash)."""
    c = make_console(f"sqlite:///{hub_dir / 'hub.db'}", hub_dir)
    yield c
    for client in c.clients:
        client.__exit__(None, None, None)
    c.node.close()


@pytest.fixture(scope="module")
def manager(sqlite_console: Console) -> Waiting:
    return Waiting(sqlite_console, sqlite_console.client("manager"))


@pytest.fixture
def config(hub_dir: Path) -> Path:
    """The console's config file: the CLI reads the same hub with it."""
    return hub_dir / "hub.toml"


@pytest.fixture(autouse=True)
def _fresh_cli_state() -> Iterator[None]:
    yield
    state.settings, state.config = None, None


def test_segments_show_the_hub_figures_by_one_or_two_dimensions(
    sqlite_console: Console, manager: Waiting
) -> None:
    page = manager.get("/analysis/segments")
    assert page.status_code == 200
    assert 'id="filters"' in page.text
    assert 'id="export-xlsx"' in page.text
    assert 'id="unmask-link"' not in page.text  # segments carry no ID numbers
    for path in PAGES:  # the navigation links the three pages
        assert f'href="{path}"' in page.text
    headers, rows, classes = table(page.text, "segments-table")
    assert headers[:3] == ["客户类型", "客户数", "存款余额（元）"]
    expected = hub(sqlite_console, lambda c, p, r: analysis.segments(c, p, r, ["type"]))
    assert [row[1] for row in rows] == [format_count(e["customers"]) for e in expected]
    assert [row[2] for row in rows] == [format_amount(e["deposit_balance"]) for e in expected]
    assert [row[0] for row in rows] == ["对公", "个人", "合计"]
    assert rows[-1][1] == "4"
    assert rows[-1][-1] == "100.00"
    assert classes[-1] == "total"

    crossed = manager.get("/analysis/segments?by=city&by=tier&unit=wan")
    assert crossed.status_code == 200
    headers, rows, _ = table(crossed.text, "segments-table")
    assert headers[:4] == ["归属城市", "价值层级", "客户数", "存款余额（万元）"]
    expected = hub(sqlite_console, lambda c, p, r: analysis.segments(c, p, r, ["city", "tier"]))
    assert [(row[0], row[2]) for row in rows[:-1]] == [
        (e["city"], format_count(e["customers"])) for e in expected[:-1]
    ]
    assert [row[3] for row in rows] == [
        format_amount(e["deposit_balance"], Unit.WAN) for e in expected
    ]
    assert "大客户" in [row[1] for row in rows]
    # an empty second dimension (the form's "(none)") is one dimension
    assert manager.get("/analysis/segments?by=age&by=").status_code == 200


def test_key_customers_ranked_as_the_hub_ranks_them_ids_masked(
    sqlite_console: Console, manager: Waiting
) -> None:
    page = manager.get("/analysis/key?top=2")
    assert page.status_code == 200
    headers, rows, _ = table(page.text, "key-table")
    assert headers[:4] == ["排名", "价值层级", "客户名称", "证件号码"]
    expected = hub(sqlite_console, lambda c, p, r: analysis.key_customers(c, p, r, 2))
    assert (
        [row[2] for row in rows]
        == [e["name"] for e in expected]
        == ["杭州某某科技有限公司", "张三"]
    )
    assert [row[3] for row in rows] == [mask_id(CORP), mask_id(ZHANG)]
    assert CORP not in page.text
    assert ZHANG not in page.text
    assert "650,000.00" in rows[0]
    # a manager may not see full ID numbers: ?unmask=1 is ignored, no link, nothing audited
    unmasked = manager.get("/analysis/key?top=2&unmask=1")
    assert ZHANG not in unmasked.text
    assert 'id="unmask-link"' not in unmasked.text
    default = manager.get("/analysis/key")
    assert len(table(default.text, "key-table")[1]) == 4  # top 20 of 4 customers


def test_warnings_filter_by_severity_reason_and_city(
    sqlite_console: Console, manager: Waiting
) -> None:
    page = manager.get("/analysis/warnings")
    assert page.status_code == 200
    headers, rows, _ = table(page.text, "warnings-table")
    assert headers[:3] == ["严重程度", "预警原因", "客户名称"]
    expected = hub(sqlite_console, analysis.risk_warnings)
    assert len(rows) == len(expected) > 0
    assert [row[2] for row in rows] == [e["name"] for e in expected]
    assert ("高", "不良贷款", "李四", mask_id(LI)) == tuple(rows[0][:4])
    assert "90,000.00" in rows[0]

    overdue = manager.get("/analysis/warnings?severity=high&reason=overdue")
    _, rows, _ = table(overdue.text, "warnings-table")
    assert [row[1] for row in rows] == ["逾期91-180天"]
    assert 'value="overdue" selected' in overdue.text

    other_city = manager.get("/analysis/warnings?city=3302")
    assert other_city.status_code == 200
    assert 'id="warnings-table-empty"' in other_city.text
    home = manager.get("/analysis/warnings?city=3301")
    assert len(table(home.text, "warnings-table")[1]) == len(expected)


BAD_FILTERS = [
    ("/analysis/segments?by=bogus", "bogus"),
    ("/analysis/segments?by=type&by=type", "请选择两个不同的维度"),
    ("/analysis/segments?by=type&by=age&by=tier", "请选择一个或两个维度"),
    ("/analysis/key?top=0", "前 N 名须在 1 到 10000 之间"),
    ("/analysis/key?top=lots", "lots"),
    ("/analysis/warnings?reason=nope", "nope"),
    ("/analysis/warnings?severity=extreme", "extreme"),
    ("/analysis/warnings?city=9999", "9999"),
    ("/analysis/key?format=pdf", "pdf"),
]


def test_a_bad_filter_is_a_400_page_with_its_message(manager: Waiting) -> None:
    for url, message in BAD_FILTERS:
        page = manager.get(url)
        assert page.status_code == 400, url
        assert 'id="filter-error"' in page.text
        assert message in page.text, url
        assert 'id="filters"' in page.text  # the form stays, to correct the filter
        assert "Traceback" not in page.text
        assert "-table" not in page.text


def test_exports_are_the_workbooks_the_cli_writes(
    sqlite_console: Console, manager: Waiting, config: Path, tmp_path: Path
) -> None:
    cases = [
        ("/analysis/key?top=3&unit=wan", ("key", "--top", "3", "--unit", "wan"), "key"),
        ("/analysis/segments?by=type&by=tier", ("segments", "--by", "type", "--by", "tier"), ""),
        ("/analysis/warnings?severity=high", ("warnings", "--severity", "high"), ""),
    ]
    for url, args, _ in cases:
        answer = manager.get(url + "&format=xlsx")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/vnd.openxmlformats")
        disposition = answer.headers["content-disposition"]
        assert disposition.startswith("attachment; filename=")
        encoded = disposition.split("filename*=UTF-8''")[1]
        assert unquote(encoded).endswith(".xlsx")
        assert encoded.isascii()
        book = openpyxl.load_workbook(io.BytesIO(answer.content))
        cli = tmp_path / f"{args[0]}.xlsx"
        ok(config, "report", *args, "--xlsx", str(cli))
        expected = openpyxl.load_workbook(cli)
        assert book.sheetnames == expected.sheetnames
        got = [[c.value for c in row] for row in book.worksheets[0].iter_rows()]
        want = [[c.value for c in row] for row in expected.worksheets[0].iter_rows()]
        assert got == want
    # typed figures: the key customers' contribution in 万元 as a number, ranks as integers
    book = openpyxl.load_workbook(
        io.BytesIO(manager.get("/analysis/key?top=3&unit=wan&format=xlsx").content)
    )
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    contribution = sheet.cell(row=2, column=header.index("贡献度（万元）") + 1)
    expected_rows = hub(sqlite_console, lambda c, p, r: analysis.key_customers(c, p, r, 3))
    assert contribution.value == pytest.approx(
        float(in_unit(expected_rows[0]["contribution"], Unit.WAN))
    )
    assert contribution.number_format == "#,##0.00"
    assert sheet.cell(row=2, column=1).value == 1
    ids = [sheet.cell(row=r, column=header.index("证件号码") + 1).value for r in (2, 3, 4)]
    assert ids == [mask_id(CORP), mask_id(ZHANG), mask_id(LI)]
    assert sheet.freeze_panes == "A2"


def test_unmask_for_a_role_that_may_is_audited_before_the_page(
    sqlite_console: Console, config: Path
) -> None:
    console_users.add_user(
        sqlite_console.node.engine, "lead", ["manager", "auditor"], PASSWORD, display_name="lead"
    )
    lead = Waiting(sqlite_console, sign_in(sqlite_console.anonymous(), "lead"))
    page = lead.get("/analysis/key?top=3")
    assert 'id="unmask-link"' in page.text
    assert ZHANG not in page.text
    assert _audit(config) == []
    full = lead.get("/analysis/key?top=3&unmask=1")
    assert full.status_code == 200
    assert [row[3] for row in table(full.text, "key-table")[1]] == [CORP, ZHANG, LI]
    (entry,) = _audit(config)
    detail = entry["detail"]
    assert detail["report"] == "console key"
    assert detail["console_user"] == "lead"
    assert detail["rows"] == 3
    assert detail["arguments"]["top"] == 3
    export = lead.get("/analysis/key?top=3&unmask=1&format=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(export.content)).worksheets[0]
    assert ZHANG in [c.value for c in sheet["D"]]
    assert _audit(config)[-1]["detail"]["arguments"]["format"] == "xlsx"
    # segments have no ID numbers: nothing to unmask, nothing audited
    lead.get("/analysis/segments?unmask=1")
    assert len(_audit(config)) == 2


def test_only_managers_open_the_analyses_and_only_with_export_download(
    sqlite_console: Console, manager: Waiting, monkeypatch: pytest.MonkeyPatch
) -> None:
    for role in ("ops", "auditor", "steward"):
        client = sqlite_console.client(role)
        for path in PAGES:
            assert client.get(path).status_code == 403, (role, path)
            assert client.get(path + "?format=xlsx").status_code == 403
    anonymous = sqlite_console.anonymous()
    for path in PAGES:
        answer = anonymous.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert "/signin?next=" in answer.headers["location"]
    # a role with the analyses but not the exports: no link, and the download is refused
    monkeypatch.setitem(PERMISSIONS, Role.MANAGER, frozenset({Permission.ANALYSIS}))
    page = manager.get("/analysis/key")
    assert page.status_code == 200
    assert 'id="export-xlsx"' not in page.text
    assert manager.get("/analysis/key?format=xlsx").status_code == 403


def test_the_pages_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The same figures from a PostgreSQL hub (numeric types, ordering), export included."""
    console = make_console(pg_url, tmp_path)
    try:
        manager = Waiting(console, console.client("manager"))
        _, rows, _ = table(manager.get("/analysis/segments").text, "segments-table")
        assert rows[-1][:2] == ["合计", "4"]
        assert rows[-1][-2] == "1,070,010.75"
        _, rows, _ = table(manager.get("/analysis/key?top=3").text, "key-table")
        assert [row[2] for row in rows] == ["杭州某某科技有限公司", "张三", "李四"]
        _, rows, _ = table(manager.get("/analysis/warnings").text, "warnings-table")
        assert rows[0][:3] == ["高", "不良贷款", "李四"]
        export = manager.get("/analysis/warnings?format=xlsx")
        sheet = openpyxl.load_workbook(io.BytesIO(export.content)).worksheets[0]
        assert sheet.cell(row=2, column=3).value == "李四"
    finally:
        for client in console.clients:
            client.__exit__(None, None, None)
        console.node.close()
