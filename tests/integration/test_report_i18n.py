"""Reports for Chinese bank staff: language, 元/万元, masked IDs, audited --unmask, CSV and XLSX.

In-process (click's runner on the real command tree) against the fixed province of
test_reports, on a real SQLite file; the audit of --unmask also on PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from rich.console import Console

from syncd.cli import command, render
from syncd.cli.context import state
from syncd.core.policy import load_policy
from syncd.hub import nodes, reports
from syncd.store import hub_tables as schema_hub
from syncd.store.db import create_engine
from tests.conftest import POLICY
from tests.integration.test_reports import CORP, LI, ZHANG, ZHAO, seed

ZHANG_MASKED = "330102********0019"
ZHAO_MASKED = "E1*****78"


def _config(url: str, path: Path) -> Path:
    path.write_text(
        f'[node]\nid = "hub-t"\nrole = "hub"\n[database]\nurl = "{url}"\n'
        f'[policy]\npath = "{POLICY}"\n[log]\nformat = "json"\n',
        encoding="utf-8",
    )
    return path


def _hub(url: str, path: Path) -> Path:
    policy = load_policy(POLICY)
    engine = create_engine(url)
    schema_hub.metadata.create_all(engine)
    with engine.begin() as conn:
        schema_hub.install(conn, policy)
        reports.install_views(conn, policy)
        seed(conn, policy)
    nodes.rename_node(engine, "city-3301", "杭州")
    engine.dispose()
    return _config(url, path)


@pytest.fixture
def hub(sqlite_url: str, tmp_path: Path) -> Path:
    return _hub(sqlite_url, tmp_path / "hub.toml")


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    yield
    state.settings, state.config = None, None


def syncd(config: Path, *args: str) -> Result:
    """`syncd --config CONFIG ARGS…` in this process: settings loaded afresh each time."""
    state.settings = None
    result = CliRunner().invoke(command(), ["--config", str(config), *args], prog_name="syncd")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def ok(config: Path, *args: str) -> str:
    result = syncd(config, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_chinese_by_default_english_on_request_and_display_names(hub: Path) -> None:
    shown = ok(hub, "report", "value")
    for text in ("客户价值贡献度排名", "（金额单位：元）", "大客户", "统一社会信用代码"):
        assert text in shown
    assert "客户名称" in shown
    assert "杭州、city-3302" in shown  # 张三's cities: a named node, an unnamed one by its id
    assert "319,000.75" in shown
    assert ZHANG_MASKED in shown
    assert ZHAO_MASKED in shown
    assert ZHANG not in shown
    assert ZHAO not in shown
    english = ok(hub, "report", "exposure", "--lang", "en")
    for text in ("credit exposure", "worst class", "substandard", "overdue, non-performing"):
        assert text in english
    assert "次级" not in english
    assert "李四" in english
    chinese = ok(hub, "report", "exposure")
    assert "次级" in chinese
    assert "逾期、不良贷款" in chinese
    assert "跨城市授信" in chinese
    customer = ok(hub, "report", "customer", "--id-number", ZHANG)
    assert "客户全景视图" in customer
    assert "个人" in customer
    assert "≠" in customer
    assert ZHANG not in customer


def test_wan_unit_and_cities_by_name(hub: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(ok(hub, "report", "cities", "--unit", "wan", "--csv"))))
    assert [(r["城市"], r["存款余额（万元）"], r["损失（万元）"]) for r in rows] == [
        ("杭州", "15.00", "0.00"),  # 150,000.50 元
        ("city-3302", "32.00", "0.00"),  # 320,000.25 元
        ("city-3303", "0.10", "4.00"),  # 1,000.00 and 40,000.00 元
        ("全省", "47.10", "4.00"),  # the province total row
    ]
    value = ok(hub, "report", "value", "--unit", "wan", "--lang", "en", "--csv")
    got = [(r["name"], r["contribution (10k yuan)"]) for r in csv.DictReader(io.StringIO(value))]
    assert got[:2] == [("杭州某某科技有限公司", "65.00"), ("张三", "31.90")]  # 319,000.75 元


def _audit(config: Path) -> list[dict[str, object]]:
    entries = json.loads(ok(config, "audit", "log", "--json", "--action", "ids_unmasked"))
    return entries if isinstance(entries, list) else entries["entries"]


@pytest.fixture
def any_hub(db_url: str, tmp_path: Path) -> Path:
    return _hub(db_url, tmp_path / "hub.toml")


def test_unmask_is_audited_and_json_masks_by_default(any_hub: Path) -> None:
    masked = json.loads(ok(any_hub, "report", "value", "--json"))
    assert [r["id_number"] for r in masked] == [
        "913301********AA0B",
        ZHANG_MASKED,
        "330204********0029",
        ZHAO_MASKED,
    ]
    assert masked[0]["tier"] == "key"
    assert masked[0]["contribution"] == "650000.00"
    assert _audit(any_hub) == []
    full = json.loads(ok(any_hub, "report", "value", "--json", "--unmask", "--top", "3"))
    assert [r["id_number"] for r in full] == [CORP, ZHANG, LI]
    (entry,) = _audit(any_hub)
    detail = entry["detail"]
    assert isinstance(detail, dict)
    assert detail["report"] == "report value"
    assert detail["rows"] == 3
    assert detail["arguments"] == {
        "top": 3,
        "lang": "zh",
        "unit": "yuan",
        "format": "json",
        "output": None,
    }
    assert detail["os_user"]
    on_pg = "postgresql" in any_hub.read_text(encoding="utf-8")
    assert detail["db_role"] == ("postgres" if on_pg else None)
    customer = ok(any_hub, "report", "customer", "--id-number", ZHANG, "--unmask", "--lang", "en")
    assert ZHANG in customer
    last = _audit(any_hub)[-1]["detail"]
    assert isinstance(last, dict)
    assert last["arguments"]["id_number"] == ZHANG_MASKED
    assert syncd(any_hub, "audit", "verify").exit_code == 0


def test_csv_file_has_a_bom_stdout_has_none(hub: Path, tmp_path: Path) -> None:
    target = tmp_path / "风险预警.csv"
    assert ok(hub, "report", "exposure", "--csv", "--output", str(target)) == ""
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with target.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["客户名称"], r["证件号码"], r["最差五级分类"], r["预警"]) for r in rows] == [
        ("李四", "330204********0029", "次级", "逾期、不良贷款"),
        ("张三", ZHANG_MASKED, "正常", "跨城市授信"),
    ]
    assert rows[0]["多城市贷款"] == "否"
    assert rows[1]["贷款余额（元）"] == "350,000.00"
    assert not ok(hub, "report", "exposure", "--csv").startswith("\ufeff")


def test_xlsx_typed_cells_frozen_header(hub: Path, tmp_path: Path) -> None:
    target = tmp_path / "cities.xlsx"
    ok(hub, "report", "cities", "--unit", "wan", "--xlsx", str(target))
    book = openpyxl.load_workbook(target)
    (sheet,) = book.worksheets
    assert sheet.freeze_panes == "A2"
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["城市", "城市代码", "客户数", "存款余额（万元）"]
    city, _code, customers, deposits = (c for c in sheet[2][:4])
    assert city.value == "杭州"
    assert customers.value == 2
    assert isinstance(customers.value, int)
    assert customers.number_format == "#,##0"
    assert deposits.value == pytest.approx(15.00005)  # exact 万元; Excel shows 15.00
    assert deposits.number_format == "#,##0.00"
    assert sheet.column_dimensions["A"].width >= 6
    person = tmp_path / "customer.xlsx"
    ok(hub, "report", "customer", "--id-number", ZHANG, "--xlsx", str(person), "--lang", "en")
    sheets = openpyxl.load_workbook(person).sheetnames
    assert sheets[:3] == ["customer 360", "golden record", "each city's version (≠ differs"]
    loans = openpyxl.load_workbook(person)["loan accounts"]
    assert [c.value for c in loans[2]][:5] == ["杭州", "L1", "business", 200000, "normal"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("value", "--unit", "foo"), "--unit 'foo': choose one of yuan, wan"),
        (("value", "--lang", "xx"), "--lang 'xx': choose one of zh, en"),
        (("value", "--xlsx", "/nonexistent/dir/v.xlsx"), "--xlsx /nonexistent/dir/v.xlsx: no"),
        (("value", "--xlsx", "."), "--xlsx .: is a directory"),
        (("value", "--output", "v.csv"), "--output: use it with --csv or --json"),
        (("value", "--csv", "--xlsx", "v.xlsx"), "--csv and --xlsx: choose one"),
        (("cities", "--json", "--csv"), "--json and --csv: choose one"),
    ],
)
def test_bad_format_options_exit_2(
    sqlite_url: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    # Options are checked before the hub is read (or an --unmask audited): no database needed.
    result = syncd(_config(sqlite_url, tmp_path / "hub.toml"), "report", *args)
    assert result.exit_code == 2, result.output
    assert f"syncd: error: {message}" in result.stderr


def test_nothing_cut_at_80_columns(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80, soft_wrap=True)
    monkeypatch.setattr(render, "out", console)
    for args in (("value",), ("cities",), ("exposure", "--lang", "en")):
        ok(hub, "report", *args)
    shown = buf.getvalue()
    assert "…" not in shown
    for whole in ("650,000.00", "319,000.75", ZHANG_MASKED, "杭州某某科技有限公司", "2026-03-02"):
        assert whole in shown


def test_node_names_set_at_add_and_rename_are_audited(hub: Path) -> None:
    ok(hub, "node", "add", "city-3304", "--name", "温州")
    ok(hub, "node", "rename", "city-3302", "--name", " 宁波 ")
    listed = {
        n["node_id"]: n["display_name"] for n in json.loads(ok(hub, "node", "list", "--json"))
    }
    assert listed == {
        "city-3301": "杭州",
        "city-3302": "宁波",
        "city-3303": None,
        "city-3304": "温州",
    }
    assert "杭州、宁波" in ok(hub, "report", "value")
    status = json.loads(syncd(hub, "status", "--json").stdout)  # ops see the names too
    assert {n["node_id"]: n["display_name"] for n in status["nodes"]} == listed
    renamed = json.loads(ok(hub, "audit", "log", "--json", "--action", "node_renamed"))
    renamed = renamed if isinstance(renamed, list) else renamed["entries"]
    assert [e["detail"] for e in renamed] == [
        {"from": None, "to": "杭州"},
        {"from": None, "to": "宁波"},
    ]
    assert syncd(hub, "node", "rename", "city-3302", "--name", " ").exit_code == 2
    assert syncd(hub, "node", "rename", "city-9999", "--name", "x").exit_code == 2
    assert syncd(hub, "audit", "verify").exit_code == 0
    engine = create_engine(f"sqlite:///{hub.parent / 'node.db'}")
    with engine.connect() as conn:
        added = conn.execute(
            sa.text("SELECT detail FROM syncd_audit WHERE action = 'node_registered'")
        ).scalar_one()
    engine.dispose()
    assert json.loads(added)["display_name"] == "温州"
