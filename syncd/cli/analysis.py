"""`syncd report segments|warnings|key|trend|snapshot`: the province's analyses (issue 14).

Registered on the `report` app (`syncd.cli.report.app`) and shown like every report through
`syncd.cli.present`: Chinese by default (`--lang en`), 元/万元, ID numbers masked unless
`--unmask` (audited), `--csv`, `--xlsx`, `--json` (raw keys and codes, as `syncd.hub.analysis`
returns them).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from syncd.cli import present
from syncd.cli.hub import hub_settings, on_hub
from syncd.cli.present import Column, Kind, Table
from syncd.cli.render import call, print_record
from syncd.cli.report import app
from syncd.core.i18n import N_

# `--by` dimension → its column label.
DIMENSION_LABELS = {
    "type": N_("customer type"),
    "tier": N_("value tier"),
    "city": N_("home city"),
    "district": N_("district"),
    "age": N_("age band"),
    "products": N_("products held"),
    "tenure": N_("customer tenure"),
}
SEGMENT_COLUMNS = (
    Column("customers", N_("customers"), Kind.COUNT),
    Column("deposit_balance", N_("deposits"), Kind.MONEY),
    Column("loan_balance", N_("loans"), Kind.MONEY),
    Column("fee_income", N_("fee income"), Kind.MONEY),
    Column("contribution", N_("contribution"), Kind.MONEY),
    Column("share_pct", N_("share of contribution (%)"), Kind.NUMBER),
)
WARNING_COLUMNS = (
    Column("severity", N_("severity"), Kind.ENUM, enum="severity"),
    Column("reason", N_("reason"), Kind.ENUM, enum="warning"),
    Column("name", N_("name")),
    Column("id_type", N_("ID type"), Kind.ENUM, enum="id_type", export_only=True),
    Column("id_number", N_("ID number"), Kind.ID_NUMBER),
    Column("home_city", N_("home city")),
    Column("risk_level", N_("risk level"), Kind.COUNT, export_only=True),
    Column("credit_limit", N_("credit limit"), Kind.MONEY),
    Column("loan_balance", N_("loans"), Kind.MONEY),
    Column("prev_loan_balance", N_("loans before"), Kind.MONEY, export_only=True),
    Column("max_overdue_days", N_("overdue days"), Kind.COUNT),
    Column("worst_five_class", N_("worst five-class"), Kind.ENUM, enum="five_class"),
    Column(
        "prev_five_class", N_("five-class before"), Kind.ENUM, enum="five_class", export_only=True
    ),
    Column("golden_id", N_("golden ID"), Kind.COUNT, export_only=True),
)
KEY_COLUMNS = (
    Column("rank", N_("rank"), Kind.COUNT),
    Column("tier", N_("value tier"), Kind.ENUM, enum="tier"),
    Column("name", N_("name")),
    Column("id_number", N_("ID number"), Kind.ID_NUMBER),
    Column("cities", N_("cities"), Kind.NODES),
    Column("products", N_("products held"), Kind.ENUM, enum="segment"),
    Column("deposit_balance", N_("deposits"), Kind.MONEY, export_only=True),
    Column("loan_balance", N_("loans"), Kind.MONEY, export_only=True),
    Column("fee_income", N_("fee income"), Kind.MONEY, export_only=True),
    Column("contribution", N_("contribution"), Kind.MONEY),
    Column("contribution_change", N_("change"), Kind.MONEY),
    Column("prev_tier", N_("tier before"), Kind.ENUM, enum="tier", export_only=True),
    Column("warnings", N_("warnings"), Kind.ENUMS, enum="warning"),
    Column("golden_id", N_("golden ID"), Kind.COUNT, export_only=True),
)
TREND_COLUMNS = (
    Column("node_id", N_("city"), Kind.NODE),
    Column("customers", N_("customers"), Kind.COUNT),
    Column("customers_change", N_("Δ customers"), Kind.COUNT),
    Column("deposit_balance", N_("deposits"), Kind.MONEY),
    Column("deposit_balance_change", N_("Δ deposits"), Kind.MONEY),
    Column("loan_balance", N_("loans"), Kind.MONEY),
    Column("loan_balance_change", N_("Δ loans"), Kind.MONEY),
    Column("npl_balance", N_("non-performing"), Kind.MONEY),
    Column("npl_balance_change", N_("Δ non-performing"), Kind.MONEY),
    Column("fee_income", N_("fee income"), Kind.MONEY),
    Column("fee_income_change", N_("Δ fee income"), Kind.MONEY),
    Column("key_customers", N_("key customers"), Kind.COUNT),
    Column("key_customers_change", N_("Δ key customers"), Kind.COUNT),
)


def _province(fmt: present.Output, names: dict[str, str]) -> dict[str, str]:
    """Display names, with the city tables' total row shown as the province (全省)."""
    from syncd.hub.analysis import PROVINCE

    return {**names, PROVINCE: fmt.tr.gettext(N_("province"))}


def _city_names(conn: Any) -> dict[str, str]:
    """City code → the display name of the node registered with it (segments by home city)."""
    from syncd.hub.nodes import display_names
    from syncd.store import hub_tables as h

    shown = display_names(conn)
    rows = conn.execute(h.nodes.select().where(h.nodes.c.city_code.is_not(None)))
    return {str(r.city_code): shown.get(str(r.node_id), str(r.city_code)) for r in rows}


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
    lang: present.LangOpt = None,
    unit: present.UnitOpt = None,
    as_json: present.JsonOpt = False,
    as_csv: present.CsvOpt = False,
    xlsx: present.XlsxOpt = None,
    output: present.OutputOpt = None,
) -> None:
    """Customer segmentation: customers, balances and contribution per segment, with a total."""
    from syncd.hub import analysis

    fmt = present.output(lang, unit, False, as_json, as_csv, xlsx, output)
    (rows, cities), names = present.read(
        lambda n, c: (analysis.segments(c, n.policy, n.settings.report, by), _city_names(c))
    )
    shown = [
        {**r, **({"city": cities.get(str(r["city"]), r["city"])} if "city" in r else {})}
        for r in rows
    ]
    dims = tuple(Column(d, DIMENSION_LABELS.get(d, d), Kind.ENUM, enum="segment") for d in by if d)
    present.show(
        "report segments",
        {"by": by},
        fmt,
        names,
        Table(
            "segments",
            N_("customer segments by {dimensions} (view report_customer_profile)"),
            (*dims, *SEGMENT_COLUMNS),
            shown,
            {"dimensions": " × ".join(fmt.tr.gettext(DIMENSION_LABELS.get(d, d)) for d in by)},
        ),
        raw=rows,
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
    lang: present.LangOpt = None,
    unit: present.UnitOpt = None,
    unmask: present.UnmaskOpt = False,
    as_json: present.JsonOpt = False,
    as_csv: present.CsvOpt = False,
    xlsx: present.XlsxOpt = None,
    output: present.OutputOpt = None,
) -> None:
    """Risk early warning (风险预警): one row per customer and reason, worst first."""
    from syncd.hub import analysis

    fmt = present.output(lang, unit, unmask, as_json, as_csv, xlsx, output)
    hub_settings()
    minimum = call(lambda: analysis.parse_severity(severity))
    call(lambda: analysis.check_reasons(reason or ()))
    (rows, cities), names = present.read(
        lambda n, c: (
            analysis.risk_warnings(
                c, n.policy, n.settings.report, min_severity=minimum, reasons=reason or ()
            ),
            _city_names(c),
        )
    )
    shown = [{**r, "home_city": cities.get(str(r["home_city"]), r["home_city"])} for r in rows]
    present.show(
        "report warnings",
        {"severity": severity, "reason": reason or []},
        fmt,
        names,
        Table(
            "warnings",
            N_("risk early warning (thresholds: [report] warn_*)"),
            WARNING_COLUMNS,
            shown,
        ),
        raw=rows,
    )


@app.command("key")
def report_key(
    top: Annotated[int, typer.Option("--top", help="how many customers")] = 20,
    lang: present.LangOpt = None,
    unit: present.UnitOpt = None,
    unmask: present.UnmaskOpt = False,
    as_json: present.JsonOpt = False,
    as_csv: present.CsvOpt = False,
    xlsx: present.XlsxOpt = None,
    output: present.OutputOpt = None,
) -> None:
    """Key customers (大客户): the top by contribution, their cities, products and trend."""
    from syncd.hub import analysis

    fmt = present.output(lang, unit, unmask, as_json, as_csv, xlsx, output)
    rows, names = present.read(
        lambda n, c: analysis.key_customers(c, n.policy, n.settings.report, top)
    )
    present.show(
        "report key",
        {"top": top},
        fmt,
        names,
        Table(
            "key",
            N_("key customers, top {top} (change: since the previous snapshot)"),
            KEY_COLUMNS,
            rows,
            {"top": top},
        ),
    )


@app.command("trend")
def report_trend(
    since: Annotated[
        str,
        typer.Option("--since", help="yesterday, month-end, year-start or a date YYYY-MM-DD"),
    ] = "yesterday",
    lang: present.LangOpt = None,
    unit: present.UnitOpt = None,
    as_json: present.JsonOpt = False,
    as_csv: present.CsvOpt = False,
    xlsx: present.XlsxOpt = None,
    output: present.OutputOpt = None,
) -> None:
    """Per city and province: today's figures and their change since a daily snapshot."""
    from syncd.hub import analysis

    fmt = present.output(lang, unit, False, as_json, as_csv, xlsx, output)
    rows, names = present.read(lambda n, c: analysis.trend(c, n.policy, n.settings.report, since))
    present.show(
        "report trend",
        {"since": since},
        fmt,
        _province(fmt, names),
        Table(
            "trend",
            N_("trend since the snapshot of {since}"),
            TREND_COLUMNS,
            rows,
            {"since": rows[0]["since"] if rows else since},
        ),
    )


@app.command("snapshot")
def report_snapshot(as_json: present.JsonOpt = False) -> None:
    """Take today's snapshot now (replacing one taken earlier today)."""
    from syncd.hub import analysis
    from syncd.store.db import translated

    def take(node: Any) -> dict[str, Any]:
        with translated("taking the snapshot"), node.engine.begin() as conn:
            return analysis.take_snapshot(conn, node.policy, node.settings.report)

    print_record(on_hub(take), as_json)
