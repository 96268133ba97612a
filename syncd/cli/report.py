"""`syncd report`: the managers' consolidated reports, each also a report_* view on the hub.

What each report shows is declared as columns in `syncd.present.columns` (shared with the web
console): labels and coded values in the user's language, amounts in 元 or 万元, ID numbers
masked unless `--unmask`.
"""

from __future__ import annotations

import decimal
from typing import Annotated

import typer

from syncd.cli import present
from syncd.cli.hub import hub_settings
from syncd.cli.render import usage
from syncd.core.i18n import N_, format_amount, mask_id
from syncd.hub.nodes import city_names
from syncd.present import columns
from syncd.present.tables import Table

app = typer.Typer(
    help="Managers: consolidated reports; each is also a report_* view on the hub.",
    no_args_is_help=True,
)

# --- commands ------------------------------------------------------------------------------


@app.command("customer")
def report_customer(
    id_number: Annotated[str, typer.Option("--id-number", help="the customer's ID number")],
    id_type: Annotated[
        str | None,
        typer.Option("--id-type", help="e.g. ric or passport (if ambiguous)"),
    ] = None,
    lang: present.LangOpt = None,
    unit: present.UnitOpt = None,
    unmask: present.UnmaskOpt = False,
    as_json: present.JsonOpt = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV: section,city,record,field,value per field")
    ] = False,
    xlsx: present.XlsxOpt = None,
    output: present.OutputOpt = None,
) -> None:
    """Customer 360: golden record, each city's version and differences, products, cities."""
    from syncd.hub import reports

    fmt = present.output(lang, unit, unmask, as_json, as_csv, xlsx, output)
    (view, policy), names = present.read(
        lambda n, c: (reports.customer_360(c, n.policy, id_number, id_type), n.policy)
    )
    golden = view["golden"]
    tables = columns.customer_tables(view, fmt, names)
    present.show(
        "report customer",
        # The customer by golden id and masked number: the audit log never holds a full one.
        {"golden_id": golden["golden_id"], "id_number": mask_id(golden["id_number"])},
        fmt,
        names,
        *tables,
        raw=view,
        csv_table=columns.customer_csv(view, policy, fmt),
    )


@app.command("search")
def report_search(
    text: Annotated[
        str, typer.Argument(help="part of a name, or an ID number (full, or masked with *)")
    ],
    lang: present.LangOpt = None,
    unmask: present.UnmaskOpt = False,
    as_json: present.JsonOpt = False,
    as_csv: present.CsvOpt = False,
) -> None:
    """Find golden customers by name or ID number (at most 50; the console's search)."""
    from syncd.hub import search

    fmt = present.output(lang, None, unmask, as_json, as_csv, None, None)
    (found, cities), names = present.read(
        lambda n, c: (search.search_customers(c, n.policy, text), city_names(c))
    )
    rows = [{**r, "home_city": cities.get(r["home_city"], r["home_city"])} for r in found.rows]
    # The text by its masked form when it is an ID number: the audit log never holds a full one.
    shown = mask_id(found.text) if found.mode == search.Mode.ID else found.text
    title = (
        N_("customers matching {text} (more match: narrow the search)")
        if found.more
        else N_("customers matching {text}")
    )
    present.show(
        "report search",
        {"text": shown},
        fmt,
        names,
        Table("customers", title, columns.SEARCH_COLUMNS, rows, {"text": shown}),
    )


@app.command("cities")
def report_cities(
    lang: present.LangOpt = None,
    unit: present.UnitOpt = None,
    as_json: present.JsonOpt = False,
    as_csv: present.CsvOpt = False,
    xlsx: present.XlsxOpt = None,
    output: present.OutputOpt = None,
) -> None:
    """Per city and province total: customers, deposits, loans by five-class, overdue, fees."""
    from syncd.hub import reports
    from syncd.hub.analysis import with_province_total

    fmt = present.output(lang, unit, False, as_json, as_csv, xlsx, output)
    rows, names = present.read(lambda _n, c: reports.city_summary(c))
    rows = with_province_total(rows, reports.CITY_SUMS)
    # The total row's node is the province: shown as 全省 (or "province") like a city's name.
    names = columns.with_province(fmt.tr, names)
    present.show("report cities", {}, fmt, names, columns.cities_table(rows))


@app.command("value")
def report_value(
    top: Annotated[int | None, typer.Option("--top", help="only the first N customers")] = None,
    lang: present.LangOpt = None,
    unit: present.UnitOpt = None,
    unmask: present.UnmaskOpt = False,
    as_json: present.JsonOpt = False,
    as_csv: present.CsvOpt = False,
    xlsx: present.XlsxOpt = None,
    output: present.OutputOpt = None,
) -> None:
    """Customer contribution (贡献度) province-wide, ranked, with value tiers ([report] weights)."""
    from syncd.hub import reports

    fmt = present.output(lang, unit, unmask, as_json, as_csv, xlsx, output)
    rows, names = present.read(lambda n, c: reports.customer_value(c, n.settings.report, top))
    present.show("report value", {"top": top}, fmt, names, columns.value_table(rows))


@app.command("exposure")
def report_exposure(
    min_amount: Annotated[
        str, typer.Option("--min", help="cross-city total loan balance that warns (default 0)")
    ] = "0",
    lang: present.LangOpt = None,
    unit: present.UnitOpt = None,
    unmask: present.UnmaskOpt = False,
    as_json: present.JsonOpt = False,
    as_csv: present.CsvOpt = False,
    xlsx: present.XlsxOpt = None,
    output: present.OutputOpt = None,
) -> None:
    """Cross-city credit exposure and early warning (风险预警): multi-city, overdue, NPL."""
    from syncd.hub import reports

    fmt = present.output(lang, unit, unmask, as_json, as_csv, xlsx, output)
    hub_settings()
    try:
        threshold = decimal.Decimal(min_amount)
    except decimal.InvalidOperation:
        usage(f"--min {min_amount!r}: not an amount")
    rows, names = present.read(lambda _n, c: reports.credit_exposure(c, threshold))
    tr = fmt.tr
    minimum = f"{format_amount(threshold, fmt.unit)} {tr.gettext(fmt.unit.label)}"
    present.show(
        "report exposure",
        {"min": str(threshold)},
        fmt,
        names,
        columns.exposure_table(rows, minimum),
    )
