"""Manager reports and their views on SQLite and PostgreSQL, against hand-computed figures."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.core.errors import UsageError
from syncd.core.policy import Policy, load_policy
from syncd.core.settings import ReportSection
from syncd.hub import reports
from syncd.store import hub_tables as schema_hub
from syncd.store.db import create_engine
from tests.conftest import POLICY, REPO
from tests.helpers import run_syncd

T0 = dt.datetime(2026, 3, 1, 9, 0, 0)
T1 = dt.datetime(2026, 3, 2, 10, 30, 0)

ZHANG = "330102198503120019"  # in city-3301 (C1) and city-3302 (D7)
LI = "330204199007070029"  # live in city-3301 (C2); deleted in city-3302 (D9)
WANG = "330381197201010039"  # only in city-3303, deleted everywhere
CORP = "91330100MA2AAAAA0B"  # a corporate customer, only in city-3302 (D8)
ZHAO = "E12345678"  # a passport holder in city-3302 (D10) with no products

D = Decimal


def customer(
    origin: str, cid: str, id_type: str, id_number: str, name: str, **kw: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "origin_node": origin,
        "customer_id": cid,
        "customer_type": "corporate" if id_type == "uscc" else "individual",
        "name": name,
        "id_type": id_type,
        "id_number": id_number,
        "phone": None,
        "address": None,
        "home_city": "3301",
        "status": "active",
        "risk_level": 2,
        "risk_tags": [],
        "credit_limit": D("0.00"),
        "created_at": T0,
        "updated_at": T0,
        "_seq": 1,
        "_deleted": False,
        "_batch_id": None,
        "_applied_at": T1,
    }
    row.update(kw)
    return row


def golden(gid: int, src: dict[str, Any], sources: int, deleted: bool = False) -> dict[str, Any]:
    row = {k: v for k, v in src.items() if not k.startswith("_")}
    del row["origin_node"], row["customer_id"]
    return {**row, "golden_id": gid, "_sources": sources, "_deleted": deleted, "_updated_at": T1}


def child(origin: str, deleted: bool = False, **kw: Any) -> dict[str, Any]:
    return {
        "origin_node": origin,
        "updated_at": T0,
        "_seq": 1,
        "_deleted": deleted,
        "_batch_id": None,
        "_applied_at": T1,
        **kw,
    }


def deposit(origin: str, aid: str, cid: str, balance: str, deleted: bool = False) -> dict[str, Any]:
    return child(
        origin,
        deleted,
        account_id=aid,
        customer_id=cid,
        product="current",
        currency="CNY",
        balance=D(balance),
        interest_rate=None,
        opened_on=dt.date(2020, 1, 1),
        maturity_on=None,
        status="open",
    )


def loan(
    origin: str,
    lid: str,
    cid: str,
    balance: str,
    five_class: str,
    overdue: int = 0,
    deleted: bool = False,
) -> dict[str, Any]:
    return child(
        origin,
        deleted,
        loan_id=lid,
        customer_id=cid,
        product="business",
        principal=D(balance),
        balance=D(balance),
        interest_rate=None,
        five_class=five_class,
        overdue_days=overdue,
        issued_on=dt.date(2024, 1, 1),
        maturity_on=dt.date(2029, 1, 1),
        collateral=None,
    )


def business(origin: str, bid: str, cid: str, fee: str, deleted: bool = False) -> dict[str, Any]:
    return child(
        origin,
        deleted,
        business_id=bid,
        customer_id=cid,
        product_type="wealth",
        product_name="稳健理财",
        amount=D("100000.00"),
        fee_income=D(fee),
        trade_date=dt.date(2026, 1, 5),
    )


def seed(conn: sa.Connection, policy: Policy) -> None:
    """The fixed province: three cities, five identities, one orphan city's worth of rows."""
    md = schema_hub.policy_metadata(policy)
    conn.execute(
        sa.insert(schema_hub.nodes),
        [
            {
                "node_id": "city-3301",
                "city_code": "3301",
                "registered_at": T0,
                "last_seen_at": T1,
                "applied_at": T1,
            },
            {
                "node_id": "city-3302",
                "city_code": "3302",
                "registered_at": T0,
                "last_seen_at": T0,
                "applied_at": T0,
            },
            {
                "node_id": "city-3303",
                "city_code": "3303",
                "registered_at": T0,
                "last_seen_at": None,
                "applied_at": None,
            },
        ],
    )
    zhang_1 = customer(
        "city-3301",
        "C1",
        "ric",
        ZHANG,
        "张三",
        phone="13800000001",
        address="杭州市西湖区",
        risk_tags=["vip", "mortgage"],
        credit_limit=D("500000.00"),
        updated_at=T1,
    )
    zhang_2 = customer(
        "city-3302",
        "D7",
        "ric",
        ZHANG,
        "张三",
        phone="13900000002",
        address="宁波市海曙区",
        risk_tags=["mortgage", "vip"],
        credit_limit=D("500000.00"),
    )
    li_1 = customer("city-3301", "C2", "ric", LI, "李四")
    li_2 = customer("city-3302", "D9", "ric", LI, "李四", phone="13700000003", _deleted=True)
    corp = customer("city-3302", "D8", "uscc", CORP, "杭州某某科技有限公司", home_city="3302")
    zhao = customer("city-3302", "D10", "passport", ZHAO, "赵六", status="dormant")
    wang = customer("city-3303", "W1", "ric", WANG, "王五", _deleted=True)
    conn.execute(
        sa.insert(md.tables["src_customers"]), [zhang_1, zhang_2, li_1, li_2, corp, zhao, wang]
    )
    conn.execute(
        sa.insert(md.tables["customers"]),
        [
            golden(1, zhang_1, 2),
            golden(2, li_1, 1),
            golden(3, corp, 1),
            golden(4, zhao, 1),
            golden(5, wang, 0, deleted=True),
        ],
    )
    conn.execute(
        sa.insert(md.tables["deposit_accounts"]),
        [
            deposit("city-3301", "A1", "C1", "100000.50"),
            deposit("city-3301", "A2", "C2", "50000.00"),
            deposit("city-3302", "B1", "D7", "20000.25"),
            deposit("city-3302", "B2", "D8", "300000.00"),
            deposit("city-3302", "B3", "D8", "123.45", deleted=True),
            deposit("city-3303", "E1", "X9", "1000.00"),  # orphan: no customer X9 anywhere
        ],
    )
    conn.execute(
        sa.insert(md.tables["loans"]),
        [
            loan("city-3301", "L1", "C1", "200000.00", "normal"),
            loan("city-3301", "L2", "C2", "80000.00", "substandard", overdue=95),
            loan("city-3301", "L3", "C2", "10000.00", "special_mention", overdue=15),
            loan("city-3302", "M1", "D7", "150000.00", "normal"),
            loan("city-3302", "M2", "D8", "500000.00", "normal"),
            loan("city-3302", "M3", "D7", "999999.00", "loss", overdue=400, deleted=True),
            loan("city-3303", "N1", "X9", "40000.00", "loss", overdue=400),  # orphan
        ],
    )
    conn.execute(
        sa.insert(md.tables["intermediary_business"]),
        [
            business("city-3301", "F1", "C1", "1200.00"),
            business("city-3301", "F2", "C2", "300.50"),
            business("city-3302", "G1", "D8", "5000.00"),
            business("city-3302", "G2", "D7", "777.00", deleted=True),
        ],
    )
    if conn.dialect.name == "postgresql":  # golden ids were given: the next one comes after
        conn.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('customers', 'golden_id'), "
                "(SELECT max(golden_id) FROM customers))"
            )
        )


@pytest.fixture
def policy() -> Policy:
    return load_policy(POLICY)


@pytest.fixture
def hub(db_url: str, policy: Policy) -> Iterator[sa.Engine]:
    engine = create_engine(db_url)
    schema_hub.metadata.create_all(engine)
    with engine.begin() as conn:
        schema_hub.install(conn, policy)
        reports.install_views(conn, policy)
        seed(conn, policy)
    yield engine
    engine.dispose()


VIEWS = (
    "report_customer_link",
    "report_customer_deposit_accounts",
    "report_customer_loans",
    "report_customer_intermediary_business",
    "report_city_summary",
    "report_customer_value_base",
    "report_credit_exposure",
    "report_customer_profile",
)


def test_install_views_is_idempotent_and_names_every_view(hub: sa.Engine, policy: Policy) -> None:
    with hub.begin() as conn:
        assert reports.install_views(conn, policy) == VIEWS
    assert set(VIEWS) <= set(sa.inspect(hub).get_view_names())


def test_views_read_by_plain_sql(hub: sa.Engine) -> None:
    with hub.connect() as conn:
        link = conn.execute(
            sa.text(
                "SELECT golden_id, origin_node, customer_id FROM report_customer_link "
                "ORDER BY golden_id, origin_node"
            )
        ).all()
        loans = (
            conn.execute(sa.text("SELECT loan_id FROM report_customer_loans ORDER BY loan_id"))
            .scalars()
            .all()
        )
        cities = conn.execute(
            sa.text("SELECT node_id, customers FROM report_city_summary ORDER BY node_id")
        ).all()
    # Deleted source rows (D9, W1) link nothing; the orphan loan N1 and deleted M3 are nobody's.
    assert [tuple(r) for r in link] == [
        (1, "city-3301", "C1"),
        (1, "city-3302", "D7"),
        (2, "city-3301", "C2"),
        (3, "city-3302", "D8"),
        (4, "city-3302", "D10"),
    ]
    assert loans == ["L1", "L2", "L3", "M1", "M2"]
    assert [tuple(r) for r in cities] == [("city-3301", 2), ("city-3302", 3), ("city-3303", 0)]


def test_city_summary(hub: sa.Engine) -> None:
    with hub.connect() as conn:
        rows = reports.city_summary(conn)
    assert rows == [
        {
            "node_id": "city-3301",
            "city_code": "3301",
            "customers": 2,
            "deposit_balance": D("150000.50"),  # A1 100000.50 + A2 50000.00
            "loan_balance": D("290000.00"),  # L1 + L2 + L3
            "loan_normal": D("200000.00"),
            "loan_special_mention": D("10000.00"),
            "loan_substandard": D("80000.00"),
            "loan_doubtful": D("0.00"),
            "loan_loss": D("0.00"),
            "overdue_loan_balance": D("90000.00"),  # L2 (95 days) + L3 (15 days)
            "fee_income": D("1500.50"),  # F1 1200.00 + F2 300.50
            "last_applied_at": T1,
            "last_seen_at": T1,
        },
        {
            # D7, D8, D10 live; D9 deleted. B3, M3, G2 deleted.
            "node_id": "city-3302",
            "city_code": "3302",
            "customers": 3,
            "deposit_balance": D("320000.25"),  # B1 20000.25 + B2 300000.00
            "loan_balance": D("650000.00"),  # M1 150000 + M2 500000
            "loan_normal": D("650000.00"),
            "loan_special_mention": D("0.00"),
            "loan_substandard": D("0.00"),
            "loan_doubtful": D("0.00"),
            "loan_loss": D("0.00"),
            "overdue_loan_balance": D("0.00"),
            "fee_income": D("5000.00"),
            "last_applied_at": T0,
            "last_seen_at": T0,
        },
        {
            # Only orphans and a deleted customer: the orphans still count for the city.
            "node_id": "city-3303",
            "city_code": "3303",
            "customers": 0,
            "deposit_balance": D("1000.00"),
            "loan_balance": D("40000.00"),
            "loan_normal": D("0.00"),
            "loan_special_mention": D("0.00"),
            "loan_substandard": D("0.00"),
            "loan_doubtful": D("0.00"),
            "loan_loss": D("40000.00"),
            "overdue_loan_balance": D("40000.00"),
            "fee_income": D("0.00"),
            "last_applied_at": None,
            "last_seen_at": None,
        },
    ]


def test_customer_360_across_two_cities(hub: sa.Engine, policy: Policy) -> None:
    with hub.connect() as conn:
        view = reports.customer_360(conn, policy, ZHANG)
    assert view["golden"]["golden_id"] == 1
    assert view["golden"]["name"] == "张三"
    assert [(s["origin_node"], s["city_code"], s["customer_id"]) for s in view["sources"]] == [
        ("city-3301", "3301", "C1"),
        ("city-3302", "3302", "D7"),
    ]
    # risk_tags hold the same set in another order: not a difference. updated_at is ignored.
    assert view["differences"] == [
        {"column": "phone", "values": {"city-3301": "13800000001", "city-3302": "13900000002"}},
        {"column": "address", "values": {"city-3301": "杭州市西湖区", "city-3302": "宁波市海曙区"}},
    ]
    assert [(d["origin_node"], d["account_id"], d["balance"]) for d in view["deposits"]] == [
        ("city-3301", "A1", D("100000.50")),
        ("city-3302", "B1", D("20000.25")),
    ]
    assert [(x["origin_node"], x["loan_id"], x["five_class"]) for x in view["loans"]] == [
        ("city-3301", "L1", "normal"),
        ("city-3302", "M1", "normal"),
    ]
    assert [x["business_id"] for x in view["intermediary_business"]] == ["F1"]
    assert view["cities"] == ["city-3301", "city-3302"]
    assert view["totals"] == {
        "deposit_balance": D("120000.75"),
        "loan_balance": D("350000.00"),
        "fee_income": D("1200.00"),
    }


def test_customer_360_finds_a_number_as_a_person_types_it(hub: sa.Engine, policy: Policy) -> None:
    """Full-width digits, spaces and a lowercase check digit: the stored (normalised) number."""
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in ZHANG[:6])
    typed = f" {full_width} {ZHANG[6:14]}-{ZHANG[14:].lower()} "
    with hub.connect() as conn:
        view = reports.customer_360(conn, policy, typed)
    assert view["golden"]["id_number"] == ZHANG


def test_customer_360_ignores_deleted_sources(hub: sa.Engine, policy: Policy) -> None:
    with hub.connect() as conn:
        view = reports.customer_360(conn, policy, LI, "ric")
    assert [s["customer_id"] for s in view["sources"]] == ["C2"]
    assert view["differences"] == []
    assert view["cities"] == ["city-3301"]
    assert view["totals"]["loan_balance"] == D("90000.00")


@pytest.mark.parametrize(
    ("id_number", "id_type", "message"),
    [
        # The number is masked in the message: errors reach terminals and logs.
        ("110101199001010000", None, r"no customer with id_number '110101\*{8}0000'"),
        (ZHAO, "ric", r"no customer with id_number 'E1\*{5}78' and id_type 'ric'"),
        (WANG, None, r"no customer with id_number '330381\*{8}0039'"),  # deleted everywhere
    ],
)
def test_customer_360_unknown(
    hub: sa.Engine, policy: Policy, id_number: str, id_type: str | None, message: str
) -> None:
    with hub.connect() as conn, pytest.raises(UsageError, match=message):
        reports.customer_360(conn, policy, id_number, id_type)


def test_customer_360_ambiguous_number_needs_id_type(hub: sa.Engine, policy: Policy) -> None:
    md = schema_hub.policy_metadata(policy)
    twin = customer("city-3302", "D11", "passport", ZHANG, "张三丰")
    with hub.begin() as conn:
        conn.execute(sa.insert(md.tables["src_customers"]), [twin])
        conn.execute(sa.insert(md.tables["customers"]), [golden(6, twin, 1)])
    with hub.connect() as conn:
        with pytest.raises(UsageError, match=r"belongs to 2 customers .*passport, ric.*--id-type"):
            reports.customer_360(conn, policy, ZHANG)
        assert reports.customer_360(conn, policy, ZHANG, "passport")["golden"]["name"] == "张三丰"


def test_customer_value_and_tiers(hub: sa.Engine) -> None:
    # Shares 25/25/25 of 4 customers: one key, one high, one medium, one standard.
    section = ReportSection(
        weight_deposit=1.0,
        weight_loan=0.5,
        weight_fee=20.0,
        tier_key_pct=25,
        tier_high_pct=25,
        tier_medium_pct=25,
    )
    with hub.connect() as conn:
        rows = reports.customer_value(conn, section, None)
    got = [
        (
            r["golden_id"],
            r["cities"],
            r["deposit_balance"],
            r["loan_balance"],
            r["fee_income"],
            r["contribution"],
            r["rank"],
            r["tier"],
        )
        for r in rows
    ]
    assert got == [
        # 300000.00 + 500000.00 × 0.5 + 5000.00 × 20
        (3, ["city-3302"], D("300000.00"), D("500000.00"), D("5000.00"), D("650000.00"), 1, "key"),
        # (100000.50 + 20000.25) + (200000 + 150000) × 0.5 + 1200.00 × 20
        (
            1,
            ["city-3301", "city-3302"],
            D("120000.75"),
            D("350000.00"),
            D("1200.00"),
            D("319000.75"),
            2,
            "high",
        ),
        # 50000.00 + (80000 + 10000) × 0.5 + 300.50 × 20
        (2, ["city-3301"], D("50000.00"), D("90000.00"), D("300.50"), D("101010.00"), 3, "medium"),
        (4, ["city-3302"], D("0.00"), D("0.00"), D("0.00"), D("0.00"), 4, "standard"),
    ]
    with hub.connect() as conn:
        top = reports.customer_value(conn, section, 2)
    assert [r["golden_id"] for r in top] == [3, 1]


def test_customer_value_default_shares_and_ties(hub: sa.Engine) -> None:
    # Defaults 5/15/30 of 4: key ceil(0.2)=1, high ceil(0.8)=1, medium ceil(2.0)=2.
    with hub.connect() as conn:
        rows = reports.customer_value(conn, ReportSection(), None)
    assert [(r["golden_id"], r["tier"]) for r in rows] == [
        (3, "key"),
        (1, "medium"),
        (2, "standard"),
        (4, "standard"),
    ]
    # Every weight zero: one four-way tie at rank 1, and zero contribution is never a tier.
    zero = ReportSection(weight_deposit=0, weight_loan=0, weight_fee=0)
    with hub.connect() as conn:
        rows = reports.customer_value(conn, zero, None)
    assert [(r["golden_id"], r["rank"], r["tier"]) for r in rows] == [
        (1, 1, "standard"),
        (2, 1, "standard"),
        (3, 1, "standard"),
        (4, 1, "standard"),
    ]


def test_tied_customers_share_rank_and_tier() -> None:
    rows = [
        {"golden_id": i, "contribution": D(c)}
        for i, c in enumerate(["900", "500", "500", "100", "0"], start=1)
    ]
    reports._assign_tiers(
        rows, ReportSection(tier_key_pct=20, tier_high_pct=20, tier_medium_pct=20)
    )
    # Limits 1, 2, 3: the tie at rank 2 keeps both in 'high', pushing 100 (rank 4) out.
    assert [(r["rank"], r["tier"]) for r in rows] == [
        (1, "key"),
        (2, "high"),
        (2, "high"),
        (4, "standard"),
        (5, "standard"),
    ]


def test_customer_value_rejects_bad_top(hub: sa.Engine) -> None:
    with hub.connect() as conn, pytest.raises(UsageError, match="--top"):
        reports.customer_value(conn, ReportSection(), 0)


def test_credit_exposure(hub: sa.Engine) -> None:
    with hub.connect() as conn:
        rows = reports.credit_exposure(conn, D(0))
        at_total = reports.credit_exposure(conn, D("350000.00"))
        above = reports.credit_exposure(conn, D("350000.01"))
    # Li first (substandard is worse than normal); Corp has one city, no overdue, no NPL.
    assert [
        (
            r["golden_id"],
            r["loan_cities"],
            r["loan_count"],
            r["loan_balance"],
            r["multi_city"],
            r["max_overdue_days"],
            r["worst_five_class"],
            r["warnings"],
        )
        for r in rows
    ] == [
        (
            2,
            ["city-3301"],
            2,
            D("90000.00"),
            False,
            95,
            "substandard",
            ["overdue", "non_performing"],
        ),
        (1, ["city-3301", "city-3302"], 2, D("350000.00"), True, 0, "normal", ["multi_city"]),
    ]
    assert [r["golden_id"] for r in at_total] == [2, 1]
    assert [r["golden_id"] for r in above] == [2]


def test_credit_exposure_rejects_negative_min(hub: sa.Engine) -> None:
    with hub.connect() as conn, pytest.raises(UsageError, match="--min"):
        reports.credit_exposure(conn, D("-1"))


# --- the real binary -------------------------------------------------------------------------


@pytest.fixture
def hub_config(hub: sa.Engine, db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[node]\nid = "hub-t"\nrole = "hub"\n[database]\nurl = "{db_url}"\n'
        f'[policy]\npath = "{REPO / "schemas" / "crm.yaml"}"\n[log]\nformat = "json"\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("customer", "--id-number", "110101199001010000"),
            "no customer with id_number '110101********0000'",
        ),
        (("exposure", "--min", "-5"), "--min: must be a non-negative amount, got -5"),
        (("exposure", "--min", "lots"), "--min 'lots': not an amount"),
        (("value", "--top", "0"), "--top: must be at least 1, got 0"),
        (("cities", "--json", "--csv"), "--json and --csv"),
    ],
)
def test_cli_bad_arguments_exit_2(hub_config: Path, args: tuple[str, ...], message: str) -> None:
    proc = run_syncd(hub_config, "report", *args)
    assert proc.returncode == 2, proc.stderr
    assert "syncd: error:" in proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_reports_render(hub_config: Path) -> None:
    cities = run_syncd(hub_config, "report", "cities", "--json", check=True)
    # The last row is the province (全省) total.
    assert [(c["node_id"], c["deposit_balance"]) for c in json.loads(cities.stdout)] == [
        ("city-3301", "150000.50"),
        ("city-3302", "320000.25"),
        ("city-3303", "1000.00"),
        ("province", "471000.75"),
    ]
    value = run_syncd(
        hub_config, "report", "value", "--csv", "--top", "1", "--lang", "en", check=True
    )
    table = list(csv.DictReader(io.StringIO(value.stdout)))
    assert [(r["ID number"], r["contribution (yuan)"], r["tier"]) for r in table] == [
        ("913301********AA0B", "650,000.00", "key"),
    ]
    exposure = run_syncd(hub_config, "report", "exposure", "--min", "400000", "--json", check=True)
    assert [r["warnings"] for r in json.loads(exposure.stdout)] == [["overdue", "non_performing"]]
    person = run_syncd(
        hub_config, "report", "customer", "--id-number", ZHANG, "--csv", "--lang", "en", check=True
    )
    fields = list(csv.DictReader(io.StringIO(person.stdout)))
    assert {
        (r["city"], r["value"])
        for r in fields
        if r["section"] == "difference" and r["field"] == "phone"
    } == {
        ("city-3301", "13800000001"),
        ("city-3302", "13900000002"),
    }
    shown = run_syncd(hub_config, "report", "customer", "--id-number", ZHANG, check=True)
    assert "张三" in shown.stdout
    assert "≠" in shown.stdout


def test_install_views_replaces_a_view_of_another_shape(hub: sa.Engine, policy: Policy) -> None:
    # An older release's view with other columns: PostgreSQL cannot CREATE OR REPLACE it.
    with hub.begin() as conn:
        conn.execute(sa.text("DROP VIEW report_city_summary"))
        conn.execute(sa.text("CREATE VIEW report_city_summary AS SELECT 1 AS old_column"))
    with hub.begin() as conn:
        reports.install_views(conn, policy)
    with hub.connect() as conn:
        assert len(reports.city_summary(conn)) == 3
