"""Sync health, conflicts and quarantine pages: what `syncd status`, `syncd conflicts` and
`syncd quarantine` show and do, through the console, with the CLI's audit entries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from syncd.app import Node, init_node
from syncd.console.app import create_app
from syncd.core.i18n import mask_id
from syncd.core.policy import parse_policy
from syncd.core.settings import load_settings
from syncd.hub import console_users
from syncd.hub.apply import apply_pending
from syncd.hub.audit import verify
from syncd.hub.nodes import rename_node
from syncd.store import hub_tables as h
from tests.conftest import POLICY as POLICY_PATH
from tests.console.conftest import (
    PASSWORD,
    ROLES,
    Console,
    console_config,
    csrf_of,
    make_console,
    sign_in,
)
from tests.integration.test_apply import POLICY, WANG, actions, customer, golden_of, submit, up
from tests.integration.test_reports import T0, seed

NUMBER = WANG  # a customer the seeded province does not have: Ningbo's resident ID


def dispute(c: Console) -> int:
    """A real manual conflict through the apply path: two cities disagree on customer_type."""
    engine = c.node.engine
    submit(engine, "city-3301", [up(1, "customers", customer("X1", NUMBER))])
    submit(
        engine,
        "city-3302",
        [up(1, "customers", customer("Y1", NUMBER, customer_type="corporate", home_city="3302"))],
    )
    apply_pending(engine, c.node.policy)
    with engine.connect() as conn:
        (cid,) = conn.execute(
            sa.select(h.conflicts.c.conflict_id).where(h.conflicts.c.status == "open")
        ).scalars()
    return int(cid)


def status_of(c: Console, cid: int) -> str:
    with c.node.engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(h.conflicts.c.status).where(h.conflicts.c.conflict_id == cid)
            ).scalar_one()
        )


def post(client: TestClient, path: str, page: str, **data: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf_of(page), **data}, follow_redirects=False)


# --- sync health ---------------------------------------------------------------------------


def test_health_flags_the_city_that_never_synced(sqlite_console: Console) -> None:
    c = sqlite_console
    rename_node(c.node.engine, "city-3301", "杭州")
    with c.node.engine.begin() as conn:  # two cities heard from just now; 3303 never
        conn.execute(
            h.nodes.update()
            .where(h.nodes.c.node_id.in_(["city-3301", "city-3302"]))
            .values(last_seen_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
        )
    page = c.client("ops").get("/health")
    assert page.status_code == 200
    html = page.text
    assert 'id="health-table"' in html
    assert 'id="health-problems"' in html
    assert 'data-refresh-seconds="20"' in html
    assert "杭州" in html
    assert "city-3302" in html
    problems = html.split('id="health-problems"', 1)[1].split("</div>", 1)[0]
    assert "city-3303 silent: last contact never" in problems  # the words of `syncd status`
    assert "city-3301" not in problems
    assert "city-3302" not in problems
    row = html.split('data-node="city-3303"', 1)[1].split("</tr>", 1)[0]
    assert 'class="warn"' in html.split('data-node="city-3303"', 1)[1][:20]
    assert 'data-states="silent"' in row
    assert 'data-node="city-3301" class=""' in html
    # A city whose batches fail is a problem, in red, with its error.
    with c.node.engine.begin() as conn:
        conn.execute(
            h.nodes.update()
            .where(h.nodes.c.node_id == "city-3302")
            .values(failures=3, failing_since=T0, last_error="boom: disk full", retry_at=T0)
        )
    html = c.client("ops").get("/health").text
    problems = html.split('id="health-problems"', 1)[1].split("</div>", 1)[0]
    assert "city-3302 failing since 2026-03-01T09:00:00 (3 tries" in problems
    assert 'data-node="city-3302" class="bad"' in html
    assert "boom: disk full" in html.split('data-node="city-3302"', 1)[1].split("</tr>", 1)[0]
    for role in ("manager", "auditor", "steward"):
        assert c.client(role).get("/health").status_code == 403
    anonymous = c.anonymous().get("/health", follow_redirects=False)
    assert anonymous.status_code == 303
    assert "/signin" in anonymous.headers["location"]


# --- conflicts -----------------------------------------------------------------------------


def test_steward_resolves_a_conflict_as_the_cli_would(sqlite_console: Console) -> None:
    c = sqlite_console
    cid = dispute(c)
    steward, ops = c.client("steward"), c.client("ops")

    listing = ops.get("/conflicts")
    assert listing.status_code == 200
    assert 'id="conflicts-table"' in listing.text
    assert f'data-conflict="{cid}"' in listing.text
    assert mask_id(NUMBER) in listing.text
    assert NUMBER not in listing.text
    # Full ID numbers: never for ops; for a steward only with ?unmask=1, audited first.
    masked = ops.get("/conflicts?unmask=1").text
    assert NUMBER not in masked
    assert 'id="unmask-link"' not in masked
    assert actions(c.node.engine, "ids_unmasked") == []
    assert NUMBER not in steward.get(f"/conflicts/{cid}").text
    full = steward.get(f"/conflicts/{cid}?unmask=1").text
    assert NUMBER in full
    assert 'id="unmask-notice"' in full
    (seen,) = actions(c.node.engine, "ids_unmasked")
    assert seen["detail"]["console_user"] == "steward"
    assert seen["detail"]["report"] == "console conflict"
    assert c.client("manager").get("/conflicts").status_code == 403
    assert c.anonymous().get("/conflicts", follow_redirects=False).status_code == 303

    detail = ops.get(f"/conflicts/{cid}")
    assert detail.status_code == 200
    assert "conflict-resolve-form" not in detail.text
    assert "city-3301" in detail.text
    assert "corporate" in detail.text
    # ops may look, not act; nor may anyone without the form's token.
    assert (
        post(ops, f"/conflicts/{cid}/resolve", detail.text, source="city-3302").status_code == 403
    )
    page = steward.get(f"/conflicts/{cid}").text
    assert 'id="conflict-resolve-form"' in page
    assert 'id="conflict-resolve-submit"' in page
    forged = steward.post(
        f"/conflicts/{cid}/resolve", data={"source": "city-3302"}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert status_of(c, cid) == "open"
    assert actions(c.node.engine, "conflict_resolved") == []
    assert golden_of(c.node.engine, NUMBER)["customer_type"] == "individual"

    bad = post(steward, f"/conflicts/{cid}/resolve", page, source="__value__", value="company")
    assert bad.status_code == 400
    assert 'id="action-error"' in bad.text
    assert "customer_type" in bad.text
    assert status_of(c, cid) == "open"

    done = post(steward, f"/conflicts/{cid}/resolve", page, source="city-3302")
    assert done.status_code == 303
    assert done.headers["location"] == f"/conflicts/{cid}?done=resolved"
    shown = steward.get(done.headers["location"]).text
    assert 'id="action-notice"' in shown
    assert "corporate" in shown
    assert golden_of(c.node.engine, NUMBER)["customer_type"] == "corporate"
    assert status_of(c, cid) == "resolved"
    (entry,) = actions(c.node.engine, "conflict_resolved")
    assert entry["table_name"] == "customers"
    assert entry["detail"] == {
        "conflict_id": cid,
        "golden_id": entry["detail"]["golden_id"],
        "column": "customer_type",
        "rule": "manual",
        "value": "corporate",
        "took": "city-3302",
        "was": "individual",
        "by": "steward",
        "os_user": "console:steward",
    }
    with c.node.engine.connect() as conn:
        assert verify(conn).ok
    again = post(steward, f"/conflicts/{cid}/resolve", page, source="city-3301")
    assert again.status_code == 400
    assert "is resolved, not open" in again.text


def test_four_eyes_needs_a_second_steward(tmp_path: Path) -> None:
    c = make_console(
        f"sqlite:///{tmp_path / 'hub.db'}", tmp_path, "[conflicts]\nfour_eyes = true\n"
    )
    try:
        console_users.add_user(c.node.engine, "steward2", ["steward"], PASSWORD)
        cid = dispute(c)
        first = c.client("steward")
        page = first.get(f"/conflicts/{cid}").text
        assert 'id="four-eyes-notice"' in page
        proposed = post(
            first, f"/conflicts/{cid}/resolve", page, source="__value__", value="corporate"
        )
        assert proposed.status_code == 303
        page = first.get(proposed.headers["location"]).text
        assert 'id="action-notice"' in page
        assert 'id="conflict-approve-submit"' in page
        assert status_of(c, cid) == "proposed"
        assert golden_of(c.node.engine, NUMBER)["customer_type"] == "individual"
        (proposal,) = actions(c.node.engine, "conflict_proposed")
        assert (proposal["detail"]["by"], proposal["detail"]["os_user"]) == (
            "steward",
            "console:steward",
        )
        own = post(first, f"/conflicts/{cid}/approve", page)
        assert own.status_code == 409
        error = own.text.split('id="action-error"', 1)[1].split("</p>", 1)[0]
        assert "a second steward" in error
        assert status_of(c, cid) == "proposed"

        second = sign_in(c.anonymous(), "steward2")
        page = second.get(f"/conflicts/{cid}").text
        approved = post(second, f"/conflicts/{cid}/approve", page)
        assert approved.status_code == 303
        assert golden_of(c.node.engine, NUMBER)["customer_type"] == "corporate"
        (entry,) = actions(c.node.engine, "conflict_resolved")
        detail = entry["detail"]
        assert (detail["by"], detail["os_user"]) == ("steward2", "console:steward2")
        assert (detail["proposed_by"], detail["proposed_os_user"]) == (
            "steward",
            "console:steward",
        )
    finally:
        for client in c.clients:
            client.__exit__(None, None, None)
        c.node.close()


# --- quarantine ----------------------------------------------------------------------------


@pytest.fixture
def relaxed_console(tmp_path: Path) -> Iterator[Console]:
    """A hub whose policy allows risk levels up to 10, as after a policy change: rows the
    reference policy quarantined (risk level over 5) may now be retried."""
    doc = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))
    doc["tables"]["customers"]["columns"]["risk_level"] = {"type": "integer", "min": 1, "max": 10}
    relaxed = tmp_path / "relaxed.yaml"
    relaxed.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    parse_policy(doc, str(relaxed))
    path = console_config(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path / "hub.toml")
    path.write_text(path.read_text().replace(str(POLICY_PATH), str(relaxed)), encoding="utf-8")
    settings = load_settings(path)
    init_node(settings)
    node = Node.open(settings)
    with node.engine.begin() as conn:
        seed(conn, node.policy)
    for role in ROLES:
        console_users.add_user(node.engine, role, [role], PASSWORD)
    c = Console(settings, node, create_app(settings, node), [])
    yield c
    for client in c.clients:
        client.__exit__(None, None, None)
    node.close()


def quarantine_statuses(c: Console) -> list[str]:
    with c.node.engine.connect() as conn:
        query = sa.select(h.quarantine.c.status).order_by(h.quarantine.c.quarantine_id)
        return list(conn.execute(query).scalars())


def test_steward_retries_the_quarantine(relaxed_console: Console) -> None:
    c = relaxed_console
    engine = c.node.engine
    changes = [
        up(1, "customers", customer("Q1", NUMBER, risk_level=8)),
        up(2, "customers", customer("Q2", "330102198001010011", risk_level=12)),
    ]
    submit(engine, "city-3301", changes)
    apply_pending(engine, POLICY)  # quarantined under the reference policy
    assert quarantine_statuses(c) == ["open", "open"]
    first, second = (1, 2)

    ops = c.client("ops")
    listing = ops.get("/quarantine")
    assert listing.status_code == 200
    assert 'id="quarantine-table"' in listing.text
    assert "risk_level: input should be less than or equal to 5" in listing.text
    assert 'id="quarantine-retry"' not in listing.text
    assert post(ops, "/quarantine/retry", listing.text).status_code == 403
    detail = ops.get(f"/quarantine/{first}").text
    assert mask_id(NUMBER) in detail
    assert NUMBER not in detail
    assert "quarantine-retry-one" not in detail

    steward = c.client("steward")
    page = steward.get("/quarantine").text
    assert 'id="quarantine-retry"' in page
    forged = steward.post("/quarantine/retry", follow_redirects=False)
    assert forged.status_code == 403
    assert quarantine_statuses(c) == ["open", "open"]
    assert actions(engine, "quarantine_retried") == []

    done = post(steward, "/quarantine/retry", page)
    assert done.status_code == 303
    assert done.headers["location"] == "/quarantine?done=retry"
    shown = steward.get(done.headers["location"]).text
    notice = shown.split('id="action-notice"', 1)[1].split("</div>", 1)[0]
    assert "risk_level: input should be less than or equal to 10" in notice
    assert quarantine_statuses(c) == ["retried", "open"]
    assert golden_of(engine, NUMBER)["risk_level"] == 8
    (entry,) = actions(engine, "quarantine_retried")
    assert entry["node_id"] == "city-3301"
    assert entry["detail"] == {
        "quarantine_id": first,
        "seq": 1,
        "applied": True,
        "by": "steward",
        "os_user": "console:steward",
    }

    assert 'id="unmask-link"' not in shown  # the list shows keys and reasons: no ID numbers
    full = steward.get(f"/quarantine/{first}?unmask=1").text
    assert NUMBER in full
    (seen,) = actions(engine, "ids_unmasked")
    assert seen["detail"]["report"] == "console quarantine entry"
    assert seen["detail"]["arguments"] == {"quarantine_id": first}

    one = steward.get(f"/quarantine/{second}").text
    retried = post(steward, f"/quarantine/{second}/retry", one)
    assert retried.status_code == 303
    assert 'id="action-notice"' in steward.get(retried.headers["location"]).text
    assert quarantine_statuses(c) == ["retried", "open"]
    twice = post(steward, f"/quarantine/{first}/retry", one)
    assert twice.headers["location"] == "/quarantine?done=retry"
    assert "is retried, not open" in steward.get(twice.headers["location"]).text
    assert c.client("manager").get("/quarantine").status_code == 403
    assert c.anonymous().get("/quarantine/1", follow_redirects=False).status_code == 303
