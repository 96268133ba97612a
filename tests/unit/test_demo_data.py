"""Demo data: valid identity numbers, rows that fit the policy, shared customers, determinism."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

from syncd.core.demo_data import (
    AS_OF,
    CITIES,
    INVALID_ID_REASONS,
    TABLES,
    DemoData,
    District,
    cities,
    city_by_code,
    conflicting_edits,
    generate,
    id_districts,
    minimum_customers,
    national_id,
)
from syncd.core.policy import Column, ColumnType, load_policy

POLICY = load_policy(Path(__file__).resolve().parents[2] / "schemas" / "crm.yaml")
PUBLIC_CHILDREN = ("deposit_accounts", "loans", "intermediary_business")


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(cities(3), 200, seed=7)


# -- invariants, shared by the fixed-seed tests and the property test ---------------------------


def check_value(where: str, col: Column, value: Any) -> None:
    if value is None:
        assert col.nullable, f"{where} is null"
        return
    t = col.type
    if t in (ColumnType.STRING, ColumnType.TEXT):
        assert isinstance(value, str), where
        assert col.length is None or len(value) <= col.length, where
        assert col.choices is None or value in col.choices, f"{where}={value!r}"
    elif t is ColumnType.INTEGER:
        assert isinstance(value, int), where
        assert not isinstance(value, bool), where
    elif t is ColumnType.DECIMAL:
        assert isinstance(value, Decimal), where
        _, digits, exponent = value.as_tuple()
        assert exponent == -col.scale, f"{where}={value}"
        assert len(digits) <= col.precision, f"{where}={value}"
    elif t is ColumnType.BOOLEAN:
        assert isinstance(value, bool), where
    elif t is ColumnType.DATE:
        assert type(value) is dt.date, where
    elif t is ColumnType.TIMESTAMP:
        assert isinstance(value, dt.datetime), where
        assert value.tzinfo is None, where
    else:
        assert isinstance(value, list), where
        assert all(isinstance(v, str) for v in value), where
    if col.min is not None:
        assert value >= col.min, f"{where}={value} < {col.min}"
    if col.max is not None:
        assert value <= col.max, f"{where}={value} > {col.max}"


def assert_rows_fit_policy(data: DemoData) -> None:
    for code, tables in data.tables.items():
        assert set(tables) == set(POLICY.tables) == set(TABLES)
        for name, rows in tables.items():
            table = POLICY.table(name)
            keys = [tuple(r[k] for k in table.primary_key) for r in rows]
            assert len(set(keys)) == len(keys), f"{code}.{name}: duplicate keys"
            for row in rows:
                assert set(row) == set(table.columns), f"{code}.{name}"
                for col_name, col in table.columns.items():
                    check_value(f"{code}.{name}.{col_name}", col, row[col_name])


def assert_identities(data: DemoData) -> None:
    invalid = {(r.city_code, r.customer_id) for r in data.manifest.invalid_ids}
    for code, tables in data.tables.items():
        for row in tables["customers"]:
            number = row["id_number"]
            if (code, row["customer_id"]) in invalid:
                assert not ric.is_valid(number), number
            elif row["id_type"] == "ric":
                assert ric.is_valid(number), number
                # Born in the customer's home city, an adult at the as-of date.
                home = city_by_code(row["home_city"])
                assert number[:6] in {d.code for d in home.districts + home.former}
                assert AS_OF.year - 86 <= int(number[6:10]) <= AS_OF.year - 18
            else:
                assert row["id_type"] == "uscc"
                assert row["customer_type"] == "corporate"
                assert uscc.is_valid(number), number
                assert number[2:4] == "33", number


def assert_children(data: DemoData) -> None:
    for tables in data.tables.values():
        status = {r["customer_id"]: r["status"] for r in tables["customers"]}
        for name in TABLES[1:]:
            for row in tables[name]:
                assert row["customer_id"] in status, f"{name} row without its customer"
                if name in PUBLIC_CHILDREN:
                    # A prospect's rows would wait at the hub forever for their parent.
                    assert status[row["customer_id"]] != "prospect", name
        for loan in tables["loans"]:
            assert loan["principal"] >= loan["balance"]
            assert loan["maturity_on"] > loan["issued_on"]
            assert (loan["overdue_days"] > 0) or loan["five_class"] == "normal"
        for acc in tables["deposit_accounts"]:
            assert acc["maturity_on"] is None or acc["maturity_on"] > acc["opened_on"]
            assert acc["maturity_on"] is None or acc["product"] in ("fixed", "large_cd")


def assert_addresses(data: DemoData) -> None:
    for code, tables in data.tables.items():
        city = city_by_code(code)
        prefixes = tuple(f"浙江省{city.name}{d.name}" for d in city.districts)
        for row in tables["customers"]:
            assert row["address"].startswith(prefixes), row["address"]


def assert_manifest(data: DemoData) -> None:
    m = data.manifest
    assert m.cities == tuple(data.tables)
    invalid = {(r.city_code, r.customer_id) for r in m.invalid_ids}
    identities: set[tuple[str, str]] = set()
    golden: set[tuple[str, str]] = set()
    for code, tables in data.tables.items():
        customers = tables["customers"]
        counts = m.counts[code]
        assert counts.rows == {t: len(rows) for t, rows in tables.items()}
        assert counts.customers == len(customers)
        public = [r for r in customers if r["status"] != "prospect"]
        assert counts.public_customers == len(public)
        assert counts.prospects == len(customers) - len(public) >= 1
        assert counts.invalid_ids == 1
        assert counts.corporate == sum(r["customer_type"] == "corporate" for r in customers)
        ids = [(r["id_type"], r["id_number"]) for r in customers]
        assert len(set(ids)) == len(ids), "one identity is one customer within a city"
        identities.update(ids)
        golden.update(
            (r["id_type"], r["id_number"])
            for r in public
            if (code, r["customer_id"]) not in invalid
        )
    assert len(identities) == m.distinct_customers
    assert len(golden) == m.golden_customers
    assert {r.reason for r in m.invalid_ids} <= set(INVALID_ID_REASONS)
    assert m.corporates
    for ref in m.prospects + m.invalid_ids + m.corporates:
        row = find(data, ref.city_code, ref.customer_id)
        assert (row["id_type"], row["id_number"]) == (ref.id_type, ref.id_number)
    for ref in m.prospects:
        assert find(data, ref.city_code, ref.customer_id)["status"] == "prospect"
    for ref in m.invalid_ids:
        assert find(data, ref.city_code, ref.customer_id)["status"] != "prospect"


def assert_shared(data: DemoData) -> None:
    m = data.manifest
    if len(m.cities) == 1:
        assert not m.shared
        return
    assert m.shared
    for s in m.shared:
        assert 2 <= len(s.customer_ids) <= 3
        assert next(iter(s.customer_ids)) == s.home_city
        rows = [find(data, code, cid) for code, cid in s.customer_ids.items()]
        for code, row in zip(s.customer_ids, rows, strict=True):
            assert row["customer_id"].startswith(f"C{code}")
            assert (row["id_type"], row["id_number"]) == (s.id_type, s.id_number)
            assert row["home_city"] == s.home_city
            assert row["name"] == s.name
            assert row["status"] in ("active", "dormant")
            assert row["phone"] == s.phones[code]
            assert tuple(row["risk_tags"]) == s.risk_tags[code]
        assert len({r["phone"] for r in rows}) == len(rows)
        assert len({r["address"] for r in rows}) == len(rows)
        assert len({r["updated_at"] for r in rows}) == len(rows)
        for code, cid in s.customer_ids.items():
            has_loans = any(r["customer_id"] == cid for r in data.tables[code]["loans"])
            assert has_loans == (code in s.loan_cities)
    assert any(len(s.loan_cities) >= 2 for s in m.shared), "cross-city credit exposure"
    assert any(len(set(s.risk_tags.values())) > 1 for s in m.shared), "cities disagree on tags"


def find(data: DemoData, code: str, customer_id: str) -> dict[str, Any]:
    rows = [r for r in data.tables[code]["customers"] if r["customer_id"] == customer_id]
    assert len(rows) == 1, (code, customer_id)
    return rows[0]


def assert_invariants(data: DemoData) -> None:
    assert_rows_fit_policy(data)
    assert_identities(data)
    assert_children(data)
    assert_addresses(data)
    assert_manifest(data)
    assert_shared(data)


# -- tests --------------------------------------------------------------------------------------


def test_rows_fit_the_policy(data: DemoData) -> None:
    assert_rows_fit_policy(data)


def test_identity_numbers(data: DemoData) -> None:
    assert_identities(data)
    assert len(data.manifest.invalid_ids) == 3
    assert {r.reason for r in data.manifest.invalid_ids} == set(INVALID_ID_REASONS)


def test_children(data: DemoData) -> None:
    assert_children(data)
    loans = [r for t in data.tables.values() for r in t["loans"]]
    assert {r["five_class"] for r in loans} >= {"normal", "special_mention"}
    assert any(r["five_class"] == "normal" and r["overdue_days"] > 0 for r in loans)
    assert all(t["opportunities"] and t["sales_activities"] for t in data.tables.values())


def test_addresses_are_in_the_rows_city(data: DemoData) -> None:
    assert_addresses(data)


def test_manifest_counts(data: DemoData) -> None:
    assert_manifest(data)
    totals = data.manifest.totals
    assert totals.invalid_ids == 3
    assert totals.customers == sum(len(t["customers"]) for t in data.tables.values())
    assert totals.customers > data.manifest.distinct_customers == 200


def test_shared_customers(data: DemoData) -> None:
    assert_shared(data)
    assert len(data.manifest.shared) >= 10


def test_deterministic(data: DemoData) -> None:
    assert generate(cities(3), 200, seed=7) == data
    other = generate(cities(3), 200, seed=8)
    assert other != data
    assert other.tables["3301"]["customers"] != data.tables["3301"]["customers"]


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="at least 9"):
        generate(cities(3), 8, seed=1)
    with pytest.raises(ValueError, match="distinct"):
        generate([CITIES[0], CITIES[0]], 100, seed=1)
    with pytest.raises(ValueError, match="between 1 and 11"):
        cities(12)


def test_cities_are_zhejiangs() -> None:
    assert [c.code for c in CITIES] == [f"33{i:02d}" for i in range(1, 12)]
    assert [c.name for c in cities(3)] == ["杭州市", "宁波市", "温州市"]
    assert [c.code for c in cities(2)] == ["3301", "3302"]


def county(district: District, year: int) -> str | None:
    """The county stdnum's registry gives the code for that birth year, if it is valid then."""
    number = national_id(district.code, dt.date(year, 7, 1), 1)
    if not ric.is_valid(number):
        return None
    low, high = district.years
    if (low is not None and year < low) or (high is not None and year > high):
        return None
    return str(ric.get_birth_place(number)["county"])


def test_district_codes_are_real() -> None:
    for city in CITIES:
        for d in city.districts:
            assert d.code.startswith(city.code), d
            assert county(d, AS_OF.year - 1) == d.name, d
        for d in city.former:
            names = {county(d, y) for y in range(1940, AS_OF.year)} - {None}
            assert names == {d.name}, d
        for year in range(AS_OF.year - 86, AS_OF.year - 18):
            assert id_districts(city, year), (city.name, year)


def test_conflicting_edits(data: DemoData) -> None:
    edits = conflicting_edits(data.manifest, seed=7)
    assert edits == conflicting_edits(data.manifest, seed=7)
    assert len({e.city_code for e in edits}) >= 2
    shared_ids = {cid for s in data.manifest.shared for cid in s.customer_ids.values()}
    by_field: Counter[str] = Counter()
    for e in edits:
        assert e.table == "customers"
        row = find(data, e.city_code, e.key["customer_id"])
        assert row["customer_id"] in shared_ids
        assert e.changes["updated_at"] > row["updated_at"]
        assert set(e.changes) < set(POLICY.table("customers").columns)
        for name, value in e.changes.items():
            check_value(name, POLICY.table("customers").columns[name], value)
            if name != "updated_at":
                by_field[name] += 1
                assert value != row[name]
        if "address" in e.changes:
            assert e.changes["address"].startswith("浙江省" + city_by_code(e.city_code).name)
    assert by_field["customer_type"] == 1
    phones = [e for e in edits if "phone" in e.changes][:2]
    assert phones[0].city_code != phones[1].city_code
    assert phones[0].changes["phone"] != phones[1].changes["phone"]
    assert conflicting_edits(generate(cities(1), 20, seed=1).manifest, seed=1) == []


def test_customer_ids() -> None:
    small = generate(cities(2), 30, seed=3)
    for code, tables in small.tables.items():
        ids = [r["customer_id"] for r in tables["customers"]]
        assert all(re.fullmatch(rf"C{code}\d{{6}}", i) for i in ids)
        assert ids == sorted(ids)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    n_cities=st.integers(min_value=1, max_value=4),
    extra=st.integers(min_value=0, max_value=40),
)
def test_invariants_hold_for_any_seed(seed: int, n_cities: int, extra: int) -> None:
    n = minimum_customers(n_cities) + extra
    assert_invariants(generate(cities(n_cities), n, seed))
