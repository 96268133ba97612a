"""`syncd report`: the managers' consolidated reports, each also a report_* view on the hub."""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from syncd.cli.context import CsvOpt, JsonOpt
from syncd.cli.hub import hub_settings, read, read_node
from syncd.cli.render import (
    out,
    print_csv,
    print_json,
    print_table,
    usage,
)

if TYPE_CHECKING:
    from syncd.core.policy import Policy

app = typer.Typer(
    help="Managers: consolidated reports; each is also a report_* view on the hub.",
    no_args_is_help=True,
)

_PRODUCT_SECTIONS = (
    ("deposits", "deposit_accounts"),
    ("loans", "loans"),
    ("intermediary_business", "intermediary_business"),
)
# What a table of products shows; --json and --csv carry every column.
_PRODUCT_COLUMNS = {
    "deposits": ("origin_node", "account_id", "product", "currency", "balance", "status"),
    "loans": ("origin_node", "loan_id", "product", "balance", "five_class", "overdue_days"),
    "intermediary_business": (
        "origin_node",
        "business_id",
        "product_type",
        "product_name",
        "fee_income",
        "trade_date",
    ),
}
# The summed columns of `report cities`, whose last row is the province (全省) total.
CITY_SUMS = (
    "customers",
    "deposit_balance",
    "loan_balance",
    "loan_normal",
    "loan_special_mention",
    "loan_substandard",
    "loan_doubtful",
    "loan_loss",
    "overdue_loan_balance",
    "fee_income",
)
_LINK_COLUMNS = frozenset({"golden_id", "id_type", "id_number", "origin_node", "city_code"})


def _report_rows(
    title: str,
    rows: list[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    as_json: bool,
    as_csv: bool,
) -> None:
    """Render a flat report: JSON or CSV with every key, or a table of (key, label) columns."""
    if as_json:
        print_json(rows)
    elif as_csv:
        keys = list(rows[0]) if rows else [k for k, _ in columns]
        print_csv(keys, ([r[k] for k in keys] for r in rows))
    else:
        print_table(
            title,
            [label for _, label in columns],
            ([r[k] for k, _ in columns] for r in rows),
        )


def _one_format(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        usage("--json and --csv: choose one")


@app.command("customer")
def report_customer(
    id_number: Annotated[str, typer.Option("--id-number", help="the customer's ID number")],
    id_type: Annotated[
        str | None,
        typer.Option("--id-type", help="e.g. ric or passport (if ambiguous)"),
    ] = None,
    as_json: JsonOpt = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV: section,node,record,column,value per field")
    ] = False,
) -> None:
    """Customer 360: golden record, each city's version and differences, products, cities."""
    from syncd.hub import reports

    _one_format(as_json, as_csv)
    view, policy = read_node(
        lambda n, c: (reports.customer_360(c, n.policy, id_number, id_type), n.policy)
    )
    if as_json:
        print_json(view)
    elif as_csv:
        print_csv(["section", "node", "record", "column", "value"], _customer_csv(view, policy))
    else:
        _customer_tables(view)


def _customer_csv(view: dict[str, Any], policy: Policy) -> Iterable[Sequence[Any]]:
    golden = view["golden"]
    for k, v in golden.items():
        yield ("golden", "", golden["golden_id"], k, v)
    for src in view["sources"]:
        record = "/".join(str(src[k]) for k in policy.table("customers").primary_key)
        for k, v in src.items():
            yield ("source", src["origin_node"], record, k, v)
    for diff in view["differences"]:
        for node, v in diff["values"].items():
            yield ("difference", node, "", diff["column"], v)
    for section, table in _PRODUCT_SECTIONS:
        for row in view[section]:
            record = "/".join(str(row[k]) for k in policy.table(table).primary_key)
            for k, v in row.items():
                if k not in _LINK_COLUMNS:
                    yield (section, row["origin_node"], record, k, v)


def _customer_tables(view: dict[str, Any]) -> None:
    golden = view["golden"]
    out.print(
        f"[bold]{golden['name']}[/] ({golden['id_type']} {golden['id_number']}), "
        f"golden record {golden['golden_id']}, cities: {', '.join(view['cities'])}",
        highlight=False,
    )
    print_table("golden record", ["field", "value"], golden.items())
    sources = view["sources"]
    differing = {d["column"] for d in view["differences"]}
    fields = [k for k in (sources[0] if sources else {}) if k != "origin_node"]
    print_table(
        "each city's version (≠: differs between cities)",
        ["field", *(s["origin_node"] for s in sources), ""],
        ([f, *(s[f] for s in sources), "≠" if f in differing else ""] for f in fields),
    )
    for section, _ in _PRODUCT_SECTIONS:
        rows = view[section]
        keys = [k for k in _PRODUCT_COLUMNS[section] if not rows or k in rows[0]]
        print_table(section.replace("_", " "), keys, ([r[k] for k in keys] for r in rows))
    totals = view["totals"]
    out.print(
        f"deposits {totals['deposit_balance']}, loans {totals['loan_balance']}, "
        f"fee income {totals['fee_income']}",
        highlight=False,
    )


@app.command("cities")
def report_cities(as_json: JsonOpt = False, as_csv: CsvOpt = False) -> None:
    """Per city and province total: customers, deposits, loans by five-class, overdue, fees."""
    from syncd.hub import reports
    from syncd.hub.analysis import with_province_total

    _one_format(as_json, as_csv)
    rows = with_province_total(read(reports.city_summary), CITY_SUMS)
    _report_rows(
        "cities (view report_city_summary)",
        rows,
        [
            ("node_id", "node"),
            ("city_code", "city"),
            ("customers", "customers"),
            ("deposit_balance", "deposits"),
            ("loan_balance", "loans"),
            ("loan_normal", "normal"),
            ("loan_special_mention", "special mention"),
            ("loan_substandard", "substandard"),
            ("loan_doubtful", "doubtful"),
            ("loan_loss", "loss"),
            ("overdue_loan_balance", "overdue"),
            ("fee_income", "fee income"),
            ("last_applied_at", "last applied"),
            ("last_seen_at", "last seen"),
        ],
        as_json,
        as_csv,
    )


@app.command("value")
def report_value(
    top: Annotated[int | None, typer.Option("--top", help="only the first N customers")] = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Customer contribution (贡献度) province-wide, ranked, with value tiers ([report] weights)."""
    from syncd.hub import reports

    _one_format(as_json, as_csv)
    rows = read_node(lambda n, c: reports.customer_value(c, n.settings.report, top))
    _report_rows(
        "customer value (view report_customer_value_base; weights: config, report section)",
        rows,
        [
            ("rank", "rank"),
            ("tier", "tier"),
            ("name", "name"),
            ("id_type", "id type"),
            ("id_number", "id number"),
            ("cities", "cities"),
            ("deposit_balance", "deposits"),
            ("loan_balance", "loans"),
            ("fee_income", "fee income"),
            ("contribution", "contribution"),
        ],
        as_json,
        as_csv,
    )


@app.command("exposure")
def report_exposure(
    min_amount: Annotated[
        str, typer.Option("--min", help="cross-city total loan balance that warns (default 0)")
    ] = "0",
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Cross-city credit exposure and early warning (风险预警): multi-city, overdue, NPL."""
    from syncd.hub import reports

    _one_format(as_json, as_csv)
    hub_settings()
    try:
        threshold = decimal.Decimal(min_amount)
    except decimal.InvalidOperation:
        usage(f"--min {min_amount!r}: not an amount")
    rows = read(lambda c: reports.credit_exposure(c, threshold))
    _report_rows(
        f"credit exposure (view report_credit_exposure, cross-city minimum {threshold})",
        rows,
        [
            ("name", "name"),
            ("id_type", "id type"),
            ("id_number", "id number"),
            ("loan_cities", "loan cities"),
            ("loan_count", "loans"),
            ("loan_balance", "balance"),
            ("max_overdue_days", "max overdue days"),
            ("worst_five_class", "worst class"),
            ("warnings", "warnings"),
        ],
        as_json,
        as_csv,
    )
