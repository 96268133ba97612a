"""Analyses (segments, warnings, key customers, snapshots, trends) against hand-computed figures.

The province of test_reports plus two customers: Qian, tagged fraud_alert, litigation and
watchlist with no loan at all, and Sun, a 546,187.00 loan over a 90,000.00 credit limit and
never overdue — both were missed when warnings came from loans' overdue days only.

Contributions (weights 1 / 0.5 / 20): Corp 650000.00, Zhang 319000.75, Sun 273093.50,
Li 101010.00, Qian 1000.00, Zhao 0.00. Default tiers 5/15/30 % of 6: key 1, high 1, medium 1.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from syncd.core.errors import UsageError
from syncd.core.policy import Policy, load_policy
from syncd.core.settings import ReportSection
from syncd.hub import analysis, reports
from syncd.hub.apply import refresh_statistics, stale_statistics
from syncd.store import hub_tables as schema_hub
from syncd.store.db import create_engine
from tests.conftest import POLICY, REPO
from tests.helpers import run_syncd
from tests.integration.test_reports import (
    LI,
    customer,
    deposit,
    golden,
    loan,
    seed,
)

D = Decimal
TODAY = dt.date(2026, 11, 30)
QIAN = "330106200001010011"  # born 2000-01-01: 26 today
SUN = "330211196505050022"  # born 1965-05-05: 61 today
ZHAO_ID, SUN_ID, QIAN_ID, CORP_ID, ZHANG_ID, LI_ID = 4, 7, 6, 3, 1, 2


@pytest.fixture
def policy() -> Policy:
    return load_policy(POLICY)


@pytest.fixture
def hub(db_url: str, policy: Policy) -> Iterator[sa.Engine]:
    engine = create_engine(db_url)
    schema_hub.metadata.create_all(engine)
    md = schema_hub.policy_metadata(policy)
    with engine.begin() as conn:
        schema_hub.install(conn, policy)
        reports.install_views(conn, policy)
        seed(conn, policy)
        qian = customer(
            "city-3301",
            "C3",
            "ric",
            QIAN,
            "钱七",
            risk_level=5,
            risk_tags=["fraud_alert", "litigation", "watchlist"],
        )
        sun = customer(
            "city-3302", "D12", "ric", SUN, "孙八", home_city="3302", credit_limit=D("90000.00")
        )
        conn.execute(sa.insert(md.tables["src_customers"]), [qian, sun])
        conn.execute(sa.insert(md.tables["customers"]), [golden(6, qian, 1), golden(7, sun, 1)])
        conn.execute(
            sa.insert(md.tables["deposit_accounts"]), [deposit("city-3301", "A3", "C3", "1000.00")]
        )
        conn.execute(
            sa.insert(md.tables["loans"]), [loan("city-3302", "M4", "D12", "546187.00", "normal")]
        )
    yield engine
    engine.dispose()


def _change_loans(engine: sa.Engine, policy: Policy) -> None:
    """Zhang's M1 in city-3302: 150000.00 normal becomes 400000.00 substandard."""
    loans = schema_hub.policy_metadata(policy).tables["loans"]
    with engine.begin() as conn:
        conn.execute(
            loans.update()
            .where(loans.c.loan_id == "M1")
            .values(balance=D("400000.00"), five_class="substandard")
        )


def test_customer_insights_interface(hub: sa.Engine, policy: Policy) -> None:
    with hub.connect() as conn:
        rows = analysis.customer_insights(conn, policy, ReportSection(), as_of=TODAY)
    assert rows == [
        {
            "golden_id": ZHANG_ID,
            "tier": "high",
            "rank": 2,
            "contribution": D("319000.75"),
            "segment": "individual.high.40-49",
            "warnings": [],  # two cities but 350000.00 < warn_concentration_min
        },
        {
            "golden_id": LI_ID,
            "tier": "standard",
            "rank": 4,
            "contribution": D("101010.00"),
            "segment": "individual.standard.30-39",
            "warnings": [
                {"reason": "non_performing", "severity": 3},
                {"reason": "overdue_91_180", "severity": 3},  # 95 days
            ],
        },
        {
            "golden_id": CORP_ID,
            "tier": "key",
            "rank": 1,
            "contribution": D("650000.00"),
            "segment": "corporate.key.unknown",
            "warnings": [],  # credit_limit 0: no limit recorded, nothing to exceed
        },
        {
            "golden_id": ZHAO_ID,
            "tier": "standard",
            "rank": 6,
            "contribution": D("0.00"),
            "segment": "individual.standard.unknown",  # a passport: no birth date
            "warnings": [],
        },
        {
            "golden_id": QIAN_ID,
            "tier": "standard",
            "rank": 5,
            "contribution": D("1000.00"),
            "segment": "individual.standard.18-29",
            "warnings": [
                {"reason": "risk_level", "severity": 3},
                {"reason": "risk_tag.fraud_alert", "severity": 3},
                {"reason": "risk_tag.litigation", "severity": 2},
                {"reason": "risk_tag.watchlist", "severity": 2},
            ],
        },
        {
            "golden_id": SUN_ID,
            "tier": "medium",
            "rank": 3,
            "contribution": D("273093.50"),  # 546187.00 × 0.5
            "segment": "individual.medium.60+",
            # 546187.00 over 90000.00 by 507 % (> 20 %), never overdue
            "warnings": [{"reason": "over_limit", "severity": 3}],
        },
    ]


def test_segments_type_by_age_with_total(hub: sa.Engine, policy: Policy) -> None:
    with hub.connect() as conn:
        rows = analysis.segments(conn, policy, ReportSection(), ["type", "age"], as_of=TODAY)
    got = [
        (
            r["type"],
            r["age"],
            r["customers"],
            r["deposit_balance"],
            r["loan_balance"],
            r["fee_income"],
            r["contribution"],
        )
        for r in rows
    ]
    assert got == [
        ("corporate", "unknown", 1, D("300000.00"), D("500000.00"), D("5000.00"), D("650000.00")),
        ("individual", "18-29", 1, D("1000.00"), D("0.00"), D("0.00"), D("1000.00")),
        ("individual", "30-39", 1, D("50000.00"), D("90000.00"), D("300.50"), D("101010.00")),
        ("individual", "40-49", 1, D("120000.75"), D("350000.00"), D("1200.00"), D("319000.75")),
        ("individual", "60+", 1, D("0.00"), D("546187.00"), D("0.00"), D("273093.50")),
        ("individual", "unknown", 1, D("0.00"), D("0.00"), D("0.00"), D("0.00")),
        ("total", "total", 6, D("471000.75"), D("1486187.00"), D("6500.50"), D("1344104.25")),
    ]
    # 650000.00 / 1344104.25 = 48.3593…%
    assert next(r["share_pct"] for r in rows) == D("48.36")
    assert rows[-1]["share_pct"] == D("100.00")


def test_segments_one_dimension_and_districts(hub: sa.Engine, policy: Policy) -> None:
    with hub.connect() as conn:
        by_district = analysis.segments(conn, policy, ReportSection(), ["district"], as_of=TODAY)
        by_products = analysis.segments(conn, policy, ReportSection(), ["products"], as_of=TODAY)
    # Digits 1-6 of a ric, characters 3-8 of a uscc; a passport has none.
    assert [(r["district"], r["customers"]) for r in by_district] == [
        ("330100", 1),  # Corp 91|330100|MA2AAAAA0B
        ("330102", 1),  # Zhang
        ("330106", 1),  # Qian
        ("330204", 1),  # Li
        ("330211", 1),  # Sun
        ("unknown", 1),  # Zhao
        ("total", 6),
    ]
    assert [(r["products"], r["customers"]) for r in by_products] == [
        ("deposit", 1),
        ("deposit+loan+fee", 3),
        ("loan", 1),
        ("none", 1),
        ("total", 6),
    ]


@pytest.mark.parametrize(
    ("by", "message"),
    [
        ([], "--by: give one or two dimensions"),
        (["type", "tier", "age"], "--by: give one or two dimensions, got 3"),
        (["colour"], "--by 'colour': expected one of type, tier"),
        (["type", "type"], "--by 'type' given twice"),
    ],
)
def test_segments_bad_dimensions(by: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        analysis._dimensions(by)


def test_warnings_flat_filtered_and_sorted(hub: sa.Engine, policy: Policy) -> None:
    with hub.connect() as conn:
        every = analysis.risk_warnings(conn, policy, ReportSection(), as_of=TODAY)
        high = analysis.risk_warnings(conn, policy, ReportSection(), min_severity=3, as_of=TODAY)
        tags = analysis.risk_warnings(
            conn, policy, ReportSection(), reasons=["risk_tag", "overdue"], as_of=TODAY
        )
        tuned = analysis.risk_warnings(
            conn,
            policy,
            ReportSection(warn_concentration_min=300000, warn_tags_high=["watchlist"]),
            reasons=["multi_city", "risk_tag.watchlist"],
            as_of=TODAY,
        )
    assert [(r["golden_id"], r["reason"], r["severity_name"]) for r in every] == [
        (LI_ID, "non_performing", "high"),
        (SUN_ID, "over_limit", "high"),
        (LI_ID, "overdue_91_180", "high"),
        (QIAN_ID, "risk_level", "high"),
        (QIAN_ID, "risk_tag.fraud_alert", "high"),
        (QIAN_ID, "risk_tag.litigation", "medium"),
        (QIAN_ID, "risk_tag.watchlist", "medium"),
    ]
    assert every[1]["loan_balance"] == D("546187.00")
    assert every[1]["credit_limit"] == D("90000.00")
    assert every[1]["max_overdue_days"] == 0
    assert len(high) == 5
    assert [r["reason"] for r in tags] == [
        "overdue_91_180",
        "risk_tag.fraud_alert",
        "risk_tag.litigation",
        "risk_tag.watchlist",
    ]
    # Zhang's 350000.00 in two cities reaches a lowered minimum; watchlist made high.
    assert [(r["golden_id"], r["reason"], r["severity"]) for r in tuned] == [
        (QIAN_ID, "risk_tag.watchlist", 3),
        (ZHANG_ID, "multi_city", 2),
    ]


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (0, None),
        (1, ("overdue_1_30", 1)),
        (30, ("overdue_1_30", 1)),
        (31, ("overdue_31_90", 2)),
        (90, ("overdue_31_90", 2)),
        (91, ("overdue_91_180", 3)),
        (180, ("overdue_91_180", 3)),
        (181, ("overdue_over_180", 3)),
    ],
)
def test_overdue_bands(days: int, expected: tuple[str, int] | None) -> None:
    assert analysis.overdue_reason(days, [30, 90, 180]) == expected


def test_downgrade_growth_and_key_trend_against_a_snapshot(hub: sa.Engine, policy: Policy) -> None:
    section = ReportSection()
    with hub.begin() as conn:
        analysis.take_snapshot(conn, policy, section, as_of=TODAY - dt.timedelta(days=1))
    _change_loans(hub, policy)
    with hub.connect() as conn:
        insights = {
            r["golden_id"]: r
            for r in analysis.customer_insights(conn, policy, section, as_of=TODAY)
        }
        key = analysis.key_customers(conn, policy, section, 2, as_of=TODAY)
        # One customer's insight (the console's 360) reads only its rows, and agrees.
        alone = {
            gid: analysis.customer_insight(conn, policy, section, gid, as_of=TODAY)
            for gid in insights
        }
    for gid, one in alone.items():
        assert one is not None
        assert one["contribution"] == insights[gid]["contribution"]
        assert one["warnings"] == insights[gid]["warnings"]
        assert one["tier_date"] == TODAY - dt.timedelta(days=1)  # the tier of the snapshot
    assert alone[ZHANG_ID]["tier"] == "high"
    with hub.connect() as conn:
        assert analysis.customer_insight(conn, policy, section, 5, as_of=TODAY) is None
    # Zhang: worst class normal → substandard; loans 350000.00 → 600000.00 (+250000.00, 71 %);
    # 600000.00 over the 500000.00 limit by exactly 20 %: medium, not high.
    assert insights[ZHANG_ID]["warnings"] == [
        {"reason": "five_class_downgrade", "severity": 3},
        {"reason": "non_performing", "severity": 3},
        {"reason": "exposure_growth", "severity": 2},
        {"reason": "over_limit", "severity": 2},
    ]
    # Li's loans did not change: no downgrade, no growth.
    assert [w["reason"] for w in insights[LI_ID]["warnings"]] == [
        "non_performing",
        "overdue_91_180",
    ]
    # Zhang's contribution 120000.75 + 600000.00 × 0.5 + 1200.00 × 20 = 444000.75.
    assert [
        (
            r["golden_id"],
            r["contribution"],
            r["prev_contribution"],
            r["contribution_change"],
            r["prev_tier"],
        )
        for r in key
    ] == [
        (CORP_ID, D("650000.00"), D("650000.00"), D("0.00"), "key"),
        (ZHANG_ID, D("444000.75"), D("319000.75"), D("125000.00"), "high"),
    ]


def test_snapshot_is_one_per_day_and_prunes(hub: sa.Engine, policy: Policy) -> None:
    section = ReportSection(customer_snapshot_days=2)
    daily, per = schema_hub.report_daily, schema_hub.report_customer_day

    def counts() -> list[tuple[Any, ...]]:
        with hub.connect() as conn:
            return [
                (str(d), n)
                for d, n in conn.execute(
                    sa.select(per.c.snapshot_date, sa.func.count())
                    .group_by(per.c.snapshot_date)
                    .order_by(per.c.snapshot_date)
                )
            ]

    for day in (27, 28):
        with hub.begin() as conn:
            analysis.take_snapshot(conn, policy, section, as_of=dt.date(2026, 11, day))
    first = analysis.snapshot_if_due(hub, policy, section, dt.datetime(2026, 11, 29, 0, 5))
    again = analysis.snapshot_if_due(hub, policy, section, dt.datetime(2026, 11, 29, 23, 0))
    assert first is not None
    assert first["customer_rows"] == 5
    assert first["customer_rows_pruned"] == 5  # 2026-11-27, older than 2 days
    assert again is None
    with hub.begin() as conn:  # `report snapshot`: taken again, replacing the day's rows
        analysis.take_snapshot(conn, policy, section, as_of=dt.date(2026, 11, 29))
    assert counts() == [("2026-11-28", 5), ("2026-11-29", 5)]
    with hub.connect() as conn:
        rows = conn.execute(
            sa.select(daily).where(daily.c.snapshot_date == dt.date(2026, 11, 29))
        ).all()
        assert analysis.snapshot_taken(conn, dt.date(2026, 11, 29))
    figures = {(r.node_id, r.segment): r for r in rows}
    assert sorted(figures) == [
        ("city-3301", "individual"),
        ("city-3302", "corporate"),
        ("city-3302", "individual"),
        ("city-3303", "unknown"),
    ]
    # city-3302 individuals: Zhang D7 (high), Zhao D10 (standard), Sun D12 (medium).
    d7 = figures[("city-3302", "individual")]
    assert (d7.customers, d7.high_customers, d7.medium_customers, d7.standard_customers) == (
        3,
        1,
        1,
        1,
    )
    assert (d7.deposit_balance, d7.loan_balance, d7.npl_balance, d7.fee_income) == (
        D("20000.25"),
        D("696187.00"),  # M1 150000.00 + M4 546187.00
        D("0.00"),
        D("0.00"),  # G2 deleted
    )
    # city-3303: only the orphan deposit and loss loan of a customer never seen at the hub.
    orphan = figures[("city-3303", "unknown")]
    assert (orphan.customers, orphan.deposit_balance, orphan.npl_balance) == (
        0,
        D("1000.00"),
        D("40000.00"),
    )
    assert (
        analysis.snapshot_if_due(
            hub, policy, ReportSection(snapshot_hour_utc=6), dt.datetime(2026, 11, 30, 5, 59)
        )
        is None
    )


def test_trend_since_month_end(hub: sa.Engine, policy: Policy) -> None:
    section = ReportSection()
    with hub.begin() as conn:
        analysis.take_snapshot(conn, policy, section, as_of=dt.date(2026, 10, 31))
    _change_loans(hub, policy)
    md = schema_hub.policy_metadata(policy)
    with hub.begin() as conn:
        conn.execute(
            sa.insert(md.tables["deposit_accounts"]), [deposit("city-3301", "A4", "C2", "5000.00")]
        )
    with hub.connect() as conn:
        rows = analysis.trend(conn, policy, section, "month-end", as_of=TODAY)
        latest = analysis.trend(conn, policy, section, "yesterday", as_of=TODAY)
        with pytest.raises(UsageError, match="--since 2026-10-30: no snapshot on or before"):
            analysis.trend(conn, policy, section, "2026-10-30", as_of=TODAY)
        with pytest.raises(UsageError, match="--since 'soon': expected yesterday"):
            analysis.trend(conn, policy, section, "soon", as_of=TODAY)
    assert latest == rows  # the latest snapshot on or before yesterday is the month-end one
    got = {
        r["node_id"]: (
            r["deposit_balance_change"],
            r["loan_balance_change"],
            r["npl_balance"],
            r["npl_balance_change"],
            r["customers_change"],
        )
        for r in rows
    }
    assert got == {
        "city-3301": (D("5000.00"), D("0.00"), D("80000.00"), D("0.00"), 0),
        "city-3302": (D("0.00"), D("250000.00"), D("400000.00"), D("400000.00"), 0),
        "city-3303": (D("0.00"), D("0.00"), D("40000.00"), D("0.00"), 0),
        "province": (D("5000.00"), D("250000.00"), D("520000.00"), D("400000.00"), 0),
    }
    assert rows[-1]["since"] == dt.date(2026, 10, 31)
    assert rows[-1]["deposit_balance"] == D("477000.75")  # 471000.75 + 1000 (A3) + 5000 (A4)


@given(
    born=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2030, 12, 31)),
    as_of=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2040, 12, 31)),
)
def test_age_band_from_the_id_number(born: dt.date, as_of: dt.date) -> None:
    """The birth date read back from an ID number, and the band holding its exact age."""
    number = f"330106{born:%Y%m%d}0017"
    assert analysis.birth_date("ric", number) == born
    assert analysis.birth_date("passport", number) is None
    band = analysis.age_band("individual", born, as_of)
    if born > as_of:
        assert band == "unknown"
        return
    # Age by counting birthdays: the last one on or before as_of.
    age = as_of.year - born.year
    if (as_of.month, as_of.day) < (born.month, born.day):
        age -= 1
    low, _, high = band.partition("-")
    assert int(low.rstrip("+")) <= age
    assert high == "" or age <= int(high)
    assert analysis.age_band("corporate", born, as_of) == "unknown"


def test_cli_smoke(tmp_path: Path, policy: Policy) -> None:
    """One real binary run per command family on a SQLite hub: output and a bad option."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = create_engine(url)
    schema_hub.metadata.create_all(engine)
    with engine.begin() as conn:
        schema_hub.install(conn, policy)
        reports.install_views(conn, policy)
        seed(conn, policy)
    engine.dispose()
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[node]\nid = "hub-t"\nrole = "hub"\n[database]\nurl = "{url}"\n'
        f'[policy]\npath = "{REPO / "schemas" / "crm.yaml"}"\n[log]\nformat = "json"\n',
        encoding="utf-8",
    )
    shown = run_syncd(
        config, "report", "warnings", "--json", "--severity", "high", "--unmask", check=True
    )
    assert {(r["id_number"], r["reason"]) for r in json.loads(shown.stdout)} == {
        (LI, "non_performing"),
        (LI, "overdue_91_180"),
    }
    bad = run_syncd(config, "report", "segments", "--by", "type", "--by", "colour")
    assert bad.returncode == 2, bad.stderr
    assert "--by 'colour': expected one of" in bad.stderr
    bad = run_syncd(config, "report", "warnings", "--reason", "risk_tags")
    assert bad.returncode == 2, bad.stderr
    assert "--reason 'risk_tags': expected one of risk_tag, risk_level" in bad.stderr


def test_statistics_refreshed_after_bulk_applies(
    pg_url: str, sqlite_url: str, policy: Policy
) -> None:
    """ANALYZE after a cycle that wrote ≥ 10,000 rows and ≥ 10 % of a table (PostgreSQL)."""
    engine = create_engine(pg_url)
    schema_hub.metadata.create_all(engine)
    with engine.begin() as conn:
        schema_hub.install(conn, policy)
    try:
        assert stale_statistics(engine, policy, {"customers": 9_999}) == []
        # Never analyzed counts as empty; a table with an identity has two hub tables.
        assert stale_statistics(engine, policy, {"customers": 10_000, "loans": 10_000}) == [
            "customers",
            "loans",
            "src_customers",
        ]
        with engine.begin() as conn:  # as if the planner believed loans held 1M rows
            conn.execute(sa.text("UPDATE pg_class SET reltuples = 1e6 WHERE relname = 'loans'"))
        assert stale_statistics(engine, policy, {"loans": 99_999}) == []
        assert stale_statistics(engine, policy, {"loans": 100_000}) == ["loans"]
        assert refresh_statistics(engine, policy, {"loans": 100_000}) == ["loans"]
        with engine.connect() as conn:
            analyzed = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE relname = 'loans'")
            ).scalar()
        assert analyzed == 0  # ANALYZE ran: the table is really empty
    finally:
        engine.dispose()
    lite = create_engine(sqlite_url)
    assert stale_statistics(lite, policy, {"customers": 1_000_000}) == []
    lite.dispose()
