"""`syncd report`: the managers' consolidated reports, each also a report_* view on the hub.

What each report shows is declared here as columns (`syncd.cli.present`): labels and coded
values in the user's language, amounts in 元 or 万元, ID numbers masked unless `--unmask`.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from syncd.cli import present
from syncd.cli.hub import hub_settings
from syncd.cli.present import Column, Kind, Output, Table, Typed
from syncd.cli.render import usage
from syncd.core.i18n import N_, format_amount, mask_id

if TYPE_CHECKING:
    from syncd.core.policy import Policy

app = typer.Typer(
    help="Managers: consolidated reports; each is also a report_* view on the hub.",
    no_args_is_help=True,
)

# --- columns -------------------------------------------------------------------------------

NODE = Column("origin_node", N_("city"), Kind.NODE)
NAME = Column("name", N_("name"))
ID_TYPE = Column("id_type", N_("ID type"), Kind.ENUM, enum="id_type")
ID_NUMBER = Column("id_number", N_("ID number"), Kind.ID_NUMBER)
GOLDEN_ID = Column("golden_id", N_("golden ID"), Kind.COUNT)

# The reference CRM's columns (schemas/crm.yaml) as reports show them; a column a policy adds
# is shown under its own name, as text.
FIELDS: Mapping[str, Mapping[str, Column]] = {
    "customers": {
        c.key: c
        for c in (
            GOLDEN_ID,
            NODE,
            Column("city_code", N_("city code")),
            Column("customer_id", N_("customer number")),
            Column("customer_type", N_("customer type"), Kind.ENUM, enum="customer_type"),
            NAME,
            ID_TYPE,
            ID_NUMBER,
            Column("phone", N_("phone")),
            Column("address", N_("address")),
            Column("home_city", N_("home city")),
            Column("status", N_("customer status"), Kind.ENUM, enum="customer_status"),
            Column("risk_level", N_("risk level"), Kind.COUNT),
            Column("risk_tags", N_("risk tags"), Kind.LIST),
            Column("credit_limit", N_("credit limit"), Kind.MONEY),
            Column("created_at", N_("created"), Kind.DATETIME),
            Column("updated_at", N_("updated"), Kind.DATETIME),
        )
    },
    "deposit_accounts": {
        c.key: c
        for c in (
            NODE,
            Column("account_id", N_("account")),
            Column("product", N_("product"), Kind.ENUM, enum="deposit_product"),
            Column("currency", N_("currency")),
            Column("balance", N_("balance"), Kind.MONEY),
            Column("status", N_("status"), Kind.ENUM, enum="account_status"),
            Column("interest_rate", N_("interest rate"), Kind.NUMBER, export_only=True),
            Column("opened_on", N_("opened on"), Kind.DATE, export_only=True),
            Column("maturity_on", N_("matures on"), Kind.DATE, export_only=True),
        )
    },
    "loans": {
        c.key: c
        for c in (
            NODE,
            Column("loan_id", N_("loan")),
            Column("product", N_("product"), Kind.ENUM, enum="loan_product"),
            Column("balance", N_("balance"), Kind.MONEY),
            Column("five_class", N_("five-class"), Kind.ENUM, enum="five_class"),
            Column("overdue_days", N_("overdue days"), Kind.COUNT),
            Column("principal", N_("principal"), Kind.MONEY, export_only=True),
            Column("interest_rate", N_("interest rate"), Kind.NUMBER, export_only=True),
            Column("issued_on", N_("issued on"), Kind.DATE, export_only=True),
            Column("maturity_on", N_("matures on"), Kind.DATE, export_only=True),
            Column("collateral", N_("collateral"), export_only=True),
        )
    },
    "intermediary_business": {
        c.key: c
        for c in (
            NODE,
            Column("business_id", N_("business")),
            Column("product_type", N_("product type"), Kind.ENUM, enum="business_type"),
            Column("product_name", N_("product name")),
            Column("fee_income", N_("fee income"), Kind.MONEY),
            Column("trade_date", N_("trade date"), Kind.DATE),
            Column("amount", N_("amount"), Kind.MONEY, export_only=True),
        )
    },
}

_PRODUCT_SECTIONS = (
    ("deposits", "deposit_accounts", N_("deposit accounts")),
    ("loans", "loans", N_("loan accounts")),
    ("intermediary_business", "intermediary_business", N_("intermediary business")),
)
# Columns of a customer's golden record and versions that tables leave out: keys and links.

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

CITY_COLUMNS = (
    Column("node_id", N_("city"), Kind.NODE),
    Column("city_code", N_("city code"), export_only=True),
    Column("customers", N_("customers"), Kind.COUNT),
    Column("deposit_balance", N_("deposits"), Kind.MONEY),
    Column("loan_balance", N_("loans"), Kind.MONEY),
    Column("loan_normal", N_("normal"), Kind.MONEY),
    Column("loan_special_mention", N_("special mention"), Kind.MONEY),
    Column("loan_substandard", N_("substandard"), Kind.MONEY),
    Column("loan_doubtful", N_("doubtful"), Kind.MONEY),
    Column("loan_loss", N_("loss"), Kind.MONEY),
    Column("overdue_loan_balance", N_("overdue loans"), Kind.MONEY),
    Column("fee_income", N_("fee income"), Kind.MONEY),
    Column("last_applied_at", N_("last applied"), Kind.DATETIME),
    Column("last_seen_at", N_("last seen"), Kind.DATETIME),
)

VALUE_COLUMNS = (
    Column("rank", N_("rank"), Kind.COUNT),
    Column("tier", N_("tier"), Kind.ENUM, enum="tier"),
    NAME,
    ID_TYPE,
    ID_NUMBER,
    Column("cities", N_("cities"), Kind.NODES),
    Column("deposit_balance", N_("deposits"), Kind.MONEY),
    Column("loan_balance", N_("loans"), Kind.MONEY),
    Column("fee_income", N_("fee income"), Kind.MONEY),
    Column("contribution", N_("contribution"), Kind.MONEY),
    Column("golden_id", N_("golden ID"), Kind.COUNT, export_only=True),
    Column("city_count", N_("number of cities"), Kind.COUNT, export_only=True),
)

EXPOSURE_COLUMNS = (
    NAME,
    ID_TYPE,
    ID_NUMBER,
    Column("loan_cities", N_("loan cities"), Kind.NODES),
    Column("loan_count", N_("number of loans"), Kind.COUNT),
    Column("loan_balance", N_("loan balance"), Kind.MONEY),
    Column("max_overdue_days", N_("max overdue days"), Kind.COUNT),
    Column("worst_five_class", N_("worst class"), Kind.ENUM, enum="five_class"),
    Column("warnings", N_("warnings"), Kind.ENUMS, enum="warning"),
    Column("golden_id", N_("golden ID"), Kind.COUNT, export_only=True),
    Column("loan_city_count", N_("number of loan cities"), Kind.COUNT, export_only=True),
    Column("multi_city", N_("loans in several cities"), Kind.BOOL, export_only=True),
    Column("overdue", N_("overdue"), Kind.BOOL, export_only=True),
    Column("non_performing", N_("non-performing"), Kind.BOOL, export_only=True),
)


def field(table: str, key: str) -> Column:
    """The column spec of one CRM column (its own name as text if the reports do not know it)."""
    return FIELDS.get(table, {}).get(key) or Column(key, key)


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
    tables = _customer_tables(view, fmt, names)
    present.show(
        "report customer",
        # The customer by golden id and masked number: the audit log never holds a full one.
        {"golden_id": golden["golden_id"], "id_number": mask_id(golden["id_number"])},
        fmt,
        names,
        *tables,
        raw=view,
        csv_table=_customer_csv(view, policy, fmt),
    )


def _customer_tables(view: dict[str, Any], fmt: Output, names: Mapping[str, str]) -> list[Table]:
    golden, totals = view["golden"], view["totals"]
    summary = Table(
        "customer",
        N_("customer 360"),
        (
            GOLDEN_ID,
            NAME,
            field("customers", "customer_type"),
            ID_TYPE,
            ID_NUMBER,
            Column("cities", N_("cities"), Kind.NODES),
            Column("deposit_balance", N_("deposits"), Kind.MONEY),
            Column("loan_balance", N_("loans"), Kind.MONEY),
            Column("fee_income", N_("fee income"), Kind.MONEY),
        ),
        [{**golden, **totals, "cities": view["cities"]}],
    )
    shown = [k for k in golden if not k.startswith("_")]
    record = Table(
        "golden",
        N_("golden record"),
        (Column("field", N_("field")), Column("value", N_("value"))),
        [
            {"field": present.label(fmt, field("customers", k)), "value": _typed(k, golden[k])}
            for k in shown
        ],
    )
    sources = view["sources"]
    differing = {d["column"] for d in view["differences"]}
    fields = [k for k in (sources[0] if sources else {}) if not k.startswith("_")]
    fields = [k for k in fields if k != "origin_node"]
    versions = Table(
        "sources",
        N_("each city's version (≠: differs between cities)"),
        (
            Column("field", N_("field")),
            *(
                # A node's display name as a column label: no message, so shown as it is.
                Column(f"city{i}", names.get(s["origin_node"], s["origin_node"]))
                for i, s in enumerate(sources)
            ),
            Column("differs", N_("differs")),
        ),
        [
            {
                "field": present.label(fmt, field("customers", k)),
                **{f"city{i}": _typed(k, s[k]) for i, s in enumerate(sources)},
                "differs": "≠" if k in differing else "",
            }
            for k in fields
        ],
    )
    products = [
        Table(section, title, tuple(FIELDS[table].values()), view[section])
        for section, table, title in _PRODUCT_SECTIONS
    ]
    return [summary, record, versions, *products]


def _typed(key: str, value: Any) -> Typed:
    return Typed(field("customers", key), value)


_SECTION_COLUMN = Column("section", N_("section"))
_CSV_COLUMNS = (
    _SECTION_COLUMN,
    Column("node", N_("city"), Kind.NODE),
    Column("record", N_("record")),
    Column("field", N_("field")),
    Column("value", N_("value")),
)


def _customer_fields(
    view: dict[str, Any], policy: Policy
) -> Iterator[tuple[str, str, str, str, str, Any]]:
    """(section, node, record, table, column, value) of every field of a customer 360."""
    golden = view["golden"]
    for k, v in golden.items():
        yield N_("golden record"), "", str(golden["golden_id"]), "customers", k, v
    for src in view["sources"]:
        record = "/".join(str(src[k]) for k in policy.table("customers").primary_key)
        for k, v in src.items():
            yield N_("city version"), src["origin_node"], record, "customers", k, v
    for diff in view["differences"]:
        for node, v in diff["values"].items():
            yield N_("difference"), node, "", "customers", diff["column"], v
    for section, table, title in _PRODUCT_SECTIONS:
        for row in view[section]:
            record = "/".join(str(row[k]) for k in policy.table(table).primary_key)
            for k, v in row.items():
                if k not in _LINK_COLUMNS:
                    yield title, row["origin_node"], record, table, k, v


def _customer_csv(view: dict[str, Any], policy: Policy, fmt: Output) -> Table:
    """Every field of the customer 360 as one row: section, city, record, field, value."""
    rows = [
        {
            "section": fmt.tr.gettext(section),
            "node": node or None,
            "record": record,
            "field": present.label(fmt, field(table, key)),
            "value": Typed(field(table, key), value),
        }
        for section, node, record, table, key, value in _customer_fields(view, policy)
    ]
    return Table("fields", N_("customer 360"), _CSV_COLUMNS, rows)


SEARCH_COLUMNS = (
    GOLDEN_ID,
    NAME,
    ID_TYPE,
    ID_NUMBER,
    field("customers", "customer_type"),
    Column("home_city", N_("home city")),
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
        lambda n, c: (search.search_customers(c, n.policy, text), search.city_names(c))
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
        Table("customers", title, SEARCH_COLUMNS, rows, {"text": shown}),
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
    from syncd.hub.analysis import PROVINCE, with_province_total

    fmt = present.output(lang, unit, False, as_json, as_csv, xlsx, output)
    rows, names = present.read(lambda _n, c: reports.city_summary(c))
    rows = with_province_total(rows, CITY_SUMS)
    # The total row's node is the province: shown as 全省 (or "province") like a city's name.
    names = {**names, PROVINCE: fmt.tr.gettext(N_("province"))}
    present.show(
        "report cities",
        {},
        fmt,
        names,
        Table("cities", N_("cities (view report_city_summary)"), CITY_COLUMNS, rows),
    )


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
    present.show(
        "report value",
        {"top": top},
        fmt,
        names,
        Table(
            "value",
            N_("customer value (view report_customer_value_base; weights: config, report section)"),
            VALUE_COLUMNS,
            rows,
        ),
    )


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
        Table(
            "exposure",
            N_("credit exposure (view report_credit_exposure, cross-city minimum {minimum})"),
            EXPOSURE_COLUMNS,
            rows,
            {"minimum": minimum},
        ),
    )
