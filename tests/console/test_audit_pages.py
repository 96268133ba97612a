"""The auditor's pages on a real hub: the log with its filters and pages, one entry with its
row decisions, verifying the chain (intact, wrong anchor, tampered), the export as
`syncd audit export` writes it, and who may open what."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from syncd.hub import audit_query
from syncd.hub.apply import apply_pending
from syncd.hub.audit import head
from syncd.hub.nodes import rename_node
from syncd.store import hub_tables as h
from tests.console.conftest import Console, csrf_of, make_console
from tests.integration.test_apply import ZHANG, add_node, customer, submit, up

NEW_CITY = "city-3305"
OTHER_CITY = "city-3306"
MASKED = ZHANG[:6] + "********" + ZHANG[-4:]


def _apply_batches(console: Console) -> None:
    """Two new cities send one customer, as individual and as corporate: rows applied, a
    conflict opened (its key holds the ID number), batches applied — real entries of apply."""
    engine = console.node.engine
    add_node(engine, NEW_CITY, "3305")
    add_node(engine, OTHER_CITY, "3306")
    rename_node(engine, NEW_CITY, "温州")
    submit(engine, NEW_CITY, [up(1, "customers", customer("E1", ZHANG, home_city="3305"))])
    corporate = customer("F1", ZHANG, customer_type="corporate", home_city="3306")
    submit(engine, OTHER_CITY, [up(1, "customers", corporate)])
    summary = apply_pending(engine, console.node.policy)
    assert (summary.applied, summary.conflicts_opened) == (2, 1)


def _failed_signin(client: TestClient, username: str) -> None:
    page = client.get("/signin")
    answer = client.post(
        "/signin",
        data={
            "username": username,
            "password": "not-the-password",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert answer.status_code == 401


def _rows(html: str) -> list[tuple[str, str]]:
    """(line id, action) of each line of the audit table."""
    return re.findall(r'<tr data-entry="([\d.]+)" data-action="([a-z_]+)"', html)


def _lines(console: Console, **criteria: Any) -> list[dict[str, Any]]:
    with console.node.engine.connect() as conn:
        return audit_query.query(conn, **criteria)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One SQLite hub for the tests that only add entries the others do not count on."""
    tmp = tmp_path_factory.mktemp("audit-pages")
    console = make_console(f"sqlite:///{tmp / 'hub.db'}", tmp)
    _failed_signin(console.anonymous(), "nobody")
    _failed_signin(console.anonymous(), "auditor")
    _apply_batches(console)
    yield console
    for client in console.clients:
        client.__exit__(None, None, None)
    console.node.close()


@pytest.fixture(scope="module")
def auditor(audited: Console) -> TestClient:
    """The auditor, reading in English (the sentences checked below are the English ones;
    tests/unit/test_i18n.py checks that each has its Chinese)."""
    return english(audited.client("auditor"))


def english(client: TestClient) -> TestClient:
    token = csrf_of(client.get("/signin").text)
    client.post("/lang", data={"lang": "en", "csrf_token": token})
    return client


def test_the_log_shows_real_entries_readably(audited: Console, auditor: TestClient) -> None:
    page = auditor.get("/audit")
    assert page.status_code == 200
    html = page.text
    for element in ("audit-table", "audit-filters", "audit-export", "audit-verify-form"):
        assert f'id="{element}"' in html
    shown = _rows(html)
    actions = [a for _, a in shown]
    # Users added by the fixture, two failed sign-ins, the auditor's sign-in, the batch.
    assert actions.count("console_user_changed") == 4
    assert actions.count("console_signin_failed") == 2
    assert "console_signin" in actions
    for action in ("node_renamed", "row_decisions", "row_applied", "conflict_opened"):
        assert action in actions
    assert actions.index("console_user_changed") < actions.index("console_signin")  # newest last
    # One line per row decision: the covered row_applied shows as ENTRY.ORD.
    assert any(i.endswith(".1") and a == "row_applied" for i, a in shown)
    # The console's own entries in a sentence; the city by its name.
    assert "failed sign-in as nobody from testclient" in html
    assert "(no such user)" in html
    assert "auditor signed in from testclient" in html
    assert "console user steward: added with roles" in html
    assert f"温州 ({NEW_CITY})" in html
    # The conflict's key holds 张三's ID number: masked unless asked for.
    assert ZHANG not in html
    assert MASKED in html


def test_unmasking_is_audited_first(audited: Console, auditor: TestClient) -> None:
    html = auditor.get("/audit", params={"unmask": "1", "action": "conflict_opened"}).text
    assert ZHANG in html
    assert 'id="audit-unmasked"' in html
    entry = _lines(audited, action="ids_unmasked")[-1]
    assert entry["detail"]["console_user"] == "auditor"
    assert entry["detail"]["report"] == "console audit log"
    assert entry["detail"]["arguments"]["action"] == "conflict_opened"
    assert entry["detail"]["rows"] == 1
    # The record of the view keeps a typed ID number masked.
    params = {"unmask": "1", "id_number": ZHANG, "table": "customers"}
    assert ZHANG in auditor.get("/audit", params=params).text
    entry = _lines(audited, action="ids_unmasked")[-1]
    assert entry["detail"]["arguments"]["id_number"] == MASKED
    # ... and shows readably, filterable by its action.
    html = auditor.get("/audit", params={"action": "ids_unmasked"}).text
    assert {a for _, a in _rows(html)} == {"ids_unmasked"}
    assert "auditor (console) saw full ID numbers: console audit log, 1 rows" in html
    assert ZHANG not in html


def test_filters_as_the_cli_offers_them(audited: Console, auditor: TestClient) -> None:

    def shown(**params: str) -> list[tuple[str, str]]:
        answer = auditor.get("/audit", params=params)
        assert answer.status_code == 200, answer.text
        return _rows(answer.text)

    assert {a for _, a in shown(action="console_signin_failed")} == {"console_signin_failed"}
    assert len(shown(action="console_signin_failed")) == 2
    by_node = shown(node=NEW_CITY)
    assert {a for _, a in by_node} == {
        "node_renamed",
        "row_decisions",
        "row_applied",
        "batch_applied",
    }
    by_batch = shown(batch="1")
    assert [a for _, a in by_batch] == ["row_decisions", "row_applied", "batch_applied"]
    assert [i for i, _ in by_batch] == [i for i, _ in by_node][1:]
    assert {a for _, a in shown(table="customers")} >= {"row_applied", "conflict_opened"}
    assert [a for _, a in shown(key='{"customer_id": "E1"}')] == ["row_applied"]
    assert {a for _, a in shown(id_number=ZHANG, table="customers")} == {
        "row_applied",
        "conflict_opened",
    }
    assert shown(since="2000-01-01", until="2000-01-02") == []
    assert len(shown(since="2000-01-01")) == len(shown())
    # The same lines as `audit log` reads.
    cli = _lines(audited, node=NEW_CITY)
    assert [i for i, _ in by_node] == [
        str(e["entry_id"]) if not e["ord"] else f"{e['entry_id']}.{e['ord']}" for e in cli
    ]
    # A bad filter says why, in the page.
    answer = auditor.get("/audit", params={"since": "yesterday"})
    assert answer.status_code == 200
    assert "--since 'yesterday': expected an ISO date or time" in unescape(answer.text)


def test_pages_older_and_newer(audited: Console, auditor: TestClient) -> None:
    every = [i for i, _ in _rows(auditor.get("/audit", params={"limit": "500"}).text)]
    assert len(every) > 10
    first = auditor.get("/audit", params={"limit": "5"}).text
    assert [i for i, _ in _rows(first)] == every[-5:]
    assert f"{len(every) - 5} older matching lines not shown." in first
    assert 'id="audit-newer"' not in first
    assert 'id="audit-newest"' not in first
    older = re.search(r'href="([^"]+)" id="audit-older"', first)
    assert older
    second = auditor.get(unescape(older[1])).text
    assert [i for i, _ in _rows(second)] == every[-10:-5]
    newer = re.search(r'href="([^"]+)" id="audit-newer"', second)
    assert newer
    assert [i for i, _ in _rows(auditor.get(unescape(newer[1])).text)] == every[-5:]
    # The oldest page says nothing more is left; newer goes back up one page.
    last = auditor.get("/audit", params={"limit": "5", "before": every[5]}).text
    assert [i for i, _ in _rows(last)] == every[:5]
    assert 'id="audit-older"' not in last
    assert 'id="audit-more"' not in last
    newer = re.search(r'href="([^"]+)" id="audit-newer"', last)
    assert newer
    assert [i for i, _ in _rows(auditor.get(unescape(newer[1])).text)] == every[5:10]


def test_an_entry_with_the_row_decisions_it_covers(audited: Console, auditor: TestClient) -> None:
    (covering,) = [e for e in _lines(audited, action="row_decisions") if e["node_id"] == NEW_CITY]
    page = auditor.get(f"/audit/{covering['entry_id']}")
    assert page.status_code == 200
    html = page.text
    assert covering["entry_hash"] in html
    assert 'id="audit-entry-rows"' in html
    assert f'data-entry="{covering["entry_id"]}.1"' in html
    assert "E1" in html
    assert auditor.get("/audit/999999").status_code == 404
    (conflict,) = _lines(audited, action="conflict_opened")
    html = auditor.get(f"/audit/{conflict['entry_id']}").text
    assert ZHANG not in html
    assert MASKED in html


def test_verify_intact_wrong_anchor_and_tampered(sqlite_console: Console) -> None:
    auditor = english(sqlite_console.client("auditor"))
    form = auditor.get("/audit/verify")
    assert form.status_code == 200
    for element in ("audit-verify-form", "audit-verify-anchor", "audit-verify-submit"):
        assert f'id="{element}"' in form.text
    with sqlite_console.node.engine.connect() as conn:
        head_id, head_hash = head(conn)
    anchor = f"{head_id}:{head_hash}"
    assert anchor in form.text  # the head to keep
    token = csrf_of(form.text)

    ok = auditor.post("/audit/verify", data={"anchor": anchor, "csrf_token": token})
    assert ok.status_code == 200
    assert 'id="audit-verify-result"' in ok.text
    assert 'data-ok="true"' in ok.text
    assert f"{head_id} entries checked, head {anchor}" in ok.text

    wrong = f"{head_id}:{'0' * 64}"
    bad = auditor.post("/audit/verify", data={"anchor": wrong, "csrf_token": token})
    assert 'data-ok="false"' in bad.text
    assert f"BROKEN at entry {head_id}" in bad.text
    malformed = auditor.post("/audit/verify", data={"anchor": "yesterday", "csrf_token": token})
    assert malformed.status_code == 400
    assert "is malformed" in malformed.text

    # A superuser edits entry 3 behind syncd's back (SQLite has no trigger to stop it).
    with sqlite_console.node.engine.begin() as conn:
        conn.execute(sa.update(h.audit).where(h.audit.c.entry_id == 3).values(detail='{"x":1}'))
    broken = auditor.post("/audit/verify", data={"csrf_token": token})
    assert 'data-ok="false"' in broken.text
    assert 'data-broken="3"' in broken.text
    assert "BROKEN at entry 3" in broken.text

    # Without the CSRF token nothing is checked.
    refused = auditor.post("/audit/verify", data={"anchor": anchor})
    assert refused.status_code == 403


def test_export_is_what_the_cli_writes_and_verifies(audited: Console, auditor: TestClient) -> None:
    answer = auditor.get("/audit/export", params={"format": "json"})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"].startswith("attachment; filename=")
    assert answer.headers["content-disposition"].endswith('.jsonl"')
    # Full ID numbers leave in the file: recorded first, so the export holds that entry too.
    unmasked = _lines(audited, action="ids_unmasked")[-1]
    assert unmasked["detail"]["report"] == "console audit export"
    expected = io.StringIO()
    with audited.node.engine.connect() as conn:
        audit_query.export(conn, expected, "json")
    assert answer.text == expected.getvalue()
    assert ZHANG in answer.text

    filtered = auditor.get("/audit/export", params={"action": "console_signin_failed"}).text
    table = list(csv.reader(io.StringIO(filtered)))
    assert table[0][:3] == ["entry_id", "at", "action"]
    assert [r[2] for r in table[1:]] == ["console_signin_failed"] * 2
    expected = io.StringIO(newline="")
    with audited.node.engine.connect() as conn:
        audit_query.export(
            conn, expected, "csv", audit_query.AuditFilter(action="console_signin_failed")
        )
    assert filtered == expected.getvalue()
    newest = auditor.get("/audit/export", params={"format": "json", "newest": "3"}).text
    assert len(newest.splitlines()) == 3

    # The downloaded file verifies as `audit verify --file` would.
    page = auditor.get("/audit/verify")
    checked = auditor.post(
        "/audit/verify-file",
        data={"csrf_token": csrf_of(page.text)},
        files={"file": ("audit.jsonl", answer.content, "application/x-ndjson")},
    )
    assert checked.status_code == 200
    assert 'data-ok="true"' in checked.text
    assert json.loads(answer.text.splitlines()[-1])["entry_id"] > 1


@pytest.mark.parametrize("role", ["manager", "ops", "steward"])
def test_other_roles_may_not(audited: Console, role: str) -> None:
    client = audited.client(role)
    for path in ("/audit", "/audit/1", "/audit/verify", "/audit/export"):
        assert client.get(path).status_code == 403, path
    token = csrf_of(client.get("/signin").text)
    assert client.post("/audit/verify", data={"csrf_token": token}).status_code == 403
    assert 'href="/audit"' not in client.get("/signin").text


def test_no_session_goes_to_sign_in(audited: Console) -> None:
    before = _lines(audited, action="ids_unmasked")
    client = audited.anonymous()
    for path in ("/audit", "/audit/1", "/audit/verify", "/audit/export?format=json"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/signin?next=")
    assert _lines(audited, action="ids_unmasked") == before


def test_the_log_on_postgresql_too(pg_url: str, tmp_path: Path) -> None:
    """The same page and export on PostgreSQL (its server-side cursor streams the export)."""
    console = make_console(pg_url, tmp_path)
    auditor = english(console.client("auditor"))
    html = auditor.get("/audit", params={"action": "console_signin"}).text
    assert [a for _, a in _rows(html)] == ["console_signin"]
    export = auditor.get("/audit/export", params={"format": "csv"})
    assert export.status_code == 200
    assert export.text.startswith("entry_id,at,action")
    for client in console.clients:
        client.__exit__(None, None, None)
    console.node.close()


def test_masking_finds_id_numbers_in_keys_details_and_text() -> None:
    from syncd.console.pages.audit import masked

    assert masked({"id_type": "ric", "id_number": ZHANG}) == {"id_type": "ric", "id_number": MASKED}
    assert masked({"arguments": {"q": f"张三 {ZHANG}"}, "rows": 2}) == {
        "arguments": {"q": f"张三 {MASKED}"},
        "rows": 2,
    }
    assert masked([ZHANG.lower(), "C3301000123", 13800000000]) == [
        MASKED.lower(),
        "C3301000123",
        13800000000,
    ]
    sha = "0b116c1a737811574b6ce41a2a5102c85061c267cc324ca64fb751400f58c051"
    assert masked({"checksum": sha}) == {"checksum": sha}
