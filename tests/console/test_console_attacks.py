"""The console as an attacker sees it: hostile text from the cities and the browser, ids and
values no page takes, a stolen session, a database that is gone.

Hostile data goes in the way it would really arrive: a node renamed through syncd.hub.nodes,
customers through a city's batch and the hub's apply, a user name through the sign-in form.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import sqlalchemy as sa

from syncd.hub import console_users
from syncd.hub.apply import apply_pending
from syncd.hub.nodes import rename_node
from syncd.store import hub_tables as h
from tests.conftest import PG_ADMIN
from tests.console.conftest import PASSWORD, Console, csrf_of, make_console, sign_in
from tests.console.test_analysis_pages import Waiting
from tests.console.test_overview import _refreshed
from tests.integration.test_apply import WANG, customer, submit, up

IMG = "<img src=x onerror=alert(1)>"
BREAKOUT = "</script><script>alert(2)</script>"
BIG = "9" * 30  # past any BIGINT


def _inert(html: str) -> None:
    """No hostile markup came through as markup: escaped in the HTML, \\u003c in JSON."""
    assert "<img" not in html
    assert "<script>alert" not in html
    assert len(re.findall(r"<script\b", html)) == html.count("</script>")


def test_hostile_city_and_browser_text_stays_text(sqlite_console: Console) -> None:
    c = sqlite_console
    engine = c.node.engine
    rename_node(engine, "city-3301", IMG)  # `syncd node rename city-3301 --name '<img …>'`
    rename_node(engine, "city-3302", BREAKOUT)
    submit(
        engine,
        "city-3301",
        [
            up(1, "customers", customer("X1", WANG, name=IMG, address=BREAKOUT, risk_tags=[IMG])),
            up(2, "customers", customer("X2", BREAKOUT)),  # quarantined: a bad ID number
        ],
    )
    submit(
        engine,
        "city-3302",
        [up(1, "customers", customer("Y1", WANG, customer_type="corporate", name=BREAKOUT))],
    )
    apply_pending(engine, c.node.policy)  # a manual conflict on WANG's customer_type
    anonymous = c.anonymous()
    token = csrf_of(anonymous.get("/signin").text)
    failed = anonymous.post(
        "/signin",
        data={"username": IMG, "password": "x" * 12, "next": BREAKOUT, "csrf_token": token},
    )
    assert failed.status_code == 401
    _inert(failed.text)

    manager = c.client("manager")
    overview = _refreshed(c, manager)
    assert "\\u003cimg src=x" in overview  # the city's name inside the chart's JSON block
    _inert(overview)
    analyses = Waiting(c, manager)  # the analyses' figures, once computed in the background
    key = analyses.get("/analysis/key").text
    assert "&lt;img src=x onerror=alert(1)&gt;" in key  # the customer's risk tag, as text
    _inert(key)
    for path in (
        "/analysis/warnings",
        f"/analysis/warnings?reason={IMG}",
        f"/analysis/key?top={IMG}",
    ):
        _inert(analyses.get(path).text)
    ops = c.client("ops")
    for path in ("/health", "/conflicts?status=all", "/conflicts/1", "/quarantine?status=all"):
        page = ops.get(path)
        assert page.status_code == 200, path
        _inert(page.text)
    auditor = c.client("auditor")
    log = auditor.get("/audit?limit=500").text
    assert "&lt;img src=x onerror=alert(1)&gt;" in log  # the failed sign-in's user name
    _inert(log)
    _inert(auditor.get(f"/audit?key={IMG}&node={BREAKOUT}").text)


def test_ids_past_bigint_are_bad_requests_not_crashes(sqlite_console: Console) -> None:
    """SQLite cannot bind such an int (OverflowError: a 500), PostgreSQL calls it out of range
    (a 503 'the hub cannot answer'): the console refuses it first."""
    c = sqlite_console
    ops, steward, auditor = c.client("ops"), c.client("steward"), c.client("auditor")
    for path in (f"/conflicts/{BIG}", f"/quarantine/{BIG}", "/conflicts/0"):
        assert ops.get(path).status_code == 400, path
    token = csrf_of(steward.get("/quarantine").text)
    for path in (f"/quarantine/{BIG}/retry", f"/conflicts/{BIG}/approve"):
        answer = steward.post(path, data={"csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 400, path
    assert auditor.get(f"/audit/{BIG}").status_code == 400
    for query in (f"batch={BIG}", f"golden_id={BIG}", f"before={BIG}"):
        page = auditor.get(f"/audit?{query}")
        assert page.status_code == 200, query
        assert 'id="audit-error"' in page.text, query
    assert auditor.get(f"/audit/1?after={BIG}").status_code == 200
    export = auditor.get(f"/audit/export?newest={BIG}")
    assert export.status_code == 200
    assert export.text.startswith("entry_id,")


def test_a_nul_character_is_a_bad_request(console: Console) -> None:
    """PostgreSQL text cannot hold NUL: it used to end as 'the hub cannot answer now' with the
    driver's words, and a sign-in with one was not even audited."""
    c = console
    ops = c.client("ops")
    for path in ("/quarantine?table=%00", "/quarantine?node=a%00b", "/audit?node=%00"):
        assert ops.get(path).status_code in (400, 403), path
    assert ops.get("/quarantine?table=%00").status_code == 400
    assert c.client("auditor").get("/audit?action=%00").status_code == 400
    anonymous = c.anonymous()
    token = csrf_of(anonymous.get("/signin").text)
    answer = anonymous.post(
        "/signin", data={"username": "ops\x00", "password": PASSWORD, "csrf_token": token}
    )
    assert answer.status_code == 400
    assert "username" in answer.text
    assert "PostgreSQL" not in answer.text


def test_a_new_password_ends_the_sessions_of_the_old_one(sqlite_console: Console) -> None:
    c = sqlite_console
    stolen = c.client("manager")  # a copy of the manager's cookie, say
    assert stolen.get("/overview", follow_redirects=False).status_code == 200
    console_users.set_password(c.node.engine, "manager", "a-new-password-42", by="admin")
    answer = stolen.get("/overview", follow_redirects=False)
    assert answer.status_code == 303
    assert "/signin" in answer.headers["location"]
    fresh = sign_in(c.anonymous(), "manager", "a-new-password-42")
    assert fresh.get("/overview", follow_redirects=False).status_code == 200


def test_verify_file_names_the_upload_not_a_server_path(sqlite_console: Console) -> None:
    auditor = sqlite_console.client("auditor")
    token = csrf_of(auditor.get("/audit/verify").text)
    for name, body in (("mine.csv", b"\xff\xfe not text"), ("mine.jsonl", b'{"entry_id": 1}\n')):
        page = auditor.post(
            "/audit/verify-file", data={"csrf_token": token}, files={"file": (name, body)}
        ).text
        assert 'data-ok="false"' in page
        assert "/tmp" not in page
        assert "syncd-audit-" not in page
        assert name in page


def test_a_database_outage_is_503_without_its_internals(pg_url: str, tmp_path: Path) -> None:
    c = make_console(pg_url, tmp_path)
    database = pg_url.rsplit("/", 1)[1]
    manager = c.client("manager")
    anonymous = c.anonymous()
    token = csrf_of(anonymous.get("/signin").text)
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        )
    try:
        assert anonymous.get("/healthz").status_code == 503
        assert anonymous.get("/signin").status_code == 200  # the form needs no database
        answers = [
            manager.get("/overview"),
            manager.get("/analysis/key"),
            anonymous.post(
                "/signin", data={"username": "ops", "password": PASSWORD, "csrf_token": token}
            ),
        ]
        for answer in answers:
            assert answer.status_code == 503
            assert database not in answer.text
            assert "5432" not in answer.text
            assert "Traceback" not in answer.text
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        for client in c.clients:
            client.__exit__(None, None, None)
        c.node.close()
    engine = sa.create_engine(pg_url)
    try:  # the hub is whole again: its users as they were
        with engine.connect() as conn:
            users = conn.execute(sa.select(sa.func.count()).select_from(h.console_users))
            assert users.scalar() == 4
    finally:
        engine.dispose()


def test_problem_pages_say_what_happened_and_filters_show_words(sqlite_console: Console) -> None:
    """A new user's view of the same corners: the problem page has a heading for its status
    (it had an empty <h1>), and the warnings' reason filter offers no raw code."""
    c = sqlite_console
    steward = c.client("steward")
    for path, status in (("/overview", 403), ("/conflicts/99", 404), (f"/quarantine/{BIG}", 400)):
        answer = steward.get(path)
        assert answer.status_code == status, path
        heading = re.search(r'<section class="problem">\s*<h1>([^<]*)</h1>', answer.text)
        assert heading, path
        assert heading[1].strip(), path
    warnings = c.client("manager").get("/analysis/warnings").text
    assert '<option value="risk_tag">risk_tag</option>' not in warnings


def test_no_such_page_or_method_is_the_problem_page_not_json(sqlite_console: Console) -> None:
    manager = sqlite_console.client("manager")
    for method, path, status in (("GET", "/nope", 404), ("DELETE", "/overview", 405)):
        answer = manager.request(method, path)
        assert answer.status_code == status, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert '<section class="problem">' in answer.text, path
        assert '"detail"' not in answer.text, path
    assert "allow" in {k.lower() for k in manager.request("DELETE", "/overview").headers}


def test_a_link_from_another_site_neither_unmasks_nor_exports(sqlite_console: Console) -> None:
    """?unmask=1 and the audit export are GETs that write an ids_unmasked entry in the
    user's name: a link on another site (SameSite=Lax sends the cookie on a top-level
    navigation) must not do it for them. Browsers say where a request came from."""
    c = sqlite_console
    auditor = c.client("auditor")
    elsewhere = {"sec-fetch-site": "cross-site"}
    page = auditor.get("/audit?unmask=1", headers=elsewhere)
    assert page.status_code == 200
    assert 'id="audit-unmasked"' not in page.text
    assert 'id="audit-unmask"' in page.text  # its own link still offers it
    assert auditor.get("/audit/export", headers=elsewhere).status_code == 403
    steward = c.client("steward")
    assert steward.get("/quarantine?unmask=1", headers={"sec-fetch-site": "same-site"}).is_success
    with c.node.engine.connect() as conn:
        seen = conn.execute(
            sa.select(sa.func.count()).where(h.audit.c.action == "ids_unmasked")
        ).scalar()
    assert seen == 0
    # From the console itself (or a typed address), both work and are audited.
    assert (
        'id="audit-unmasked"'
        in auditor.get("/audit?unmask=1", headers={"sec-fetch-site": "same-origin"}).text
    )
    assert auditor.get("/audit/export", headers={"sec-fetch-site": "none"}).status_code == 200
