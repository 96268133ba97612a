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

import contextlib
import datetime as dt
import gc
import json
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from syncd.core.errors import UsageError
from syncd.core.policy import Policy
from syncd.core.settings import ReportSection
from syncd.hub.report_views import (
    CUSTOMERS,
    DEPOSITS,
    FEES,
    FIVE_CLASSES,
    LOANS,
    Views,
    live,
    missing_analysis_inputs,
)
from syncd.hub.reports import TIERS, _assign_tiers, _money, _split
from syncd.store import hub_tables as schema_hub
from syncd.store.bulk import chunks
from syncd.store.db import utcnow
from syncd.store.dialect import dialect_for
from syncd.store.health import put_state

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


@dataclass(frozen=True)
class Limits:
    """The `[report]` thresholds as the warnings compare them (made once per report)."""

    tags_high: frozenset[str]
    tags_medium: frozenset[str]
    over_limit_high_pct: Decimal
    concentration_min: Decimal
    growth_pct: Decimal
    growth_min: Decimal

    @classmethod
    def of(cls, report: ReportSection) -> Limits:
        return cls(
            frozenset(report.warn_tags_high),
            frozenset(report.warn_tags_medium),
            Decimal(str(report.warn_over_limit_high_pct)),
            Decimal(str(report.warn_concentration_min)),
            Decimal(str(report.warn_growth_pct)),
            Decimal(str(report.warn_growth_min)),
        )


def warnings_for(
    row: Mapping[str, Any], report: ReportSection, limits: Limits | None = None
) -> list[dict[str, Any]]:
    """The customer's warnings, worst first then by reason (see the module docstring).

    Needs the profile keys plus ``prev_loan_balance`` and ``prev_worst_class`` (None without a
    previous snapshot).
    """
    lim = limits or Limits.of(report)
    found: dict[str, int] = {}
    for reason, severity in (
        *_customer_warnings(row, report, lim),
        *_loan_warnings(row, report, lim),
        *_change_warnings(row, lim),
    ):
        found[reason] = max(severity, found.get(reason, 0))
    return [
        {"reason": r, "severity": s}
        for r, s in sorted(found.items(), key=lambda item: (-item[1], item[0]))
    ]


def _customer_warnings(
    row: Mapping[str, Any], report: ReportSection, lim: Limits
) -> Iterator[Warning_]:
    """What the customer record says: risk tags and risk level."""
    tags = row.get("risk_tags")
    if tags:
        held = set(_tags(tags))
        yield from ((f"risk_tag.{t}", HIGH) for t in held & lim.tags_high)
        yield from ((f"risk_tag.{t}", MEDIUM) for t in held & lim.tags_medium)
    level = row.get("risk_level")
    if level is not None and level >= report.warn_risk_level:
        yield "risk_level", HIGH if level >= 5 else MEDIUM


def _loan_warnings(
    row: Mapping[str, Any], report: ReportSection, lim: Limits
) -> Iterator[Warning_]:
    """What the loans say today: over the credit limit, overdue, five-class, concentration."""
    if not row["loan_count"]:
        return
    balance: Decimal = row["loan_balance"]
    limit: Decimal | None = row.get("credit_limit")
    if limit is not None and limit > 0 and balance > limit:
        high = (balance - limit) * 100 > limit * lim.over_limit_high_pct
        yield "over_limit", HIGH if high else MEDIUM
    overdue = overdue_reason(int(row["max_overdue_days"] or 0), report.warn_overdue_bands)
    if overdue is not None:
        yield overdue
    worst = int(row["worst_class"] or 0)
    if worst >= NPL_CLASS:
        yield "non_performing", HIGH
    elif worst == SPECIAL_MENTION_CLASS:
        yield "special_mention", LOW
    if (
        row["loan_city_count"] >= report.warn_concentration_cities
        and balance >= lim.concentration_min
    ):
        yield "multi_city", MEDIUM


def _change_warnings(row: Mapping[str, Any], lim: Limits) -> Iterator[Warning_]:
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
        and growth >= lim.growth_min
        and (prev_balance == 0 or growth * 100 >= prev_balance * lim.growth_pct)
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
    with _collector_paused():
        return _profiles(conn, policy, report, as_of or today(), with_warnings)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a million row dicts are built: they hold no cycles,
    and the collector's full passes over them grew with their number (a third of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _profiles(
    conn: sa.Connection,
    policy: Policy,
    report: ReportSection,
    as_of: dt.date,
    with_warnings: bool,
    only: Any = None,
) -> list[dict[str, Any]]:
    views = _views(conn, policy)
    profile = views.profile(only).subquery("profile")
    snap = schema_hub.report_customer_day
    baseline = previous_snapshot(conn, as_of)
    # risk_tags as JSON text: most customers have none, and '[]' needs no parsing.
    columns = [c for c in profile.c if c.key != "risk_tags"]
    query = sa.select(
        *columns,
        sa.cast(profile.c.risk_tags, sa.Text).label("risk_tags"),
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
    ages: dict[tuple[str, str | None], str] = {}
    tenures: dict[Any, str] = {}
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
        born = (row["customer_type"], row["birth_date"])
        if born not in ages:
            ages[born] = age_band(born[0], _parse_birth(born[1]), as_of)
        row["age_band"] = ages[born]
        created = row["created_at"]
        if created not in tenures:
            tenures[created] = tenure_band(created, as_of)
        row["tenure"] = tenures[created]
        row["products"] = products_code(row)
        tags = row["risk_tags"]
        row["risk_tags"] = sorted(_tags(json.loads(tags))) if tags and tags != "[]" else []
        if baseline is None:
            row["prev_loan_balance"] = row["prev_contribution"] = None
        else:
            row["prev_loan_balance"] = _money(row["prev_loan_balance"])
            row["prev_contribution"] = _money(row["prev_contribution"])
            row["prev_worst_class"] = int(row["prev_worst_class"] or 0)
        rows.append(row)
    # Contribution descending, ties by golden_id: two stable sorts, no key tuples.
    rows.sort(key=operator.itemgetter(schema_hub.GOLDEN_ID))
    rows.sort(key=operator.itemgetter("contribution"), reverse=True)
    _tiers(conn, rows, report, as_of, only)
    limits = Limits.of(report)
    for row in rows:
        tier = row["tier"] or UNKNOWN
        row["segment"] = f"{row['customer_type']}.{tier}.{row['age_band']}"
        prev = row["prev_contribution"]
        row["contribution_change"] = None if prev is None else row["contribution"] - prev
        if with_warnings:
            row["warnings"] = warnings_for(row, report, limits)
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


def _tiers(
    conn: sa.Connection,
    rows: list[dict[str, Any]],
    report: ReportSection,
    as_of: dt.date,
    only: Any,
) -> None:
    """Rank and tier over every customer; for `only` one, the tier of the latest snapshot."""
    if only is None:
        _assign_tiers(rows, report)
        return
    for row in rows:
        row["tier_date"], row["tier"] = snapshot_tier(conn, row[schema_hub.GOLDEN_ID], as_of)
        row["rank"] = None


def customer_insight(
    conn: sa.Connection,
    policy: Policy,
    report: ReportSection,
    golden_id: Any,
    *,
    as_of: dt.date | None = None,
) -> dict[str, Any] | None:
    """One customer's profile as `profiles` classifies it, with contribution, segment and
    warnings, reading only that customer's rows (the console's Customer 360); None if there is
    no such live customer.

    A tier is a rank among every customer (`customer_value`: a full pass, most of a minute at
    a million customers), so here it is the one the latest daily snapshot recorded
    (`tier_date`; a customer the snapshot left out had no loans and no contribution:
    'standard'); tier and tier_date are None before any snapshot, and rank is None.
    """
    rows = _profiles(conn, policy, report, as_of or today(), True, only=golden_id)
    return rows[0] if rows else None


def snapshot_tier(conn: sa.Connection, golden_id: Any, as_of: dt.date) -> tuple[Any, str | None]:
    """(the latest snapshot day on or before as_of, the customer's tier then); (None, None)
    without a snapshot."""
    per = schema_hub.report_customer_day
    day = _as_date(
        conn.execute(
            sa.select(sa.func.max(per.c.snapshot_date)).where(per.c.snapshot_date <= as_of)
        ).scalar()
    )
    if day is None:
        return None, None
    tier = conn.execute(
        sa.select(per.c.tier).where(per.c.snapshot_date == day, per.c.golden_id == golden_id)
    ).scalar()
    return day, str(tier) if tier else "standard"


def snapshot_tiers(
    conn: sa.Connection, golden_ids: Sequence[Any], as_of: dt.date
) -> dict[Any, str]:
    """golden_id -> tier on the latest snapshot day on or before as_of (empty without one)."""
    per = schema_hub.report_customer_day
    day = conn.execute(
        sa.select(sa.func.max(per.c.snapshot_date)).where(per.c.snapshot_date <= as_of)
    ).scalar()
    if day is None or not golden_ids:
        return {}
    found = dict.fromkeys(golden_ids, "standard")
    query = sa.select(per.c.golden_id, per.c.tier).where(
        per.c.snapshot_date == day, per.c.golden_id.in_(list(golden_ids))
    )
    found.update({gid: str(tier) for gid, tier in conn.execute(query)})
    return found


# --- segments ------------------------------------------------------------------------------


def segments(
    conn: sa.Connection,
    policy: Policy,
    report: ReportSection,
    by: Sequence[str],
    *,
    as_of: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Customers, balances and contribution per segment of one or two dimensions (`DIMENSIONS`).

    One row per combination present, sorted by the dimensions' values, then a total row whose
    dimension values are 'total'. share_pct is the segment's share of the province's
    contribution, in percent to 2 places.
    """
    by = _dimensions(by)
    rows = profiles(conn, policy, report, as_of=as_of, with_warnings=False)
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    total = _segment_row(dict.fromkeys(by, TOTAL))
    for r in rows:
        key = tuple(str(r[DIMENSIONS[d]]) for d in by)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _segment_row(dict(zip(by, key, strict=True)))
        for target in (group, total):
            target["customers"] += 1
            for k in (*_MONEY, "contribution"):
                target[k] += r[k]
    result = [groups[k] for k in sorted(groups)] + [total]
    whole = total["contribution"]
    for row in result:
        row["share_pct"] = _pct(row["contribution"], whole)
    return result


def _dimensions(by: Sequence[str]) -> list[str]:
    if not by or len(by) > 2:
        raise UsageError(f"--by: give one or two dimensions, got {len(by)}")
    for d in by:
        if d not in DIMENSIONS:
            raise UsageError(f"--by {d!r}: expected one of {', '.join(DIMENSIONS)}")
    if len(by) == 2 and by[0] == by[1]:
        raise UsageError(f"--by {by[0]!r} given twice: cross two different dimensions")
    return list(by)


def _segment_row(dims: dict[str, str]) -> dict[str, Any]:
    zero = Decimal("0.00")
    return {**dims, "customers": 0, **dict.fromkeys((*_MONEY, "contribution"), zero)}


def _pct(part: Decimal, whole: Decimal) -> Decimal:
    if whole == 0:
        return Decimal("0.00")
    return _money(part * 100 / whole)


# --- warnings ------------------------------------------------------------------------------


def parse_severity(text: str) -> int:
    """low|medium|high or 1-3, for `--severity`."""
    names = {v: k for k, v in SEVERITY_NAMES.items()}
    if text in names:
        return names[text]
    if text.isdigit() and int(text) in SEVERITY_NAMES:
        return int(text)
    raise UsageError(f"--severity {text!r}: expected low, medium, high (or 1, 2, 3)")


# The reason families `--reason` takes: each reason code is one of these or begins with one
# and '.' or '_' (risk_tag.fraud_alert, overdue_31_90).
REASON_FAMILIES = (
    "risk_tag",
    "risk_level",
    "over_limit",
    "overdue",
    "special_mention",
    "non_performing",
    "five_class_downgrade",
    "multi_city",
    "exposure_growth",
)


def check_reasons(reasons: Sequence[str]) -> None:
    """UsageError naming a `--reason` that no warning can ever have."""
    for reason in reasons:
        if not any(_reason_matches(family, [reason]) or _reason_matches(reason, [family])
                   for family in REASON_FAMILIES):  # fmt: skip
            raise UsageError(
                f"--reason {reason!r}: expected one of {', '.join(REASON_FAMILIES)} "
                "(or a code such as risk_tag.fraud_alert, overdue_31_90)"
            )


def risk_warnings(
    conn: sa.Connection,
    policy: Policy,
    report: ReportSection,
    *,
    min_severity: int = LOW,
    reasons: Sequence[str] = (),
    as_of: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Risk early warning (风险预警): one row per customer and reason, worst first.

    `reasons` keeps the reasons equal to one of them or starting with it and '.' or '_'
    ('risk_tag' keeps every risk_tag.*, 'overdue' every overdue band). Rows: golden_id,
    identity, name, customer_type, home_city, reason, severity (1-3), severity_name, and the
    figures the reasons read (risk_level, risk_tags, credit_limit, loan_balance,
    prev_loan_balance, max_overdue_days, worst_five_class, prev_five_class, loan_cities).
    """
    if min_severity not in SEVERITY_NAMES:
        raise UsageError(f"--severity: expected 1, 2 or 3, got {min_severity}")
    listed: list[dict[str, Any]] = []
    for r in profiles(conn, policy, report, as_of=as_of):
        for w in r["warnings"]:
            if w["severity"] < min_severity or not _reason_matches(w["reason"], reasons):
                continue
            listed.append(
                {
                    "golden_id": r[schema_hub.GOLDEN_ID],
                    "id_type": r["id_type"],
                    "id_number": r["id_number"],
                    "name": r["name"],
                    "customer_type": r["customer_type"],
                    "home_city": r["home_city"],
                    "reason": w["reason"],
                    "severity": w["severity"],
                    "severity_name": SEVERITY_NAMES[w["severity"]],
                    "risk_level": r["risk_level"],
                    "risk_tags": r["risk_tags"],
                    "credit_limit": r["credit_limit"],
                    "loan_balance": r["loan_balance"],
                    "prev_loan_balance": r["prev_loan_balance"],
                    "max_overdue_days": r["max_overdue_days"],
                    "worst_five_class": _class_name(r["worst_class"]),
                    "prev_five_class": _class_name(r.get("prev_worst_class")),
                    "loan_city_count": r["loan_city_count"],
                }
            )
    listed.sort(key=lambda x: (-x["severity"], x["reason"], -x["loan_balance"], x["golden_id"]))
    return listed


def _reason_matches(reason: str, wanted: Sequence[str]) -> bool:
    return not wanted or any(reason == w or reason.startswith((f"{w}.", f"{w}_")) for w in wanted)


def _class_name(worst: int | None) -> str | None:
    return FIVE_CLASSES[worst - 1] if worst else None


# --- key customers -------------------------------------------------------------------------


def key_customers(
    conn: sa.Connection,
    policy: Policy,
    report: ReportSection,
    top: int = 20,
    *,
    as_of: dt.date | None = None,
) -> list[dict[str, Any]]:
    """The top customers by contribution (大客户) with their spread and trend.

    Rows: rank, tier, golden_id, identity, name, customer_type, cities, city_count, products,
    deposit/loan/fee figures, contribution, prev_contribution and contribution_change (since
    the previous per-customer snapshot; None without one), prev_tier, warnings (reasons).
    """
    if top < 1:
        raise UsageError(f"--top: must be at least 1, got {top}")
    rows = profiles(conn, policy, report, as_of=as_of, with_warnings=False)[:top]
    limits = Limits.of(report)
    for r in rows:  # warnings for the few shown only
        r["warnings"] = warnings_for(r, report, limits)
    keep = (
        "rank",
        "tier",
        schema_hub.GOLDEN_ID,
        "id_type",
        "id_number",
        "name",
        "customer_type",
        "cities",
        "city_count",
        "products",
        "deposit_balance",
        "loan_balance",
        "fee_income",
        "contribution",
        "prev_contribution",
        "contribution_change",
        "prev_tier",
    )
    return [
        {**{k: r[k] for k in keep}, "warnings": [w["reason"] for w in r["warnings"]]} for r in rows
    ]


# --- daily snapshot ------------------------------------------------------------------------

SNAPSHOT_KEY = "report_snapshot"  # syncd_hub_state: the day and time of the last snapshot
_FIGURES = ("deposit_balance", "loan_balance", "npl_balance", "fee_income")
_COUNTS = ("customers", *(f"{t}_customers" for t in TIERS))


def _typed_customers(views: Views) -> sa.Subquery:
    """Every live source customer row with its golden record's id and type ('unknown' if none)."""
    src, golden = views.src, views.golden
    customers = views.policy.table(CUSTOMERS)
    on = sa.and_(*(src.c[k] == golden.c[k] for k in views.identity), live(golden))
    return (
        sa.select(
            src.c[schema_hub.ORIGIN],
            *(src.c[k] for k in customers.primary_key),
            golden.c[schema_hub.GOLDEN_ID],
            sa.func.coalesce(golden.c.customer_type, UNKNOWN).label("segment"),
        )
        .select_from(src.outerjoin(golden, on))
        .where(live(src))
        .subquery("typed_customers")
    )


def city_figures(
    conn: sa.Connection, views: Views, tiers: Mapping[Any, str]
) -> list[dict[str, Any]]:
    """Per (node_id, segment): the day's key figures. segment is the customer's type, or
    'unknown' for rows whose customer has not reached the hub (they count as in
    report_city_summary). Tier counts count the city's customer rows by their golden tier."""
    typed = _typed_customers(views)
    origin = schema_hub.ORIGIN
    figures: dict[tuple[str, str], dict[str, Any]] = {}

    def at(node: str, segment: str) -> dict[str, Any]:
        key = (node, segment)
        if key not in figures:
            figures[key] = {
                "node_id": node,
                "segment": segment,
                **dict.fromkeys(_COUNTS, 0),
                **dict.fromkeys(_FIGURES, Decimal("0.00")),
            }
        return figures[key]

    for node, gid, segment in conn.execute(
        sa.select(typed.c[origin], typed.c[schema_hub.GOLDEN_ID], typed.c.segment)
    ):
        row = at(node, segment)
        row["customers"] += 1
        tier = tiers.get(gid)
        if tier is not None:
            row[f"{tier}_customers"] += 1
    npl = tuple(FIVE_CLASSES[NPL_CLASS - 1 :])
    for child, column, target in (
        (DEPOSITS, "balance", "deposit_balance"),
        (LOANS, "balance", "loan_balance"),
        (FEES, "fee_income", "fee_income"),
    ):
        table = views.md.tables[child]
        parent = views.policy.table(child).parent
        assert parent is not None
        on = sa.and_(
            typed.c[origin] == table.c[origin],
            *(typed.c[p] == table.c[c] for c, p in parent.columns.items()),
        )
        segment = sa.func.coalesce(typed.c.segment, UNKNOWN)
        cols = [table.c[origin], segment, views.dialect.money_sum(table.c[column])]
        if child == LOANS:
            bad = sa.case((table.c.five_class.in_(npl), table.c[column]))
            cols.append(views.dialect.money_sum(bad))
        query = (
            sa.select(*cols)
            .select_from(table.outerjoin(typed, on))
            .where(live(table))
            .group_by(table.c[origin], segment)
        )
        for node, seg, total, *more in conn.execute(query):
            row = at(node, seg)
            row[target] = _money(total)
            if more:
                row["npl_balance"] = _money(more[0])
    return [figures[k] for k in sorted(figures)]


def take_snapshot(
    conn: sa.Connection,
    policy: Policy,
    report: ReportSection,
    *,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """Record the day's snapshot, replacing one taken earlier the same day (one transaction:
    call inside ``engine.begin()``). Prunes per-customer rows older than
    `customer_snapshot_days`. Returns what it wrote."""
    as_of = as_of or today()
    views = _views(conn, policy)
    rows = profiles(conn, policy, report, as_of=as_of, with_warnings=False)
    tiers = {r[schema_hub.GOLDEN_ID]: r["tier"] for r in rows}
    now = utcnow()
    daily = schema_hub.report_daily
    cities = city_figures(conn, views, tiers)
    conn.execute(daily.delete().where(daily.c.snapshot_date == as_of))
    if cities:
        conn.execute(
            daily.insert(), [{**c, "snapshot_date": as_of, "taken_at": now} for c in cities]
        )
    per = schema_hub.report_customer_day
    conn.execute(per.delete().where(per.c.snapshot_date == as_of))
    kept = [
        {
            "snapshot_date": as_of,
            "golden_id": r[schema_hub.GOLDEN_ID],
            "loan_balance": r["loan_balance"],
            "worst_class": r["worst_class"],
            "contribution": r["contribution"],
            "tier": r["tier"],
        }
        for r in rows
        if r["loan_balance"] > 0 or r["contribution"] > 0
    ]
    for chunk in chunks(kept, 10_000):
        conn.execute(per.insert(), list(chunk))
    cutoff = as_of - dt.timedelta(days=report.customer_snapshot_days)
    pruned = conn.execute(per.delete().where(per.c.snapshot_date <= cutoff)).rowcount
    summary = {
        "snapshot_date": as_of,
        "taken_at": now,
        "city_rows": len(cities),
        "customer_rows": len(kept),
        "customer_rows_pruned": max(pruned, 0),
    }
    put_state(conn, schema_hub.hub_state, SNAPSHOT_KEY, _jsonable(summary))
    return summary


def _jsonable(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in summary.items()}


def snapshot_taken(conn: sa.Connection, day: dt.date) -> bool:
    """Whether the snapshot of `day` exists (the daemon's daily job takes it once)."""
    state = schema_hub.hub_state
    value = conn.execute(sa.select(state.c.value).where(state.c.key == SNAPSHOT_KEY)).scalar()
    return isinstance(value, dict) and value.get("snapshot_date") == day.isoformat()


def snapshot_if_due(
    engine: sa.Engine, policy: Policy, report: ReportSection, now: dt.datetime | None = None
) -> dict[str, Any] | None:
    """The hub daemon's daily job: take today's snapshot once, from `snapshot_hour_utc` on.

    Returns the summary, or None when not due (taken already today, or too early). A policy
    without the analyses' inputs has nothing to snapshot (None).
    """
    now = now or utcnow()
    if now.hour < report.snapshot_hour_utc or missing_analysis_inputs(policy):
        return None
    day = now.date()
    with engine.begin() as conn:
        if snapshot_taken(conn, day):
            return None
        return take_snapshot(conn, policy, report, as_of=day)


# --- trends --------------------------------------------------------------------------------

# The figures of a trend (and of the daily snapshot a trend compares with), tier counts apart.
TREND_FIGURES = ("customers", "deposit_balance", "loan_balance", "npl_balance", "fee_income")
_TREND_TIERS = tuple(f"{t}_customers" for t in TIERS)


def since_date(since: str, as_of: dt.date) -> dt.date:
    """The day `--since` names: yesterday, month-end (the previous month's last day),
    year-start (1 January of as_of's year) or an ISO date before as_of."""
    if since == "yesterday":
        return as_of - dt.timedelta(days=1)
    if since == "month-end":
        return as_of.replace(day=1) - dt.timedelta(days=1)
    if since == "year-start":
        return as_of.replace(month=1, day=1)
    try:
        day = dt.date.fromisoformat(since)
    except ValueError:
        raise UsageError(
            f"--since {since!r}: expected yesterday, month-end, year-start or a date YYYY-MM-DD"
        ) from None
    if day >= as_of:
        raise UsageError(f"--since {since}: must be before today ({as_of})")
    return day


def trend(
    conn: sa.Connection,
    policy: Policy,
    report: ReportSection,
    since: str = "yesterday",
    *,
    as_of: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Per city, today's live figures against the snapshot of the `since` day, then the
    province row (node_id 'province').

    The baseline is the latest daily snapshot on or before that day (raises UsageError if
    there is none). Each figure F comes as F (now), F_then and F_change; segments are summed.
    """
    as_of = as_of or today()
    baseline, then = trend_baseline(conn, since, as_of)
    views = _views(conn, policy)
    rows = profiles(conn, policy, report, as_of=as_of, with_warnings=False)
    now = _by_node(city_figures(conn, views, {r[schema_hub.GOLDEN_ID]: r["tier"] for r in rows}))
    return trend_rows(now, then, baseline)


def trend_baseline(
    conn: sa.Connection, since: str, as_of: dt.date
) -> tuple[dt.date, dict[str, dict[str, Any]]]:
    """The daily snapshot a trend `since` compares with: its day (the latest on or before the
    day `since` names) and its figures per node, segments summed. UsageError if none."""
    target = since_date(since, as_of)
    daily = schema_hub.report_daily
    baseline = _as_date(
        conn.execute(
            sa.select(sa.func.max(daily.c.snapshot_date)).where(daily.c.snapshot_date <= target)
        ).scalar()
    )
    if baseline is None:
        raise UsageError(
            f"--since {since}: no snapshot on or before {target}; take one with `report snapshot`"
        )
    then = _by_node(
        dict(r._mapping)
        for r in conn.execute(sa.select(daily).where(daily.c.snapshot_date == baseline))
    )
    return baseline, then


def trend_rows(
    now: Mapping[str, Mapping[str, Any]],
    then: Mapping[str, Mapping[str, Any]],
    baseline: dt.date,
    keys: Sequence[str] = (*TREND_FIGURES, *_TREND_TIERS),
) -> list[dict[str, Any]]:
    """The trend's rows: per node (sorted) F, F_then and F_change of each figure in `keys`
    (a figure a side lacks counts 0), then the province row (node_id 'province')."""
    result = []
    for node in sorted(set(now) | set(then)):
        result.append(_trend_row(node, now.get(node, {}), then.get(node, {}), baseline, keys))
    result.append(
        _trend_row(PROVINCE, _summed(now.values()), _summed(then.values()), baseline, keys)
    )
    return result


def non_performing(row: Mapping[str, Any]) -> Decimal:
    """A `reports.city_summary` row's non-performing loans: substandard + doubtful + loss."""
    npl = [f"loan_{c}" for c in FIVE_CLASSES[NPL_CLASS - 1 :]]
    return sum((_money(row[k]) for k in npl), start=Decimal("0.00"))


def city_summary_figures(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """`reports.city_summary` rows as a trend's current figures per node (TREND_FIGURES:
    non-performing is substandard + doubtful + loss, as the snapshot's npl_balance), for
    comparing today's `report cities` with a snapshot through `trend_rows`."""
    return {
        r["node_id"]: {
            "customers": int(r["customers"]),
            "deposit_balance": _money(r["deposit_balance"]),
            "loan_balance": _money(r["loan_balance"]),
            "npl_balance": non_performing(r),
            "fee_income": _money(r["fee_income"]),
        }
        for r in rows
    }


def daily_history(conn: sa.Connection, since: dt.date) -> list[dict[str, Any]]:
    """The daily snapshots from `since` on, per day and node (segments summed), by day then
    node: snapshot_date, node_id and the TREND_FIGURES. A few rows a day."""
    daily = schema_hub.report_daily
    query = (
        sa.select(daily)
        .where(daily.c.snapshot_date >= since)
        .order_by(daily.c.snapshot_date, daily.c.node_id)
    )
    days: dict[tuple[dt.date, str], list[dict[str, Any]]] = {}
    for r in conn.execute(query).mappings():
        day = _as_date(r["snapshot_date"])
        assert day is not None
        days.setdefault((day, r["node_id"]), []).append(dict(r))
    return [
        {"snapshot_date": day, "node_id": node, **_summed(rows)}
        for (day, node), rows in days.items()
    ]


def _by_node(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = {}
    for r in rows:
        nodes[r["node_id"]] = _summed([nodes.get(r["node_id"], {}), r])
    return nodes


def _summed(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for r in rows:
        for k in (*TREND_FIGURES, *_TREND_TIERS):
            if k in r:
                value = r[k] if k in _COUNTS else _money(r[k])
                total[k] = total.get(k, 0) + value
    return total


def _trend_row(
    node: str,
    now: Mapping[str, Any],
    then: Mapping[str, Any],
    baseline: dt.date,
    keys: Sequence[str],
) -> dict[str, Any]:
    row: dict[str, Any] = {"node_id": node, "since": baseline}
    for k in keys:
        zero: Any = 0 if k in _COUNTS else Decimal("0.00")
        current, before = now.get(k, zero), then.get(k, zero)
        row[k] = current
        row[f"{k}_then"] = before
        row[f"{k}_change"] = current - before
    return row


# --- province totals -----------------------------------------------------------------------


def with_province_total(
    rows: list[dict[str, Any]], sums: Sequence[str], *, key: str = "node_id"
) -> list[dict[str, Any]]:
    """rows plus a 全省 total row: `key` 'province', the `sums` columns summed, others None."""
    total: dict[str, Any] = dict.fromkeys(rows[0] if rows else (key, *sums))
    total[key] = PROVINCE
    for k in sums:
        total[k] = sum((r[k] for r in rows), start=Decimal("0.00") if _is_money(rows, k) else 0)
    return [*rows, total]


def _is_money(rows: Sequence[Mapping[str, Any]], k: str) -> bool:
    return any(isinstance(r[k], Decimal) for r in rows)
