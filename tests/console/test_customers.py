"""Customer 360 in the console: search by name and ID number, one customer's 360, unmasking."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import sqlalchemy as sa

from syncd.core.settings import ReportSection
from syncd.hub import analysis
from syncd.store import hub_tables as h
from tests.console.conftest import Console
from tests.helpers import run_syncd
from tests.integration.test_reports import CORP, LI, ZHANG, ZHAO

MASKED_ZHANG = "330102********0019"


def unmask_entries(c: Console) -> list[dict[str, object]]:
    with c.node.engine.connect() as conn:
        rows = conn.execute(
            sa.select(h.audit.c.detail).where(h.audit.c.action == "ids_unmasked")
        ).scalars()
        return [d if isinstance(d, dict) else json.loads(d) for d in rows]


def results(html: str) -> str:
    assert 'id="customer-results"' in html, html
    return html.split('id="customer-results"', 1)[1].split("</table>", 1)[0]


def test_search_by_name_id_and_masked_id(console: Console) -> None:
    with console.node.engine.begin() as conn:
        analysis.take_snapshot(conn, console.node.policy, ReportSection())
    client = console.client("manager")
    page = client.get("/customers")
    assert page.status_code == 200
    assert 'id="customer-search"' in page.text
    assert 'id="customer-search-submit"' in page.text
    for q in ("张", "三", ZHANG, MASKED_ZHANG, f" {MASKED_ZHANG} "):
        table = results(client.get("/customers", params={"q": q}).text)
        assert "张三" in table, q
        assert MASKED_ZHANG in table, q
        assert ZHANG not in table, q
        assert "李四" not in table
        assert "/customers/1" in table
    # The masked number must match prefix, suffix and length.
    none = client.get("/customers", params={"q": "330102*******0019"}).text
    assert 'id="customer-none"' in none
    for q in (ZHAO, "E1*****78", "e12345678"):  # a passport, full or masked
        assert "赵六" in results(client.get("/customers", params={"q": q}).text), q
    corp = results(client.get("/customers", params={"q": "杭州"}).text)
    assert "杭州某某科技有限公司" in corp
    assert CORP not in corp
    assert "对公" in corp
    assert "大客户" in corp


def test_like_wildcards_are_literal_and_bad_input_refused(sqlite_console: Console) -> None:
    client = sqlite_console.client("auditor")
    for q in ("%", "_", "\\", "张%", "_三", "%%%"):
        page = client.get("/customers", params={"q": q})
        assert page.status_code == 200
        assert 'id="customer-none"' in page.text, q
    for q in ("", "   ", "张" * 65):
        page = client.get("/customers", params={"q": q})
        assert page.status_code == 200
        assert 'id="customer-search-error"' in page.text, q
        assert 'id="customer-results"' not in page.text


def test_the_360_shows_differences_and_each_citys_products(sqlite_console: Console) -> None:
    with sqlite_console.node.engine.begin() as conn:
        conn.execute(
            h.conflicts.insert().values(
                table_name="customers",
                golden_id=1,
                identity={"id_type": "ric", "id_number": ZHANG},
                column_name="address",
                candidates=[],
                status="open",
                opened_at=dt.datetime(2026, 3, 2),
            )
        )
    page = sqlite_console.client("manager").get("/customers/1")
    assert page.status_code == 200, page.text
    html = page.text
    for element in ("customer-golden", "customer-sources", "customer-accounts", "customer-loans"):
        assert f'id="{element}"' in html
    assert 'id="customer-warnings"' in html
    sources = html.split('id="customer-sources"', 1)[1].split("</table>", 1)[0]
    # phone and address differ between 杭州's C1 and 宁波's D7; the name does not.
    assert 'class="differs" data-field="phone"' in sources
    assert 'class="differs" data-field="address"' in sources
    assert 'data-field="name"' not in sources
    assert sources.count('data-rule="latest"') == 2  # phone and address: the latest change
    address = sources.split('data-field="address"', 1)[1].split("</tr>", 1)[0]
    assert "#1 (open)" in address
    assert "13800000001" in sources
    assert "13900000002" in sources
    accounts = html.split('id="customer-accounts"', 1)[1].split("</table>", 1)[0]
    assert "A1" in accounts
    assert "B1" in accounts
    assert "100,000.50" in accounts
    loans = html.split('id="customer-loans"', 1)[1].split("</table>", 1)[0]
    assert "L1" in loans
    assert "M1" in loans
    assert "M3" not in loans
    assert MASKED_ZHANG in html
    assert ZHANG not in html
    assert "319,000.75" in html  # the contribution, as customer_insights computes it
    li = sqlite_console.client("manager").get("/customers/2").text
    warnings = li.split('id="customer-warnings"', 1)[1]
    assert "不良" in warnings or "non-performing" in warnings
    assert sqlite_console.client("manager").get("/customers/5").status_code == 400  # deleted


def test_unmask_is_audited_and_refused_to_a_manager(sqlite_console: Console) -> None:
    manager = sqlite_console.client("manager").get("/customers/1?unmask=1").text
    assert ZHANG not in manager
    assert 'id="unmask-link"' not in manager
    assert unmask_entries(sqlite_console) == []
    steward = sqlite_console.client("steward")
    page = steward.get("/customers/1").text
    assert 'id="unmask-link"' in page
    assert ZHANG not in page
    full = steward.get("/customers/1?unmask=1").text
    assert ZHANG in full
    found = steward.get("/customers", params={"q": LI, "unmask": "1"}).text
    assert LI in results(found)
    entries = unmask_entries(sqlite_console)
    assert [e["console_user"] for e in entries] == ["steward", "steward"]
    assert [e["report"] for e in entries] == ["console customer", "console customers"]
    assert LI not in json.dumps(entries)  # the search text is kept masked


def test_permissions(sqlite_console: Console) -> None:
    ops = sqlite_console.client("ops")
    assert ops.get("/customers").status_code == 403
    assert ops.get("/customers/1").status_code == 403
    anonymous = sqlite_console.anonymous()
    for path in ("/customers?q=张", "/customers/1"):
        answer = anonymous.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert "/signin" in answer.headers["location"]


def test_cli_report_search(sqlite_console: Console, tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    shown = run_syncd(config, "report", "search", "张", "--lang", "en", check=True).stdout
    assert "张三" in shown
    assert MASKED_ZHANG in shown
    assert ZHANG not in shown
    found = run_syncd(config, "report", "search", MASKED_ZHANG, "--json", check=True).stdout
    assert [r["golden_id"] for r in json.loads(found)] == [1]
    empty = run_syncd(config, "report", "search", " ")
    assert empty.returncode == 2
    assert "type part of a name" in empty.stderr
    assert unmask_entries(sqlite_console) == []
