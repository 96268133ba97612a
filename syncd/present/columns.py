"""The column sets of every report and the builders of their tables.

`syncd report …` (syncd.cli.report, syncd.cli.analysis) and the console's pages and Excel
exports build their tables here from what the hub's report functions return
(`syncd.hub.reports`, `syncd.hub.analysis`), so the terminal, CSV, XLSX and the web page show
the same labels and cells.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from syncd.core.i18n import N_, Translator
from syncd.present.tables import Column, Kind, Output, Table, Typed, label

if TYPE_CHECKING:
    from syncd.core.policy import Policy

# --- the consolidated reports (syncd report customer|cities|value|exposure) -----------------

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


# --- the customer 360 ----------------------------------------------------------------------


def customer_tables(view: dict[str, Any], fmt: Output, names: Mapping[str, str]) -> list[Table]:
    """A customer 360 (`syncd.hub.reports.customer_360`) as tables: the summary, the golden
    record, each city's version, then deposits, loans and intermediary business."""
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
            {"field": label(fmt, field("customers", k)), "value": _typed(k, golden[k])}
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
                "field": label(fmt, field("customers", k)),
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


def customer_csv(view: dict[str, Any], policy: Policy, fmt: Output) -> Table:
    """Every field of the customer 360 as one row: section, city, record, field, value."""
    rows = [
        {
            "section": fmt.tr.gettext(section),
            "node": node or None,
            "record": record,
            "field": label(fmt, field(table, key)),
            "value": Typed(field(table, key), value),
        }
        for section, node, record, table, key, value in _customer_fields(view, policy)
    ]
    return Table("fields", N_("customer 360"), _CSV_COLUMNS, rows)


# --- the analyses (syncd report segments|warnings|key|trend) ------------------------------

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


def with_province(tr: Translator, names: Mapping[str, str]) -> dict[str, str]:
    """Display names, with the city tables' total row shown as the province (全省)."""
    from syncd.hub.analysis import PROVINCE

    return {**names, PROVINCE: tr.gettext(N_("province"))}


def pick(columns: Sequence[Column], *keys: str) -> tuple[Column, ...]:
    """The columns of a column set with these keys, in this order (a narrower table)."""
    by_key = {c.key: c for c in columns}
    return tuple(by_key[k] for k in keys)


# --- tables --------------------------------------------------------------------------------


def cities_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """`report cities`: rows of `syncd.hub.reports.city_summary` (with the province total)."""
    return Table("cities", N_("cities (view report_city_summary)"), CITY_COLUMNS, rows)


def value_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """`report value`: rows of `syncd.hub.reports.customer_value`."""
    return Table(
        "value",
        N_("customer value (view report_customer_value_base; weights: config, report section)"),
        VALUE_COLUMNS,
        rows,
    )


def exposure_table(rows: Sequence[Mapping[str, Any]], minimum: str) -> Table:
    """`report exposure`: rows of `syncd.hub.reports.credit_exposure`; minimum as shown."""
    return Table(
        "exposure",
        N_("credit exposure (view report_credit_exposure, cross-city minimum {minimum})"),
        EXPOSURE_COLUMNS,
        rows,
        {"minimum": minimum},
    )


def segments_table(
    tr: Translator,
    by: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    cities: Mapping[str, str],
) -> Table:
    """`report segments`: rows of `syncd.hub.analysis.segments` by the dimensions `by`, home
    cities by their display names (`city_names`)."""
    shown = [
        {**r, **({"city": cities.get(str(r["city"]), r["city"])} if "city" in r else {})}
        for r in rows
    ]
    dims = tuple(Column(d, DIMENSION_LABELS.get(d, d), Kind.ENUM, enum="segment") for d in by if d)
    return Table(
        "segments",
        N_("customer segments by {dimensions} (view report_customer_profile)"),
        (*dims, *SEGMENT_COLUMNS),
        shown,
        {"dimensions": " × ".join(tr.gettext(DIMENSION_LABELS.get(d, d)) for d in by)},
    )


def warnings_table(rows: Sequence[Mapping[str, Any]], cities: Mapping[str, str]) -> Table:
    """`report warnings`: rows of `syncd.hub.analysis.risk_warnings`, home cities by name."""
    shown = [{**r, "home_city": cities.get(str(r["home_city"]), r["home_city"])} for r in rows]
    return Table(
        "warnings",
        N_("risk early warning (thresholds: [report] warn_*)"),
        WARNING_COLUMNS,
        shown,
    )


def key_table(rows: Sequence[Mapping[str, Any]], top: int) -> Table:
    """`report key`: rows of `syncd.hub.analysis.key_customers`."""
    return Table(
        "key",
        N_("key customers, top {top} (change: since the previous snapshot)"),
        KEY_COLUMNS,
        rows,
        {"top": top},
    )


def trend_table(rows: Sequence[Mapping[str, Any]], since: str) -> Table:
    """`report trend`: rows of `syncd.hub.analysis.trend` (names: `with_province`)."""
    return Table(
        "trend",
        N_("trend since the snapshot of {since}"),
        TREND_COLUMNS,
        rows,
        {"since": rows[0]["since"] if rows else since},
    )


# `syncd report search` and the console's customer search: one row per golden customer found.
SEARCH_COLUMNS = (
    GOLDEN_ID,
    NAME,
    ID_TYPE,
    ID_NUMBER,
    field("customers", "customer_type"),
    Column("home_city", N_("home city")),
)
