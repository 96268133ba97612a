"""`syncd report segments|warnings|key|trend|snapshot`: the province's analyses (issue 14).

Registered on the `report` app (`syncd.cli.report.app`). Each table's columns are data —
(key, label) pairs below — so a presentation layer can relabel them mechanically; --json and
--csv carry every key of the rows `syncd.hub.analysis` returns.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from syncd.cli.context import CsvOpt, JsonOpt
from syncd.cli.hub import hub_settings, on_hub, read_node
from syncd.cli.render import call, print_record
from syncd.cli.report import _one_format, _report_rows, app

SEGMENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("customers", "customers"),
    ("deposit_balance", "deposits"),
    ("loan_balance", "loans"),
    ("fee_income", "fee income"),
    ("contribution", "contribution"),
    ("share_pct", "share %"),
)
WARNING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("severity_name", "severity"),
    ("reason", "reason"),
    ("name", "name"),
    ("id_type", "id type"),
    ("id_number", "id number"),
    ("home_city", "home city"),
    ("risk_level", "risk level"),
    ("credit_limit", "credit limit"),
    ("loan_balance", "loans"),
    ("prev_loan_balance", "loans before"),
    ("max_overdue_days", "max overdue days"),
    ("worst_five_class", "worst class"),
    ("prev_five_class", "class before"),
)
KEY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("rank", "rank"),
    ("tier", "tier"),
    ("name", "name"),
    ("id_type", "id type"),
    ("id_number", "id number"),
    ("cities", "cities"),
    ("products", "products"),
    ("deposit_balance", "deposits"),
    ("loan_balance", "loans"),
    ("fee_income", "fee income"),
    ("contribution", "contribution"),
    ("contribution_change", "change"),
    ("prev_tier", "tier before"),
    ("warnings", "warnings"),
)
TREND_COLUMNS: tuple[tuple[str, str], ...] = (
    ("node_id", "node"),
    ("customers", "customers"),
    ("customers_change", "Δ customers"),
    ("deposit_balance", "deposits"),
    ("deposit_balance_change", "Δ deposits"),
    ("loan_balance", "loans"),
    ("loan_balance_change", "Δ loans"),
    ("npl_balance", "non-performing"),
    ("npl_balance_change", "Δ non-performing"),
    ("fee_income", "fee income"),
    ("fee_income_change", "Δ fee income"),
    ("key_customers", "key customers"),
    ("key_customers_change", "Δ key"),
)


@app.command("segments")
def report_segments(
    by: Annotated[
        list[str],
        typer.Option(
            "--by",
            help="a dimension: type, tier, city, district, age, products, tenure "
            "(give --by twice to cross two)",
        ),
    ],
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Customer segmentation: customers, balances and contribution per segment, with a total."""
    from syncd.hub import analysis

    _one_format(as_json, as_csv)
    rows = read_node(lambda n, c: analysis.segments(c, n.policy, n.settings.report, by))
    _report_rows(
        f"segments by {' × '.join(by)} (view report_customer_profile; weights: [report])",
        rows,
        [*((d, d) for d in by), *SEGMENT_COLUMNS],
        as_json,
        as_csv,
    )


@app.command("warnings")
def report_warnings(
    severity: Annotated[
        str, typer.Option("--severity", help="at least this: low, medium or high")
    ] = "low",
    reason: Annotated[
        list[str] | None,
        typer.Option("--reason", help="only this reason or family, e.g. risk_tag, overdue"),
    ] = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Risk early warning (风险预警): one row per customer and reason, worst first."""
    from syncd.hub import analysis

    _one_format(as_json, as_csv)
    hub_settings()
    minimum = call(lambda: analysis.parse_severity(severity))
    rows = read_node(
        lambda n, c: analysis.risk_warnings(
            c, n.policy, n.settings.report, min_severity=minimum, reasons=reason or ()
        )
    )
    _report_rows(
        "risk warnings (thresholds: [report] warn_*)", rows, WARNING_COLUMNS, as_json, as_csv
    )


@app.command("key")
def report_key(
    top: Annotated[int, typer.Option("--top", help="how many customers")] = 20,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Key customers (大客户): the top by contribution, their cities, products and trend."""
    from syncd.hub import analysis

    _one_format(as_json, as_csv)
    rows = read_node(lambda n, c: analysis.key_customers(c, n.policy, n.settings.report, top))
    _report_rows(
        f"key customers, top {top} (change: since the previous snapshot)",
        rows,
        KEY_COLUMNS,
        as_json,
        as_csv,
    )


@app.command("trend")
def report_trend(
    since: Annotated[
        str,
        typer.Option("--since", help="yesterday, month-end, year-start or a date YYYY-MM-DD"),
    ] = "yesterday",
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Per city and province: today's figures and their change since a daily snapshot."""
    from syncd.hub import analysis

    _one_format(as_json, as_csv)
    rows = read_node(lambda n, c: analysis.trend(c, n.policy, n.settings.report, since))
    title = f"trend since the snapshot of {rows[0]['since']}" if rows else "trend"
    _report_rows(title, rows, TREND_COLUMNS, as_json, as_csv)


@app.command("snapshot")
def report_snapshot(as_json: JsonOpt = False) -> None:
    """Take today's snapshot now (replacing one taken earlier today)."""
    from syncd.hub import analysis
    from syncd.store.db import translated

    def take(node: Any) -> dict[str, Any]:
        with translated("taking the snapshot"), node.engine.begin() as conn:
            return analysis.take_snapshot(conn, node.policy, node.settings.report)

    print_record(on_hub(take), as_json)
