"""Quarantine retry and the manual conflict queue on real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from syncd.core.errors import UsageError
from syncd.core.policy import Policy, parse_policy
from syncd.hub import conflicts, quarantine
from syncd.hub.apply import apply_pending
from syncd.hub.audit import Action, verify
from syncd.store import hub_tables as h
from tests.conftest import POLICY as POLICY_PATH
from tests.integration.test_apply import (
    LI,
    POLICY,
    ZHANG,
    actions,
    add_node,
    customer,
    golden_of,
    loan,
    make_hub,
    open_conflicts,
    rm,
    sources,
    submit,
    two_cities,
    up,
)


@pytest.fixture
def hub(db_url: str) -> Iterator[Engine]:
    engine = make_hub(db_url)
    yield engine
    engine.dispose()


def relaxed_policy(**changes: Any) -> Policy:
    """The reference policy with customers' fields changed, e.g. a looser risk_level."""
    doc = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))
    doc["tables"]["customers"]["columns"].update(changes)
    return parse_policy(doc, "relaxed.yaml")


def retry_outcome(engine: Engine, policy: Policy, qid: int | None = None) -> quarantine.RetryResult:
    return quarantine.retry(engine, policy, qid)


def entries(engine: Engine, status: str | None = None) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return quarantine.list_entries(conn, status=status)


# --- quarantine ---------------------------------------------------------------------------


def test_list_and_show_quarantine(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    submit(hub, "hz", [up(1, "customers", customer("c1", LI, risk_level=8))])
    apply_pending(hub, POLICY)
    with hub.connect() as conn:
        (entry,) = quarantine.list_entries(conn, node="hz", table="customers")
        assert quarantine.list_entries(conn, node="nb") == []
        assert quarantine.list_entries(conn, status="retried") == []
        shown = quarantine.show(conn, entry["quarantine_id"])
        with pytest.raises(UsageError, match="quarantine entry 999 does not exist"):
            quarantine.show(conn, 999)
    assert shown["row_data"]["risk_level"] == 8
    assert shown["op"] == "upsert"
    assert shown["seq"] == 1


def test_retry_applies_a_row_the_new_policy_accepts(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    submit(
        hub,
        "hz",
        [
            up(1, "customers", customer("c1", LI, risk_level=8)),
            up(2, "customers", customer("c2", ZHANG, risk_level=12)),
        ],
    )
    apply_pending(hub, POLICY)
    first, second = (e["quarantine_id"] for e in entries(hub))

    # Under the same policy nothing changes, and the reason is reported.
    result = retry_outcome(hub, POLICY)
    assert result.retried == ()
    assert result.still_invalid[first] == "risk_level: input should be less than or equal to 5"
    assert [e["status"] for e in entries(hub)] == ["open", "open"]

    looser = relaxed_policy(risk_level={"type": "integer", "min": 1, "max": 10})
    result = retry_outcome(hub, looser)
    assert result.retried == (first,)
    assert result.still_invalid == {second: "risk_level: input should be less than or equal to 10"}
    assert [(s["customer_id"], s["risk_level"]) for s in sources(hub)] == [("c1", 8)]
    assert golden_of(hub, LI)["risk_level"] == 8
    assert [e["status"] for e in entries(hub)] == ["retried", "open"]
    (retried,) = actions(hub, Action.QUARANTINE_RETRIED)
    assert retried["detail"]["quarantine_id"] == first
    applied = actions(hub, Action.ROW_APPLIED)
    assert applied[-1]["row_key"] == {"customer_id": "c1"}
    with hub.connect() as conn:
        assert verify(conn).ok


def test_retry_of_a_superseded_version_is_stale(hub: Engine) -> None:
    add_node(hub, "hz", "3301")
    submit(hub, "hz", [rm(5, "loans", {"loan_id": "l1"})], first_seq=1)
    # An older version arriving later is checked before it is found stale.
    submit(hub, "hz", [up(3, "loans", loan("l1", "c1", overdue_days=-3))], first_seq=6, last_seq=6)
    apply_pending(hub, POLICY)
    (entry,) = entries(hub)
    assert entry["status"] == "open"
    relaxed = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))
    relaxed["tables"]["loans"]["columns"]["overdue_days"] = {"type": "integer"}
    result = retry_outcome(hub, parse_policy(relaxed, "relaxed.yaml"), entry["quarantine_id"])
    assert result.superseded == (entry["quarantine_id"],)
    (ln,) = sources(hub, "loans")
    assert (ln["_deleted"], ln["_seq"], ln["product"]) == (True, 5, None)
    assert entries(hub)[0]["status"] == "superseded"
    with pytest.raises(UsageError, match="is superseded, not open"):
        retry_outcome(hub, POLICY, entry["quarantine_id"])
    with pytest.raises(UsageError, match="quarantine entry 42 does not exist"):
        retry_outcome(hub, POLICY, 42)


# --- conflicts ----------------------------------------------------------------------------


def disputed_customer(hub: Engine) -> dict[str, Any]:
    two_cities(hub)
    submit(hub, "hz", [up(1, "customers", customer("a", ZHANG, customer_type="individual"))])
    submit(
        hub,
        "nb",
        [up(1, "customers", customer("b", ZHANG, customer_type="corporate", home_city="3302"))],
    )
    apply_pending(hub, POLICY)
    (conflict,) = open_conflicts(hub)
    return conflict


def test_show_lists_each_sources_value(hub: Engine) -> None:
    conflict = disputed_customer(hub)
    with hub.connect() as conn:
        shown = conflicts.show(conn, conflict["conflict_id"])
        with pytest.raises(UsageError, match="conflict 77 does not exist"):
            conflicts.show(conn, 77)
    assert [(s["node_id"], s["city_code"], s["value"]) for s in shown["sources"]] == [
        ("hz", "3301", "individual"),
        ("nb", "3302", "corporate"),
    ]
    assert shown["status"] == "open"


def test_resolve_by_taking_a_nodes_value(hub: Engine) -> None:
    conflict = disputed_customer(hub)
    cid = conflict["conflict_id"]
    assert golden_of(hub, ZHANG)["customer_type"] == "individual"

    result = conflicts.resolve(hub, POLICY, cid, take_node="nb", by="steward-li")
    assert result["value"] == "corporate"
    assert golden_of(hub, ZHANG)["customer_type"] == "corporate"
    assert open_conflicts(hub) == []
    with hub.connect() as conn:
        (done,) = conflicts.list_conflicts(conn, status="resolved")
        assert verify(conn).ok
    assert done["resolved_by"] == "steward-li"
    assert done["resolution"] == {
        "value": "corporate",
        "candidates": {"hz": "individual", "nb": "corporate"},
        "took": "nb",
    }
    (audited,) = actions(hub, Action.CONFLICT_RESOLVED)
    assert audited["detail"]["by"] == "steward-li"
    assert audited["detail"]["value"] == "corporate"
    assert audited["detail"]["rule"] == "manual"

    # The resolution holds while the cities keep these values ...
    submit(hub, "hz", [up(2, "customers", customer("a", ZHANG, phone="1"))])
    apply_pending(hub, POLICY)
    assert open_conflicts(hub) == []
    assert golden_of(hub, ZHANG)["customer_type"] == "corporate"
    # ... and a new disagreement is a new conflict.
    submit(
        hub,
        "nb",
        [
            up(
                2,
                "customers",
                customer("b", ZHANG, customer_type="corporate", home_city="3302", phone="2"),
            )
        ],
    )
    add_node(hub, "wz", "3303")
    submit(hub, "wz", [up(1, "customers", customer("w", ZHANG, customer_type="individual"))])
    apply_pending(hub, POLICY)
    (reopened,) = open_conflicts(hub)
    assert reopened["candidates"] == {"hz": "individual", "nb": "corporate", "wz": "individual"}


def test_resolve_with_a_value(hub: Engine) -> None:
    cid = disputed_customer(hub)["conflict_id"]
    with pytest.raises(UsageError, match="customer_type: input should be 'individual' or"):
        conflicts.resolve(hub, POLICY, cid, value="company", by="s")
    conflicts.resolve(hub, POLICY, cid, value="corporate", by="s")
    assert golden_of(hub, ZHANG)["customer_type"] == "corporate"
    with pytest.raises(UsageError, match=f"conflict {cid} is resolved, not open"):
        conflicts.resolve(hub, POLICY, cid, value="individual", by="s")


def test_resolve_usage_errors(hub: Engine) -> None:
    cid = disputed_customer(hub)["conflict_id"]
    with pytest.raises(UsageError, match="exactly one of --take NODE or --value VALUE"):
        conflicts.resolve(hub, POLICY, cid, take_node="hz", value="corporate", by="s")
    with pytest.raises(UsageError, match="exactly one of"):
        conflicts.resolve(hub, POLICY, cid, by="s")
    with pytest.raises(UsageError, match="node 'sz' holds no value in conflict"):
        conflicts.resolve(hub, POLICY, cid, take_node="sz", by="s")
    with pytest.raises(UsageError, match="conflict 4242 does not exist"):
        conflicts.resolve(hub, POLICY, 4242, take_node="hz", by="s")
    assert len(open_conflicts(hub)) == 1
    assert actions(hub, Action.CONFLICT_RESOLVED) == []


def test_deleting_a_disputing_source_supersedes_the_conflict(hub: Engine) -> None:
    disputed_customer(hub)
    submit(hub, "nb", [rm(2, "customers", {"customer_id": "b"})])
    apply_pending(hub, POLICY)
    assert open_conflicts(hub) == []
    with hub.connect() as conn:
        statuses = conn.execute(sa.select(h.conflicts.c.status)).scalars().all()
    assert statuses == ["superseded"]
    assert golden_of(hub, ZHANG)["customer_type"] == "individual"


# --- who resolves, and four eyes ------------------------------------------------------------


def test_resolve_records_the_name_and_the_os_user(hub: Engine) -> None:
    cid = disputed_customer(hub)["conflict_id"]
    steward = conflicts.Steward("Li Na", "lina")
    result = conflicts.resolve(hub, POLICY, cid, take_node="nb", by=steward)
    assert (result["by"], result["os_user"], result["status"]) == ("Li Na", "lina", "resolved")
    with hub.connect() as conn:
        (done,) = conflicts.list_conflicts(conn, status="resolved")
    assert (done["resolved_by"], done["resolved_os_user"]) == ("Li Na", "lina")
    assert done["proposed_by"] is None
    (audited,) = actions(hub, Action.CONFLICT_RESOLVED)
    assert (audited["detail"]["by"], audited["detail"]["os_user"]) == ("Li Na", "lina")
    assert "proposed_by" not in audited["detail"]


def test_four_eyes_resolution_waits_for_a_second_steward(hub: Engine) -> None:
    cid = disputed_customer(hub)["conflict_id"]
    li, wang = conflicts.Steward("Li Na", "lina"), conflicts.Steward("Wang Wei", "wangwei")
    proposed = conflicts.resolve(hub, POLICY, cid, value="corporate", by=li, four_eyes=True)
    assert proposed["status"] == "proposed"
    # Nothing changes until it is approved; the proposal is audited.
    assert golden_of(hub, ZHANG)["customer_type"] == "individual"
    assert actions(hub, Action.CONFLICT_RESOLVED) == []
    (proposal,) = actions(hub, Action.CONFLICT_PROPOSED)
    assert (proposal["detail"]["by"], proposal["detail"]["value"]) == ("Li Na", "corporate")
    with hub.connect() as conn:
        (waiting,) = conflicts.list_conflicts(conn, status="proposed")
    assert (waiting["proposed_by"], waiting["proposed_os_user"]) == ("Li Na", "lina")
    assert waiting["proposed_at"] is not None
    # While proposed, apply keeps the conflict (no duplicate opens) ...
    submit(hub, "hz", [up(2, "customers", customer("a", ZHANG, phone="1"))])
    apply_pending(hub, POLICY)
    with hub.connect() as conn:
        assert [c["status"] for c in conflicts.list_conflicts(conn, status=None)] == ["proposed"]
    # ... it cannot be resolved again, nor approved by the proposer under either identity.
    with pytest.raises(UsageError, match="is proposed, not open"):
        conflicts.resolve(hub, POLICY, cid, value="individual", by=wang)
    for same in (li, conflicts.Steward("Li Na", "other"), conflicts.Steward("Someone", "lina")):
        with pytest.raises(UsageError, match="a second steward"):
            conflicts.approve(hub, POLICY, cid, by=same)

    approved = conflicts.approve(hub, POLICY, cid, by=wang)
    assert (approved["status"], approved["by"], approved["value"]) == (
        "resolved",
        "Wang Wei",
        "corporate",
    )
    assert golden_of(hub, ZHANG)["customer_type"] == "corporate"
    (audited,) = actions(hub, Action.CONFLICT_RESOLVED)
    assert {k: audited["detail"][k] for k in ("by", "os_user", "proposed_by", "value")} == {
        "by": "Wang Wei",
        "os_user": "wangwei",
        "proposed_by": "Li Na",
        "value": "corporate",
    }
    with hub.connect() as conn:
        (done,) = conflicts.list_conflicts(conn, status="resolved")
        assert verify(conn).ok
    assert (done["resolved_by"], done["proposed_by"]) == ("Wang Wei", "Li Na")
    with pytest.raises(UsageError, match="is resolved, not proposed"):
        conflicts.approve(hub, POLICY, cid, by=wang)


def test_a_proposed_conflict_is_superseded_when_its_sources_agree(hub: Engine) -> None:
    cid = disputed_customer(hub)["conflict_id"]
    conflicts.resolve(
        hub, POLICY, cid, value="corporate", by=conflicts.Steward("a", "a"), four_eyes=True
    )
    submit(hub, "nb", [rm(2, "customers", {"customer_id": "b"})])
    apply_pending(hub, POLICY)
    with hub.connect() as conn:
        assert [c["status"] for c in conflicts.list_conflicts(conn, status=None)] == ["superseded"]
    with pytest.raises(UsageError, match="is superseded, not proposed"):
        conflicts.approve(hub, POLICY, cid, by=conflicts.Steward("b", "b"))
