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
from syncd.cli.render import call, print_record
from syncd.cli.report import app
from syncd.hub.nodes import city_names
from syncd.present import columns


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
        lambda n, c: (
            analysis.segments(c, n.policy, n.settings.report, by),
            city_names(c),
        )
    )
    present.show(
        "report segments",
        {"by": by},
        fmt,
        names,
        columns.segments_table(fmt.tr, by, rows, cities),
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
            city_names(c),
        )
    )
    present.show(
        "report warnings",
        {"severity": severity, "reason": reason or []},
        fmt,
        names,
        columns.warnings_table(rows, cities),
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
        columns.key_table(rows, top),
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
        columns.with_province(fmt.tr, names),
        columns.trend_table(rows, since),
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
