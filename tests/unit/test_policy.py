"""Sync policy: the reference file loads; every kind of mistake names file, table and key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.core.errors import PolicyError
from syncd.core.policy import MergeRule, load_policy, parse_policy

REF = Path(__file__).resolve().parents[2] / "schemas" / "crm.yaml"


@pytest.fixture
def doc() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(REF.read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def error(doc: dict[str, Any]) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc, "crm.yaml")
    return info.value


def test_reference_policy() -> None:
    p = load_policy(REF)
    assert {t.name for t in p.public_tables} == {
        "customers",
        "deposit_accounts",
        "loans",
        "intermediary_business",
    }
    assert {n for n, t in p.tables.items() if not t.is_public} == {
        "opportunities",
        "sales_activities",
        "service_activities",
    }
    c = p.table("customers")
    assert "rm_notes" not in c.public_columns
    assert c.identity == ("id_type", "id_number")
    assert c.filter_columns == ("status",)
    assert c.merge.rule_for("risk_tags").rule is MergeRule.UNION
    assert c.merge.rule_for("phone").rule is MergeRule.LATEST


def test_unknown_key(doc: dict[str, Any]) -> None:
    doc["tables"]["customers"]["exclued"] = ["rm_notes"]
    e = error(doc)
    assert e.key == "tables.customers.exclued"
    assert e.reason == "unknown key"
    assert str(e).startswith("crm.yaml: ")


def test_sql_injection_in_table_name(doc: dict[str, Any]) -> None:
    doc["tables"]["x; drop table customers"] = doc["tables"].pop("loans")
    e = error(doc)
    assert "not a plain SQL identifier" in e.reason


def test_sql_injection_in_column_name(doc: dict[str, Any]) -> None:
    doc["tables"]["loans"]["columns"]['balance" --'] = {"type": "integer"}
    e = error(doc)
    assert e.key.startswith("tables.loans.columns")
    assert "not a plain SQL identifier" in e.reason


def test_unknown_type(doc: dict[str, Any]) -> None:
    doc["tables"]["loans"]["columns"]["balance"]["type"] = "money"
    e = error(doc)
    assert e.key == "tables.loans.columns.balance.type"


def test_bad_class(doc: dict[str, Any]) -> None:
    doc["tables"]["loans"]["class"] = "secret"
    assert error(doc).key == "tables.loans.class"


def test_excluded_column_not_declared(doc: dict[str, Any]) -> None:
    doc["tables"]["customers"]["exclude"] = ["rm_note"]
    e = error(doc)
    assert e.key == "tables.customers.exclude"
    assert "'rm_note' is not declared" in e.reason


def test_primary_key_cannot_be_excluded(doc: dict[str, Any]) -> None:
    doc["tables"]["loans"]["exclude"] = ["loan_id"]
    assert "cannot be excluded" in error(doc).reason


def test_filter_on_excluded_column(doc: dict[str, Any]) -> None:
    doc["tables"]["customers"]["exclude"] = ["rm_notes", "status"]
    e = error(doc)
    assert e.key == "tables.customers.filter"
    assert "excluded" in e.reason


def test_filter_operator_needs_value(doc: dict[str, Any]) -> None:
    doc["tables"]["customers"]["filter"] = [{"column": "status", "op": "ne"}]
    e = error(doc)
    assert e.key == "tables.customers.filter[0]"
    assert "takes one 'value'" in e.reason


def test_filter_is_not_raw_sql(doc: dict[str, Any]) -> None:
    doc["tables"]["customers"]["filter"] = "status <> 'prospect'"
    assert error(doc).key == "tables.customers.filter"


def test_unknown_merge_rule(doc: dict[str, Any]) -> None:
    doc["tables"]["customers"]["merge"]["fields"]["phone"] = "newest"
    assert error(doc).key.startswith("tables.customers.merge.fields.phone")


def test_merge_rule_type_mismatch(doc: dict[str, Any]) -> None:
    doc["tables"]["customers"]["merge"]["fields"]["name"] = "sum"
    e = error(doc)
    assert e.key == "tables.customers.merge.fields.name"
    assert "numeric" in e.reason


def test_merge_without_identity(doc: dict[str, Any]) -> None:
    doc["tables"]["loans"]["merge"] = {"fields": {"balance": "max"}}
    assert "need an identity" in error(doc).reason


def test_unknown_check(doc: dict[str, Any]) -> None:
    doc["tables"]["customers"]["checks"][0]["check"] = "cn_passport"
    assert error(doc).key == "tables.customers.checks[0].check"


def test_parent_not_declared(doc: dict[str, Any]) -> None:
    doc["tables"]["loans"]["parent"]["table"] = "clients"
    e = error(doc)
    assert e.key == "tables.loans.parent"
    assert "'clients' is not declared" in e.reason


def test_public_table_with_local_parent(doc: dict[str, Any]) -> None:
    doc["tables"]["loans"]["parent"] = {
        "table": "opportunities",
        "columns": {"customer_id": "opportunity_id"},
    }
    assert "local parent" in error(doc).reason


def test_reserved_column(doc: dict[str, Any]) -> None:
    doc["tables"]["loans"]["columns"]["origin_node"] = {"type": "string"}
    assert "reserved" in error(doc).reason


def test_not_a_mapping() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(["tables"], "p.yaml")
    assert info.value.key == "(top level)"


def test_bad_yaml(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("tables: [unclosed", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(p)
    assert info.value.key == "(syntax)"
    assert str(p) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "none.yaml")
    assert info.value.key == "(file)"


@pytest.mark.parametrize("name", ["phone\n", "phone\r\n"])
def test_identifier_with_trailing_newline(doc: dict[str, Any], name: str) -> None:
    # `$` matches before a final newline; the identifier check must anchor at the very end.
    doc["tables"]["customers"]["columns"][name] = {"type": "string"}
    assert "not a plain SQL identifier" in error(doc).reason


def test_table_name_with_trailing_newline(doc: dict[str, Any]) -> None:
    doc["tables"]["loans\n"] = doc["tables"].pop("loans")
    assert "not a plain SQL identifier" in error(doc).reason


def test_derived_values_live_on_the_model_and_never_change_what_it_is() -> None:
    """Validators, merge plans and hub tables are built once per table or policy object and
    kept on it: no module cache keyed by id(), equality and dumps unaffected, copies rebuild."""
    from syncd.core.policy import load_policy
    from tests.conftest import POLICY as POLICY_FILE

    first, second = load_policy(POLICY_FILE), load_policy(POLICY_FILE)
    built: list[int] = []

    def build() -> object:
        built.append(1)
        return object()

    table = first.table("customers")
    made = table.derived("thing", build)
    assert table.derived("thing", build) is made
    assert len(built) == 1
    assert first == second
    assert first.table("customers") == second.table("customers")
    assert "thing" not in table.model_dump_json()
    copy = table.model_copy(update={"description": "changed"})
    assert copy.derived("thing", build) is not made
    assert len(built) == 2
