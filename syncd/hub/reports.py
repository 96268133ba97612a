"""Manager reports on the hub: customer 360, city summary, value tiers, cross-city credit exposure.

Every report is also a SQL view on the hub (`report_views`), so psql and BI tools see what
`syncd report` shows. `install_views` creates them (`syncd init` on a hub calls it); the functions
below read them and return plain rows: lists sorted, money as ``Decimal`` quantized to 0.01.

A customer 360 in psql: the golden row from ``customers``, each city's version from
``src_customers`` joined to ``report_customer_link`` on (origin_node, customer_id), products
from the three ``report_customer_*`` views, all filtered by id_number.

The reports need the reference CRM's tables and columns (`report_views.REQUIRED`); on a hub whose
policy lacks any of them `install_views` installs nothing and says so by returning no view names.
"""

from __future__ import annotations

import decimal
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement
from sqlalchemy.sql.compiler import DDLCompiler

from syncd.core.checks import check_value, normalise
from syncd.core.errors import UsageError
from syncd.core.i18n import mask_id
from syncd.core.policy import CheckKind, Policy
from syncd.core.settings import ReportSection
from syncd.hub.audit import Action, AuditWriter
from syncd.hub.report_views import (
    CITY_VIEW,
    CUSTOMERS,
    DEPOSITS,
    EXPOSURE_VIEW,
    FEES,
    FIVE_CLASSES,
    LOANS,
    VALUE_VIEW,
    Views,
    live,
    missing_inputs,
)
from syncd.store import hub_tables as schema_hub
from syncd.store.db import translated
from syncd.store.dialect import Kind, dialect_for

TIERS = ("key", "high", "medium", "standard")
WARN_MULTI_CITY = "multi_city"
WARN_OVERDUE = "overdue"
WARN_NON_PERFORMING = "non_performing"

_CENT = Decimal("0.01")


# --- DDL -----------------------------------------------------------------------------------


class _CreateView(ExecutableDDLElement):
    def __init__(self, name: str, select: sa.Select[Any], *, replace: bool) -> None:
        self.name = name
        self.select = select
        self.replace = replace


class _DropView(ExecutableDDLElement):
    def __init__(self, name: str) -> None:
        self.name = name


@compiles(_CreateView)
def _compile_create_view(element: _CreateView, compiler: DDLCompiler, **kw: Any) -> str:
    # A view's text is stored, not executed with parameters: every constant must be inline.
    body = compiler.sql_compiler.process(element.select, literal_binds=True)
    verb = "CREATE OR REPLACE VIEW" if element.replace else "CREATE VIEW"
    return f"{verb} {compiler.preparer.quote(element.name)} AS {body}"


@compiles(_DropView)
def _compile_drop_view(element: _DropView, compiler: DDLCompiler, **kw: Any) -> str:
    return f"DROP VIEW IF EXISTS {compiler.preparer.quote(element.name)}"


def install_views(conn: sa.Connection, policy: Policy) -> tuple[str, ...]:
    """Create or replace every report view; returns their names (none if inputs are missing)."""
    if missing_inputs(policy):
        return ()
    dialect = dialect_for(conn)
    defs = Views(policy, dialect).definitions()
    replace = _REPLACE_VIEW[dialect.kind]
    for name, select in defs.items():
        replace(conn, name, select)
    return tuple(defs)


def _replace_pg_view(conn: sa.Connection, name: str, select: sa.Select[Any]) -> None:
    # CREATE OR REPLACE keeps grants and dependent views, but cannot drop or rename columns
    # (a policy change did that): then drop and create, without CASCADE, so a BI view built on
    # ours makes this fail loudly instead of vanishing.
    try:
        with conn.begin_nested():
            conn.execute(_CreateView(name, select, replace=True))
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42P16":  # invalid_table_definition
            raise
        _recreate_view(conn, name, select)


def _recreate_view(conn: sa.Connection, name: str, select: sa.Select[Any]) -> None:
    conn.execute(_DropView(name))
    conn.execute(_CreateView(name, select, replace=False))


# PostgreSQL replaces a view in place where it can; SQLite has no CREATE OR REPLACE VIEW.
_REPLACE_VIEW = {Kind.POSTGRES: _replace_pg_view, Kind.SQLITE: _recreate_view}

# The views as the report functions read them. Money columns stay untyped: NUMERIC arrives as
# Decimal on PostgreSQL and REAL as float on SQLite, and `_money` makes both a Decimal.
_CITY_MONEY = (
    "deposit_balance",
    "loan_balance",
    *(f"loan_{fc}" for fc in FIVE_CLASSES),
    "overdue_loan_balance",
    "fee_income",
)
# The summed columns of `report cities` (and the console's overview), whose last row is the
# province (全省) total: `analysis.with_province_total(city_summary(conn), CITY_SUMS)`.
CITY_SUMS = ("customers", *_CITY_MONEY)
_city_view = sa.table(
    CITY_VIEW,
    sa.column("node_id"),
    sa.column("city_code"),
    sa.column("customers"),
    *(sa.column(c) for c in _CITY_MONEY),
    sa.column("last_applied_at", sa.DateTime()),
    sa.column("last_seen_at", sa.DateTime()),
)
_value_view = sa.table(
    VALUE_VIEW,
    *(
        sa.column(c)
        for c in (
            "golden_id",
            "id_type",
            "id_number",
            "name",
            "cities",
            "city_count",
            "deposit_balance",
            "loan_balance",
            "fee_income",
        )
    ),
)
_exposure_view = sa.table(
    EXPOSURE_VIEW,
    *(
        sa.column(c)
        for c in (
            "golden_id",
            "id_type",
            "id_number",
            "name",
            "loan_cities",
            "loan_city_count",
            "loan_count",
            "loan_balance",
        )
    ),
    sa.column("multi_city", sa.Boolean()),
    sa.column("max_overdue_days"),
    sa.column("worst_five_class"),
    sa.column("overdue", sa.Boolean()),
    sa.column("non_performing", sa.Boolean()),
)


# --- values --------------------------------------------------------------------------------


def _money(value: Any) -> Decimal:
    if value is None:
        return Decimal("0.00")
    if isinstance(value, float):
        # SQLite's REAL sums: already rounded to 2 places in SQL; repr is the shortest exact form.
        value = repr(round(value, 2))
    return Decimal(value).quantize(_CENT, rounding=decimal.ROUND_HALF_UP)


def _split(names: str | None) -> list[str]:
    return sorted(n for n in (names or "").split(",") if n)


def _comparable(value: Any) -> Any:
    """A hashable form of a column value; list columns compare as sets (merged by union)."""
    if isinstance(value, list | tuple):
        return json.dumps(sorted(json.dumps(v, sort_keys=True, default=str) for v in value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _policy_views(conn: sa.Connection, policy: Policy) -> Views:
    problems = missing_inputs(policy)
    if problems:
        raise UsageError("the reports need " + ", ".join(problems) + " in the hub's policy")
    return Views(policy, dialect_for(conn))


# --- customer 360 --------------------------------------------------------------------------


def _stored_forms(id_number: str) -> list[str]:
    """The forms a number typed by a person may be stored under: as typed, normalised (full
    width, spaces, case) and canonical under each identity rule (15 digits upgraded to 18)."""
    forms = {id_number, normalise(id_number)}
    for kind in CheckKind:
        canonical, problem = check_value(kind, id_number)
        if problem is None and isinstance(canonical, str):
            forms.add(canonical)
    return sorted(forms)


def customer_360(
    conn: sa.Connection, policy: Policy, id_number: str, id_type: str | None = None
) -> dict[str, Any]:
    """One golden customer: the golden record, each city's version, differences, products.

    Raises UsageError if no live golden customer has this ID number (and type), or if the number
    is held under several ID types and none was given.
    """
    views = _policy_views(conn, policy)
    golden = views.golden
    query = sa.select(golden).where(golden.c.id_number.in_(_stored_forms(id_number)), live(golden))
    if id_type is not None:
        query = query.where(golden.c.id_type == id_type)
    found = [dict(r) for r in conn.execute(query.order_by(golden.c.id_type)).mappings()]
    if not found:
        typed = "" if id_type is None else f" and id_type {id_type!r}"
        # Masked: an error message ends up in terminals and logs, a full ID number must not.
        raise UsageError(f"no customer with id_number {mask_id(id_number)!r}{typed}")
    if len(found) > 1:
        types = ", ".join(str(r["id_type"]) for r in found)
        raise UsageError(
            f"id_number {mask_id(id_number)!r} belongs to {len(found)} customers "
            f"(id types: {types}); "
            "give --id-type"
        )
    record = found[0]
    gid = record[schema_hub.GOLDEN_ID]
    sources = _sources(conn, views, record)
    products = {child: _children(conn, views, child, gid) for child in (DEPOSITS, LOANS, FEES)}
    cities = {s[schema_hub.ORIGIN] for s in sources}
    for rows in products.values():
        cities.update(r[schema_hub.ORIGIN] for r in rows)
    return {
        "golden": record,
        "sources": sources,
        "differences": _differences(views, sources),
        "deposits": products[DEPOSITS],
        "loans": products[LOANS],
        "intermediary_business": products[FEES],
        "cities": sorted(cities),
        "totals": {
            "deposit_balance": _money(sum(_money(r["balance"]) for r in products[DEPOSITS])),
            "loan_balance": _money(sum(_money(r["balance"]) for r in products[LOANS])),
            "fee_income": _money(sum(_money(r["fee_income"]) for r in products[FEES])),
        },
    }


def _sources(conn: sa.Connection, views: Views, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    src, nodes = views.src, views.nodes
    customers = views.policy.table(CUSTOMERS)
    query = (
        sa.select(
            src.c[schema_hub.ORIGIN],
            nodes.c.city_code,
            *(src.c[c] for c in customers.public_columns),
            src.c["_seq"],
            src.c["_applied_at"],
        )
        .select_from(src.outerjoin(nodes, nodes.c.node_id == src.c[schema_hub.ORIGIN]))
        .where(live(src), *(src.c[k] == record[k] for k in views.identity))
        .order_by(src.c[schema_hub.ORIGIN])
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def _differences(views: Views, sources: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Columns whose values differ between the cities' versions, with each city's value.

    The city-local key, the identity and the change timestamp are left out: they differ (or
    agree) by construction.
    """
    customers = views.policy.table(CUSTOMERS)
    skip = {*customers.primary_key, *customers.identity, customers.updated_at}
    diffs: list[dict[str, Any]] = []
    for column in customers.public_columns:
        if column in skip:
            continue
        values = {s[schema_hub.ORIGIN]: s[column] for s in sources}
        if len({_comparable(v) for v in values.values()}) > 1:
            diffs.append({"column": column, "values": values})
    return diffs


def _children(conn: sa.Connection, views: Views, child: str, gid: Any) -> list[dict[str, Any]]:
    # The view's own SELECT, run against the tables: same rows, with the columns' real types.
    select = views.customer_children(child)
    columns = select.selected_columns
    key = views.policy.table(child).primary_key
    query = select.where(columns[schema_hub.GOLDEN_ID] == gid).order_by(
        columns[schema_hub.ORIGIN], *(columns[k] for k in key)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


# --- city summary --------------------------------------------------------------------------


def city_summary(conn: sa.Connection) -> list[dict[str, Any]]:
    """Per node: live customers, deposits, loans by five-class category, overdue, fees, sync."""
    view = _city_view
    rows = conn.execute(sa.select(view).order_by(view.c.node_id)).mappings()
    result = []
    for r in rows:
        row = dict(r)
        row["customers"] = int(row["customers"])
        for k in _CITY_MONEY:
            row[k] = _money(row[k])
        result.append(row)
    return result


# --- customer value ------------------------------------------------------------------------


def customer_value(
    conn: sa.Connection, report: ReportSection, top: int | None = None
) -> list[dict[str, Any]]:
    """Contribution (贡献度) per golden customer, ranked, with its value tier.

    contribution = deposit_balance × weight_deposit + loan_balance × weight_loan
    + fee_income × weight_fee, over every city, rounded half-up to 0.01.

    Ranks are competition ranks (1, 2, 2, 4): tied customers share the best rank of their group,
    so ties never split across tiers. With N customers and cumulative shares key, key + high,
    key + high + medium (percent), a customer of rank r is in the first tier whose
    ceil(N × share / 100) is at least r; ceil keeps at least one key customer whenever N > 0.
    A customer whose contribution is zero is 'standard' whatever its rank. Tiers are computed
    over all customers before `top` keeps the first rows.
    """
    if top is not None and top < 1:
        raise UsageError(f"--top: must be at least 1, got {top}")
    view = _value_view
    weights = {
        "deposit_balance": Decimal(str(report.weight_deposit)),
        "loan_balance": Decimal(str(report.weight_loan)),
        "fee_income": Decimal(str(report.weight_fee)),
    }
    rows: list[dict[str, Any]] = []
    for r in conn.execute(sa.select(view)).mappings():
        row = dict(r)
        row["cities"] = _split(row["cities"])
        row["city_count"] = int(row["city_count"])
        for k in weights:
            row[k] = _money(row[k])
        row["contribution"] = _money(sum(row[k] * w for k, w in weights.items()))
        rows.append(row)
    rows.sort(key=lambda x: (-x["contribution"], x[schema_hub.GOLDEN_ID]))
    _assign_tiers(rows, report)
    return rows if top is None else rows[:top]


def _assign_tiers(rows: list[dict[str, Any]], report: ReportSection) -> None:
    """Set rank and tier on rows sorted by contribution, best first (see customer_value)."""
    n = len(rows)
    shares = [Decimal(str(report.tier_key_pct))]
    shares.append(shares[-1] + Decimal(str(report.tier_high_pct)))
    shares.append(shares[-1] + Decimal(str(report.tier_medium_pct)))
    # Decimal keeps 20 × 15 / 100 at exactly 3, where floats would ceil 3.0000000000000004 to 4.
    limits = [min(n, math.ceil(n * s / 100)) for s in shares]
    rank = 0
    previous: Decimal | None = None
    for position, row in enumerate(rows, start=1):
        if row["contribution"] != previous:
            rank, previous = position, row["contribution"]
        row["rank"] = rank
        tier = next((t for t, limit in zip(TIERS[:3], limits, strict=True) if rank <= limit), None)
        row["tier"] = "standard" if tier is None or row["contribution"] <= 0 else tier


# --- credit exposure -----------------------------------------------------------------------


def credit_exposure(conn: sa.Connection, min_amount: Decimal = Decimal(0)) -> list[dict[str, Any]]:
    """Customers to watch: cross-city credit of at least min_amount, overdue or non-performing.

    A customer with live loans is listed if (loans in 2+ cities and total loan balance >=
    min_amount) or any loan is overdue (overdue_days > 0) or any loan is substandard, doubtful
    or loss; `warnings` names which of multi_city, overdue, non_performing apply. Worst first:
    by five-class severity, then overdue days, then balance.
    """
    if not min_amount.is_finite() or min_amount < 0:
        raise UsageError(f"--min: must be a non-negative amount, got {min_amount}")
    view = _exposure_view
    listed: list[dict[str, Any]] = []
    for r in conn.execute(sa.select(view)).mappings():
        row = dict(r)
        row["loan_cities"] = _split(row["loan_cities"])
        row["loan_balance"] = _money(row["loan_balance"])
        for flag in ("multi_city", "overdue", "non_performing"):
            row[flag] = bool(row[flag])
        warnings = []
        if row["multi_city"] and row["loan_balance"] >= min_amount:
            warnings.append(WARN_MULTI_CITY)
        if row["overdue"]:
            warnings.append(WARN_OVERDUE)
        if row["non_performing"]:
            warnings.append(WARN_NON_PERFORMING)
        if warnings:
            row["warnings"] = warnings
            listed.append(row)
    listed.sort(
        key=lambda x: (
            -_severity(x["worst_five_class"]),
            -x["max_overdue_days"],
            -x["loan_balance"],
            x[schema_hub.GOLDEN_ID],
        )
    )
    return listed


def _severity(five_class: str | None) -> int:
    return FIVE_CLASSES.index(five_class) + 1 if five_class in FIVE_CLASSES else 0


# --- full ID numbers -----------------------------------------------------------------------


def record_unmasked(
    engine: sa.Engine,
    report: str,
    arguments: Mapping[str, Any],
    rows: int,
    os_user: str | None,
    *,
    console_user: str | None = None,
) -> None:
    """Audit that a report is about to show full ID numbers (`--unmask`): an ids_unmasked entry.

    Who (the OS user and, on PostgreSQL, the database role), which report and its arguments,
    how many rows; the entry's time is when. From the web console, `console_user` is the
    signed-in user (and the report the console page). Committed before a single number is
    shown: if the audit cannot be written, the report is not shown.
    """
    with translated("auditing full ID numbers"), engine.begin() as conn:
        role = None
        if dialect_for(conn).kind is Kind.POSTGRES:
            role = str(conn.execute(sa.text("SELECT current_user")).scalar_one())
        audit = AuditWriter(conn)
        audit.append(
            Action.IDS_UNMASKED,
            detail={
                "report": report,
                "arguments": dict(arguments),
                "rows": rows,
                "os_user": os_user,
                "db_role": role,
                **({"console_user": console_user} if console_user else {}),
            },
        )
        audit.flush()
