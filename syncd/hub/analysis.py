"""The province's analyses: segments, risk early warning, key customers, daily snapshots, trends.

Everything starts from one set-based read of ``report_customer_profile`` (one row per live golden
customer: identity, type, home city, district, birth date, products held and their sums, loan
risk figures) joined to the per-customer snapshot of the previous day. Contribution, tiers and
ranks are `reports.customer_value`'s; classification (age band, tenure, products, warnings) is
plain Python over those rows — no query per customer.

`customer_insights` is the interface the downward distribution of insights builds on: per live
golden customer its tier, rank, contribution, segment code and warnings.

Codes (stable, never translated; docs/managers.md lists them):

- segment: ``<customer_type>.<tier>.<age_band>``, e.g. ``individual.key.30-39``,
  ``corporate.high.unknown``.
- age band (ric individuals only, from the birth date in the ID number, at the report date):
  ``0-17``, ``18-29``, ``30-39``, ``40-49``, ``50-59``, ``60+``; else ``unknown``.
- tenure (from ``created_at``): ``<1y``, ``1-3y``, ``3-5y``, ``5-10y``, ``10y+``, ``unknown``.
- products: the kinds held joined by ``+`` in the order deposit, loan, fee
  (``deposit+loan``), or ``none``.
- warning reasons: ``risk_tag.<tag>``, ``risk_level``, ``over_limit``, ``overdue_1_30``,
  ``overdue_31_90``, ``overdue_91_180``, ``overdue_over_180`` (bands from ``[report]
  warn_overdue_bands``), ``special_mention``, ``non_performing``, ``five_class_downgrade``,
  ``multi_city``, ``exposure_growth``. Severity 1 low, 2 medium, 3 high.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from syncd.core.errors import UsageError
from syncd.core.policy import Policy
from syncd.core.settings import ReportSection
from syncd.hub.report_views import (
    FIVE_CLASSES,
    Views,
    missing_analysis_inputs,
)
from syncd.hub.reports import _assign_tiers, _money, _split
from syncd.store import hub_tables as schema_hub
from syncd.store.db import utcnow
from syncd.store.dialect import dialect_for

LOW, MEDIUM, HIGH = 1, 2, 3
SEVERITY_NAMES = {LOW: "low", MEDIUM: "medium", HIGH: "high"}
UNKNOWN = "unknown"
Warning_ = tuple[str, int]
PROVINCE = "province"  # the node_id of the 全省 total row of city tables
TOTAL = "total"  # a segment dimension's value on the total row

AGE_BANDS = ((18, "0-17"), (30, "18-29"), (40, "30-39"), (50, "40-49"), (60, "50-59"))
TENURE_BANDS = ((1, "<1y"), (3, "1-3y"), (5, "3-5y"), (10, "5-10y"))
PRODUCTS = (("deposit_count", "deposit"), ("loan_count", "loan"), ("fee_count", "fee"))
NPL_CLASS = FIVE_CLASSES.index("substandard") + 1
SPECIAL_MENTION_CLASS = FIVE_CLASSES.index("special_mention") + 1

# `report segments --by`: dimension → the profile key holding its value.
DIMENSIONS = {
    "type": "customer_type",
    "tier": "tier",
    "city": "home_city",
    "district": "district",
    "age": "age_band",
    "products": "products",
    "tenure": "tenure",
}
_MONEY = ("deposit_balance", "loan_balance", "fee_income")


# --- classification ------------------------------------------------------------------------


def birth_date(id_type: str | None, id_number: str | None) -> dt.date | None:
    """The birth date written in an 18-digit ric number (digits 7-14), None if not a date."""
    if id_type != "ric" or id_number is None or len(id_number) != 18:
        return None
    try:
        return dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return None


def _parse_birth(text: str | None) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def full_years(since: dt.date, as_of: dt.date) -> int:
    """Whole years from since to as_of (a birthday on 29 February counts from 1 March)."""
    years = as_of.year - since.year
    return years - 1 if (as_of.month, as_of.day) < (since.month, since.day) else years


def age_band(customer_type: str | None, born: dt.date | None, as_of: dt.date) -> str:
    """The age band of an individual born on `born`; 'unknown' for anyone else or no date."""
    if customer_type != "individual" or born is None or born > as_of:
        return UNKNOWN
    age = full_years(born, as_of)
    return next((label for limit, label in AGE_BANDS if age < limit), "60+")


def tenure_band(created_at: dt.datetime | dt.date | None, as_of: dt.date) -> str:
    if created_at is None:
        return UNKNOWN
    since = created_at.date() if isinstance(created_at, dt.datetime) else created_at
    if since > as_of:
        return UNKNOWN
    years = full_years(since, as_of)
    return next((label for limit, label in TENURE_BANDS if years < limit), "10y+")


def products_code(row: Mapping[str, Any]) -> str:
    held = [name for key, name in PRODUCTS if row[key]]
    return "+".join(held) if held else "none"


def overdue_reason(days: int, bands: Sequence[int]) -> tuple[str, int] | None:
    """('overdue_31_90', 2) for 45 days with bands [30, 90, 180]; None when not overdue.

    Band i (from 0) has severity min(i + 1, 3): 1-30 low, 31-90 medium, beyond high.
    """
    if days <= 0:
        return None
    low = 1
    for i, high in enumerate(bands):
        if days <= high:
            return f"overdue_{low}_{high}", min(i + 1, HIGH)
        low = high + 1
    return f"overdue_over_{bands[-1]}", HIGH


def _tags(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


def warnings_for(row: Mapping[str, Any], report: ReportSection) -> list[dict[str, Any]]:
    """The customer's warnings, worst first then by reason (see the module docstring).

    Needs the profile keys plus ``prev_loan_balance`` and ``prev_worst_class`` (None without a
    previous snapshot).
    """
    found: dict[str, int] = {}
    for reason, severity in (
        *_customer_warnings(row, report),
        *_loan_warnings(row, report),
        *_change_warnings(row, report),
    ):
        found[reason] = max(severity, found.get(reason, 0))
    return [
        {"reason": r, "severity": s}
        for r, s in sorted(found.items(), key=lambda item: (-item[1], item[0]))
    ]


def _customer_warnings(row: Mapping[str, Any], report: ReportSection) -> Iterator[Warning_]:
    """What the customer record says: risk tags and risk level."""
    tags = set(_tags(row.get("risk_tags")))
    yield from ((f"risk_tag.{t}", HIGH) for t in tags & set(report.warn_tags_high))
    yield from ((f"risk_tag.{t}", MEDIUM) for t in tags & set(report.warn_tags_medium))
    level = row.get("risk_level")
    if level is not None and level >= report.warn_risk_level:
        yield "risk_level", HIGH if level >= 5 else MEDIUM


def _loan_warnings(row: Mapping[str, Any], report: ReportSection) -> Iterator[Warning_]:
    """What the loans say today: over the credit limit, overdue, five-class, concentration."""
    balance: Decimal = row["loan_balance"]
    limit: Decimal | None = row.get("credit_limit")
    if limit is not None and limit > 0 and balance > limit:
        high = (balance - limit) * 100 > limit * Decimal(str(report.warn_over_limit_high_pct))
        yield "over_limit", HIGH if high else MEDIUM
    overdue = overdue_reason(int(row["max_overdue_days"] or 0), report.warn_overdue_bands)
    if overdue is not None:
        yield overdue
    worst = int(row["worst_class"] or 0)
    if worst >= NPL_CLASS:
        yield "non_performing", HIGH
    elif worst == SPECIAL_MENTION_CLASS:
        yield "special_mention", LOW
    if row["loan_city_count"] >= report.warn_concentration_cities and balance >= Decimal(
        str(report.warn_concentration_min)
    ):
        yield "multi_city", MEDIUM


def _change_warnings(row: Mapping[str, Any], report: ReportSection) -> Iterator[Warning_]:
    """What changed since the previous snapshot: five-class downgrade, exposure growth."""
    worst = int(row["worst_class"] or 0)
    prev_worst = row.get("prev_worst_class")
    if prev_worst and worst > prev_worst:
        yield "five_class_downgrade", HIGH if worst >= NPL_CLASS else MEDIUM
    prev_balance = row.get("prev_loan_balance")
    if prev_balance is None:
        return
    growth = row["loan_balance"] - prev_balance
    if (
        growth > 0
        and growth >= Decimal(str(report.warn_growth_min))
        and (
            prev_balance == 0 or growth * 100 >= prev_balance * Decimal(str(report.warn_growth_pct))
        )
    ):
        yield "exposure_growth", MEDIUM


# --- the profile read ----------------------------------------------------------------------


def _views(conn: sa.Connection, policy: Policy) -> Views:
    problems = missing_analysis_inputs(policy)
    if problems:
        raise UsageError("the analyses need " + ", ".join(problems) + " in the hub's policy")
    return Views(policy, dialect_for(conn))


def today() -> dt.date:
    return utcnow().date()


def previous_snapshot(conn: sa.Connection, before: dt.date) -> dt.date | None:
    """The latest per-customer snapshot day before `before` (the previous period)."""
    day = schema_hub.report_customer_day.c.snapshot_date
    found = conn.execute(sa.select(sa.func.max(day)).where(day < before)).scalar()
    return _as_date(found)


def _as_date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def profiles(
    conn: sa.Connection,
    policy: Policy,
    report: ReportSection,
    *,
    as_of: dt.date | None = None,
    with_warnings: bool = True,
) -> list[dict[str, Any]]:
    """Every live golden customer's profile, classified, ranked (best first), with warnings.

    One query (the profile view's SELECT left-joined to the previous day's customer snapshot);
    keys: the view's columns (money as Decimal, cities as a sorted list), contribution, rank,
    tier, age_band, tenure, products, segment, the previous snapshot's prev_loan_balance,
    prev_worst_class, prev_contribution and prev_tier (None without one; a customer missing
    from an existing snapshot had no loans and no contribution then) and warnings.
    """
    as_of = as_of or today()
    views = _views(conn, policy)
    profile = views.profile().subquery("profile")
    snap = schema_hub.report_customer_day
    baseline = previous_snapshot(conn, as_of)
    query = sa.select(
        profile,
        snap.c.loan_balance.label("prev_loan_balance"),
        snap.c.worst_class.label("prev_worst_class"),
        snap.c.contribution.label("prev_contribution"),
        snap.c.tier.label("prev_tier"),
    ).select_from(
        profile.outerjoin(
            snap,
            sa.and_(
                snap.c.golden_id == profile.c[schema_hub.GOLDEN_ID],
                snap.c.snapshot_date == (baseline or dt.date(1, 1, 1)),
            ),
        )
    )
    weights = {
        "deposit_balance": Decimal(str(report.weight_deposit)),
        "loan_balance": Decimal(str(report.weight_loan)),
        "fee_income": Decimal(str(report.weight_fee)),
    }
    rows: list[dict[str, Any]] = []
    for r in conn.execute(query).mappings():
        row = dict(r)
        row["cities"] = _split(row["cities"])
        for k in ("city_count", "deposit_count", "loan_count", "fee_count", "loan_city_count"):
            row[k] = int(row[k] or 0)
        row["max_overdue_days"] = int(row["max_overdue_days"] or 0)
        row["worst_class"] = int(row["worst_class"] or 0)
        for k in weights:
            row[k] = _money(row[k])
        row["credit_limit"] = None if row["credit_limit"] is None else _money(row["credit_limit"])
        row["contribution"] = _money(sum(row[k] * w for k, w in weights.items()))
        row["customer_type"] = row["customer_type"] or UNKNOWN
        row["home_city"] = row["home_city"] or UNKNOWN
        row["district"] = row["district"] or UNKNOWN
        row["age_band"] = age_band(row["customer_type"], _parse_birth(row["birth_date"]), as_of)
        row["tenure"] = tenure_band(row["created_at"], as_of)
        row["products"] = products_code(row)
        row["risk_tags"] = sorted(_tags(row["risk_tags"]))
        if baseline is None:
            row["prev_loan_balance"] = row["prev_contribution"] = None
        else:
            row["prev_loan_balance"] = _money(row["prev_loan_balance"])
            row["prev_contribution"] = _money(row["prev_contribution"])
            row["prev_worst_class"] = int(row["prev_worst_class"] or 0)
        rows.append(row)
    rows.sort(key=lambda x: (-x["contribution"], x[schema_hub.GOLDEN_ID]))
    _assign_tiers(rows, report)
    for row in rows:
        row["segment"] = f"{row['customer_type']}.{row['tier']}.{row['age_band']}"
        prev = row["prev_contribution"]
        row["contribution_change"] = None if prev is None else row["contribution"] - prev
        if with_warnings:
            row["warnings"] = warnings_for(row, report)
    return rows


def customer_insights(
    conn: sa.Connection,
    policy: Policy,
    report: ReportSection,
    *,
    as_of: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Per live golden customer, by golden_id: what the province knows of them, in codes.

    Each dict: ``golden_id`` (int), ``tier`` (key/high/medium/standard, as `customer_value`),
    ``rank`` (competition rank by contribution), ``contribution`` (Decimal, 0.01),
    ``segment`` (``<customer_type>.<tier>.<age_band>``, e.g. ``individual.key.30-39``) and
    ``warnings`` (list of {"reason": str, "severity": int 1-3}, worst first then by reason;
    codes in the module docstring). One set-based read (`profiles`); `as_of` (default today,
    UTC) is the date ages and tenure are taken at and the previous snapshot is looked for
    before.
    """
    rows = profiles(conn, policy, report, as_of=as_of)
    out = [
        {
            "golden_id": r[schema_hub.GOLDEN_ID],
            "tier": r["tier"],
            "rank": r["rank"],
            "contribution": r["contribution"],
            "segment": r["segment"],
            "warnings": r["warnings"],
        }
        for r in rows
    ]
    out.sort(key=lambda x: x["golden_id"])
    return out
