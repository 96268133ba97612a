"""The console's pages in a real browser, on the demo's data, as issue 15 asks: sign in, search a
customer, open the 360, resolve a conflict as steward and see it in the audit page; every page
with a screenshot (test-artifacts/screenshots/, and those of the docs with `make screenshots`).

Every flow collects the page's JavaScript errors and console errors (a CSP violation shows
there): none is allowed. Every sign-in checks that the top bar offers exactly the role's pages
(NAV), and each role meets the 403 page of a page outside them. The demo is shared by every
browser test of the session, so each flow that changes it (the one conflict resolved) checks
its own consequences in the same test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import openpyxl
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page

from syncd.core.i18n import Translator
from tests.browser.conftest import VIEWPORT, DemoConsole, Shot, sign_in

pytestmark = pytest.mark.xdist_group("browser")

ZH = Translator("zh")
CITIES = {"city-3301": "杭州", "city-3302": "宁波"}  # the demo's two cities
CUSTOMER = "宁波创汇网络有限公司"  # a demo customer of both cities (seed 7)
# An ID number masked (330102********0019; a company's credit code 913302********759H).
MASKED = re.compile(r"([0-9A-Z]{6})\*{8}([0-9A-Z]{4})")


def unmasked(masked: str) -> re.Pattern[str]:
    """The full number a masked one stands for, wherever it would show."""
    match = MASKED.search(masked)
    assert match, masked
    return re.compile(rf"{match[1]}[0-9A-Z]{{8}}{match[2]}")


# Pages that compute their figures in the background reload themselves until they are ready.
COMPUTED = 90_000


# What each role finds in the top bar (its permissions) and a page outside them (403).
NAV = {
    "manager": (
        ["/overview", "/customers", "/analysis/segments", "/analysis/key", "/analysis/warnings"],
        "/audit",
    ),
    "auditor": (["/customers", "/audit"], "/overview"),
    "ops": (["/health", "/conflicts", "/quarantine"], "/customers"),
    "steward": (["/customers", "/conflicts", "/quarantine"], "/health"),
}


class Watch:
    """Every uncaught JavaScript error and console error of the pages watched; a page asked
    for with forbidden() may log its own 403 (Chromium reports it as a failed resource)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []
        self.refused: set[str] = set()

    def attach(self, page: Page) -> Page:
        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append((message.text, message.location.get("url", "")))

        page.on("pageerror", lambda exc: self.errors.append((f"pageerror: {exc}", page.url)))
        page.on("console", console)
        return page

    def unexpected(self) -> list[tuple[str, str]]:
        return [(t, u) for t, u in self.errors if not (u in self.refused and "403" in t)]


@pytest.fixture
def watch() -> Iterator[Watch]:
    w = Watch()
    yield w
    assert w.unexpected() == []


def signed_in(page: Page, role: str) -> Page:
    """The page as the role signed in: its top bar offers exactly the role's pages."""
    assert page.locator("#signout").count() == 1, page.content()[:2000]
    links = page.eval_on_selector_all("header nav a", "links => links.map(a => a.pathname)")
    assert links == NAV[role][0], role
    return page


def forbidden(page: Page, watch: Watch, console: DemoConsole, role: str) -> None:
    """A page outside the role's permissions: the 403 page, saying so."""
    url = console.url(NAV[role][1])
    watch.refused.add(url)
    answer = page.goto(url)
    assert answer is not None
    assert answer.status == 403, (role, url)
    assert page.locator(".problem .error[role=alert]").is_visible()


@pytest.fixture
def as_role(page: Page, page_as: Callable[[str], Page], watch: Watch) -> Callable[[str], Page]:
    """as_role("manager"): the page signed in through the form, watched for errors."""
    watch.attach(page)
    return lambda role: signed_in(page_as(role), role)


@pytest.fixture
def second(
    browser: Browser, demo_console: DemoConsole, watch: Watch
) -> Iterator[Callable[[str], Page]]:
    """second("auditor"): another person's browser (its own context), signed in, watched."""
    contexts = []

    def open_as(role: str) -> Page:
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = watch.attach(context.new_page())
        sign_in(page, demo_console, demo_console.users[role], demo_console.password)
        return signed_in(page, role)

    yield open_as
    for context in contexts:
        context.close()


def cells(page: Page, selector: str) -> list[list[str]]:
    """The text of each row's cells (th and td) of the table's body."""
    rows: list[list[str]] = page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))",
    )
    return rows


@contextmanager
def no_problem(page: Page) -> Iterator[None]:
    yield
    assert page.locator(".problem").count() == 0, page.content()[:2000]


# --- the manager ---------------------------------------------------------------------------


def test_overview_as_manager(
    as_role: Callable[[str], Page], demo_console: DemoConsole, shot: Shot, watch: Watch
) -> None:
    page = as_role("manager")
    page.goto(demo_console.url("/"))
    assert page.url == demo_console.url("/overview")  # the manager's start page
    # On a first visit the figures may still be computed: the page reloads itself.
    page.wait_for_selector("#overview-table", timeout=COMPUTED)
    page.wait_for_selector("[data-chart='chart-cities'][data-chart-ready='1'] canvas")
    page.wait_for_selector("[data-chart='chart-trend'][data-chart-ready='1'] canvas")
    rows = {r[0]: r[1:] for r in cells(page, "#overview-table")}
    assert set(rows) == {*CITIES.values(), "全省"}
    assert page.locator("#overview-table tr.total td").first.inner_text() == "全省"
    customers = {city: int(r[0].replace(",", "")) for city, r in rows.items()}
    assert customers["全省"] == customers["杭州"] + customers["宁波"] > 0
    as_of = page.locator("#overview-asof")
    assert ZH.gettext("Figures as of") in as_of.inner_text()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", as_of.inner_text()), as_of.inner_text()
    shot(page, "overview", docs=True)
    forbidden(page, watch, demo_console, "manager")
    shot(page, "forbidden")


def test_customer_search_and_360_as_manager(
    as_role: Callable[[str], Page], demo_console: DemoConsole, shot: Shot
) -> None:
    page = as_role("manager")
    page.click("nav a[href='/customers']")
    page.fill("#customer-search", "创汇")  # part of the name
    with page.expect_navigation():
        page.click("#customer-search-submit")
    results = cells(page, "#customer-results")
    found = [r for r in results if r[1] == CUSTOMER]
    assert len(found) == 1, results
    full = unmasked(found[0][2])  # the ID number masked
    assert not full.search(page.locator("#customer-results").inner_text())
    assert page.locator("#unmask-link").count() == 0  # a manager may not unmask
    shot(page, "customer-search", docs=True)

    with page.expect_navigation():
        page.click(f"#customer-results a:text-is('{CUSTOMER}')")
    assert page.locator("h1").inner_text().startswith(CUSTOMER)
    assert MASKED.search(page.locator("h1 .muted").inner_text())
    golden = page.locator("#customer-golden").inner_text()
    assert CUSTOMER in golden
    assert all(city in golden for city in CITIES.values())  # the cities it is a customer of
    versions = page.locator("#customer-sources thead th").all_inner_texts()
    assert versions[1:3] == ["杭州", "宁波"], versions  # each city's version, side by side
    accounts = cells(page, "#customer-accounts")
    assert accounts, "no deposit account"
    assert {r[0] for r in accounts} <= set(CITIES.values()), accounts
    assert not full.search(page.locator("main").inner_text())  # masked everywhere
    assert page.locator("#unmask-link").count() == 0
    shot(page, "customer-360", docs=True, full=False)


def test_analysis_pages_and_their_excel_exports_as_manager(
    as_role: Callable[[str], Page],
    demo_console: DemoConsole,
    shot: Shot,
    tmp_path: Path,
) -> None:
    page = as_role("manager")
    for path, table, name, heading in [
        ("/analysis/segments", "#segments-table", "segments", "客户细分"),
        ("/analysis/key", "#key-table", "key-customers", "大客户"),
        ("/analysis/warnings", "#warnings-table", "warnings", "风险预警"),
    ]:
        page.goto(demo_console.url(path))
        page.wait_for_selector(f"{table}, [id$='-table-empty']", timeout=COMPUTED)
        with no_problem(page):
            assert heading in page.locator("h1").inner_text()
        rows = cells(page, table)
        assert rows, f"{path}: no rows"
        if name == "key-customers":
            assert any(CUSTOMER in " ".join(r) for r in rows), rows
        shot(page, name, docs=True, full=False)
        with page.expect_download() as download:
            page.click("#export-xlsx")
        saved = tmp_path / f"{name}.xlsx"
        download.value.save_as(saved)
        book = openpyxl.load_workbook(saved, read_only=True)
        sheet = book.worksheets[0]
        values = [v for row in sheet.iter_rows(values_only=True) for v in row if v is not None]
        book.close()
        assert len(values) >= len(rows), f"{path}: {values[:20]}"
        if name == "key-customers":
            assert CUSTOMER in values


# --- stewardship and audit ------------------------------------------------------------------


def test_steward_resolves_the_conflict_and_the_auditor_sees_it(
    as_role: Callable[[str], Page],
    second: Callable[[str], Page],
    demo_console: DemoConsole,
    shot: Shot,
) -> None:
    page = as_role("steward")
    page.click("nav a[href='/conflicts']")
    open_ = page.locator("#conflicts-table tr[data-conflict]")
    assert open_.count() == 1, page.locator("#conflicts-table").inner_text()  # the demo's one
    cid = open_.get_attribute("data-conflict")
    line = open_.inner_text()
    assert all(word in line for word in ("customer_type", *CITIES.values())), line
    shot(page, "conflicts", docs=True)

    with page.expect_navigation():
        page.click(f"#conflicts-table tr[data-conflict='{cid}'] a")
    assert page.locator("#conflict-status").inner_text() == ZH.pgettext("conflict_status", "open")
    assert page.locator("#conflict-sources tr[data-node]").count() == 2
    shot(page, "conflict", docs=True)
    page.check("#take-city-3301")
    with page.expect_navigation():
        page.click("#conflict-resolve-submit")
    notice = page.locator("#action-notice").inner_text()
    assert all(word in notice for word in (f"{cid}", "customer_type")), notice
    assert page.locator("#conflict-status").inner_text() == ZH.pgettext(
        "conflict_status", "resolved"
    )
    assert (
        page.locator("#conflict-resolved-by").inner_text().startswith(demo_console.users["steward"])
    )
    assert page.locator("#conflict-resolve-form").count() == 0  # nothing left to decide
    page.click("nav a[href='/conflicts']")
    assert page.locator(f"#conflicts-table tr[data-conflict='{cid}']").count() == 0  # not open

    auditor = second("auditor")
    auditor.click("nav a[href='/audit']")
    auditor.select_option("#audit-filter-action", "conflict_resolved")
    with auditor.expect_navigation():
        auditor.click("#audit-filter-submit")
    entries = auditor.locator("#audit-table tr[data-action='conflict_resolved']")
    assert entries.count() == 1
    text = entries.inner_text()
    assert all(word in text for word in (demo_console.users["steward"], "customer_type")), text
    shot(auditor, "audit", docs=True)


def test_auditor_unmasks_a_360_and_sees_it_audited(
    as_role: Callable[[str], Page], demo_console: DemoConsole
) -> None:
    page = as_role("auditor")
    page.goto(demo_console.url("/customers?q=创汇"))
    with page.expect_navigation():
        page.click(f"#customer-results a:text-is('{CUSTOMER}')")
    number = unmasked(page.locator("h1 .muted").inner_text())
    with page.expect_navigation():
        page.click("#unmask-link")
    full = page.locator("h1 .muted").inner_text()
    assert number.fullmatch(full), full
    golden_id = page.url.rsplit("/", 1)[1].split("?")[0]
    page.goto(demo_console.url("/audit?action=ids_unmasked"))
    entries = page.locator("#audit-table tr[data-action='ids_unmasked']")
    newest = entries.last.inner_text()  # the newest page, oldest line first
    assert demo_console.users["auditor"] in newest, newest
    assert all(word in newest for word in ("console customer", golden_id)), newest
    assert full not in page.locator("main").inner_text()  # the log itself masked


def test_audit_verify_as_auditor(
    as_role: Callable[[str], Page], demo_console: DemoConsole, shot: Shot, watch: Watch
) -> None:
    page = as_role("auditor")
    page.goto(demo_console.url("/audit?action=console_signin"))
    signins = page.locator("#audit-table tr[data-action='console_signin']")
    assert demo_console.users["auditor"] in signins.last.inner_text()  # this very sign-in
    with page.expect_navigation():
        page.click("#audit-verify-submit")
    result = page.locator("#audit-verify-result")
    assert result.get_attribute("data-ok") == "true", result.inner_text()
    assert page.locator("#audit-head").inner_text()
    shot(page, "audit-verify", docs=True)
    forbidden(page, watch, demo_console, "auditor")


def test_quarantine_for_steward_and_ops(
    as_role: Callable[[str], Page],
    second: Callable[[str], Page],
    demo_console: DemoConsole,
    shot: Shot,
    watch: Watch,
) -> None:
    page = as_role("steward")
    page.click("nav a[href='/quarantine']")
    rows = cells(page, "#quarantine-table")
    assert len(rows) == 2, rows  # one row of each city, both with a wrong ID number
    assert {r[1] for r in rows} == set(CITIES.values())
    assert all("id_number" in r[6] for r in rows), rows  # the reason
    assert page.locator("#quarantine-retry").count() == 1
    shot(page, "quarantine", docs=True)
    forbidden(page, watch, demo_console, "steward")

    ops = second("ops")
    ops.click("nav a[href='/quarantine']")
    assert cells(ops, "#quarantine-table") == rows
    assert ops.locator("#quarantine-retry").count() == 0  # ops looks, stewards act
    with ops.expect_navigation():
        ops.click("#quarantine-table tr[data-quarantine] a >> nth=0")
    assert "id_number" in ops.locator("#quarantine-reason").inner_text()
    assert ops.locator("#quarantine-retry-one").count() == 0


def test_health_as_ops(
    as_role: Callable[[str], Page], demo_console: DemoConsole, shot: Shot, watch: Watch
) -> None:
    page = as_role("ops")
    assert page.url == demo_console.url("/health")  # the start page of ops
    nodes = page.eval_on_selector_all(
        "#health-table tr[data-node]", "rows => rows.map(r => r.dataset.node)"
    )
    assert sorted(nodes) == sorted(CITIES)
    table = page.locator("#health-table").inner_text()
    assert all(name in table for name in CITIES.values()), table
    assert int(page.locator("#health").get_attribute("data-refresh-seconds") or 0) > 0
    assert page.locator("#health-quarantined").inner_text() == "2"
    shot(page, "health", docs=True)
    forbidden(page, watch, demo_console, "ops")
