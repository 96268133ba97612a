"""The console's frame: sign-in, sessions, CSRF, roles, headers, its users' CLI.

Over HTTP (Starlette's TestClient on the real app) against a real hub database; the CLI
through the real `syncd` binary.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from syncd.console import web
from syncd.console.app import SESSION_COOKIE
from syncd.core.errors import UsageError
from syncd.hub import console_users
from syncd.store import hub_tables as h
from tests.console.conftest import PASSWORD, Console, csrf_of, make_console, sign_in
from tests.helpers import SYNCD

VENDOR = Path(web.__file__).parent / "static" / "vendor"


def _audit(c: Console, action: str) -> list[dict[str, object]]:
    with c.node.engine.connect() as conn:
        rows = conn.execute(
            sa.select(h.audit.c.detail)
            .where(h.audit.c.action == action)
            .order_by(h.audit.c.entry_id)
        )
        return [json.loads(r.detail) for r in rows]


def _signed_in(client: object) -> bool:
    """Whether the client's session opens the start page (a redirect elsewhere than sign-in)."""
    answer = client.get("/", follow_redirects=False)  # type: ignore[attr-defined]
    return not answer.headers.get("location", "").startswith("/signin")


def test_nothing_but_sign_in_and_healthz_without_a_session(sqlite_console: Console) -> None:
    client = sqlite_console.anonymous()
    assert client.get("/healthz").text == "ok\n"
    assert client.get("/signin").status_code == 200
    answer = client.get("/?x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=%2F%3Fx%3D1"
    assert client.post("/signout", follow_redirects=False).status_code == 403  # no CSRF token


def test_sign_in_audited_and_failures_counted_then_locked(console: Console) -> None:
    client = console.anonymous()
    token = csrf_of(client.get("/signin").text)
    for _ in range(4):
        wrong = client.post(
            "/signin", data={"username": "ops", "password": "nope-nope-nope", "csrf_token": token}
        )
        assert wrong.status_code == 401
        assert "用户名或密码错误。" in wrong.text
    unknown = client.post(
        "/signin", data={"username": "nobody", "password": PASSWORD, "csrf_token": token}
    )
    assert "用户名或密码错误。" in unknown.text  # same answer as a wrong password
    fifth = client.post(
        "/signin", data={"username": "ops", "password": "nope-nope-nope", "csrf_token": token}
    )
    assert fifth.status_code == 401
    # Locked: even the right password is refused now, and says why.
    locked = client.post(
        "/signin", data={"username": "ops", "password": PASSWORD, "csrf_token": token}
    )
    assert locked.status_code == 401
    assert "已暂时锁定" in locked.text
    failed = _audit(console, console_users.SIGNIN_FAILED)
    reasons = [(f["username"], f["reason"]) for f in failed]
    assert reasons == [
        *[("ops", "bad_credentials")] * 4,
        ("nobody", "bad_credentials"),
        ("ops", "locked_now"),
        ("ops", "locked"),
    ]
    assert failed[4]["known_user"] is False
    assert all(f["client"] == "testclient" for f in failed)
    # `user password` unlocks; the sign-in is then audited.
    console_users.set_password(console.node.engine, "ops", PASSWORD + "!", by="admin")
    sign_in(console.anonymous(), "ops", PASSWORD + "!")
    assert [s["username"] for s in _audit(console, console_users.SIGNIN)] == ["ops"]


def test_session_is_new_at_sign_in_and_ends_at_sign_out(sqlite_console: Console) -> None:
    client = sqlite_console.anonymous()
    before = csrf_of(client.get("/signin").text)
    sign_in(client, "manager")
    after = csrf_of(client.get("/", follow_redirects=True).text)
    assert after != before  # no session fixation: a new token (and session) at sign-in
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    assert (
        client.post("/signout", data={"csrf_token": after}, follow_redirects=False).status_code
        == 303
    )
    assert not _signed_in(client)
    # The old cookie replayed after sign-out still works until it expires (the session lives
    # in the cookie); what ends it for good is expiry, or disabling the user:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    assert _signed_in(client)
    console_users.set_disabled(sqlite_console.node.engine, "manager", True)
    assert not _signed_in(client)


def test_a_session_expires_after_its_minutes(tmp_path: Path) -> None:
    c = make_console(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path, extra="session_minutes = 60\n")
    try:
        client = c.client("manager")
        assert _signed_in(client)
        # The signed cookie carries the sign-in time: re-sign it as if that was 61 minutes
        # ago (the signature's own age, refreshed at each answer, is not what ends it).
        signer_cookie = client.cookies.get(SESSION_COOKIE)
        assert signer_cookie
        import base64

        import itsdangerous

        key = console_users.session_key(c.node.engine)
        data = json.loads(base64.b64decode(itsdangerous.TimestampSigner(key).unsign(signer_cookie)))
        data[web.SINCE_KEY] = dt.datetime.now(dt.UTC).timestamp() - 61 * 60
        forged = itsdangerous.TimestampSigner(key).sign(base64.b64encode(json.dumps(data).encode()))
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, forged.decode())
        assert not _signed_in(client)
    finally:
        c.node.close()


def test_a_forged_or_foreign_cookie_is_no_session(sqlite_console: Console) -> None:
    import base64

    import itsdangerous

    client = sqlite_console.anonymous()
    data = {web.USER_KEY: "steward", web.SINCE_KEY: dt.datetime.now(dt.UTC).timestamp()}
    forged = itsdangerous.TimestampSigner("not-the-key").sign(
        base64.b64encode(json.dumps(data).encode())
    )
    client.cookies.set(SESSION_COOKIE, forged.decode())
    assert not _signed_in(client)


def test_every_post_needs_the_sessions_csrf_token(sqlite_console: Console) -> None:
    client = sqlite_console.client("manager")
    token = csrf_of(client.get("/signin").text)
    no_token = client.post("/lang", data={"lang": "en"}, follow_redirects=False)
    assert no_token.status_code == 403
    assert "未执行任何操作" in no_token.text
    assert "manager user" in no_token.text  # still shown as signed in: nothing was done
    other = sqlite_console.client("auditor")
    foreign = csrf_of(other.get("/signin").text)
    assert client.post("/lang", data={"lang": "en", "csrf_token": foreign}).status_code == 403
    header = client.post(
        "/lang", data={"lang": "en"}, headers={"X-CSRF-Token": token}, follow_redirects=False
    )
    assert header.status_code == 303


def test_chinese_by_default_english_on_request(sqlite_console: Console) -> None:
    client = sqlite_console.anonymous()
    page = client.get("/signin")
    assert '<html lang="zh-CN">' in page.text
    assert "登录" in page.text
    token = csrf_of(page.text)
    client.post("/lang", data={"lang": "en", "back": "/signin", "csrf_token": token})
    english = client.get("/signin")
    assert '<html lang="en">' in english.text
    assert "Sign in" in english.text
    # The language survives signing in.
    sign_in(client, "auditor")
    assert '<html lang="en">' in client.get("/", follow_redirects=True).text


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"],
)
def test_next_never_leaves_the_console(sqlite_console: Console, target: str) -> None:
    client = sqlite_console.anonymous()
    token = csrf_of(client.get("/signin").text)
    answer = client.post(
        "/signin",
        data={"username": "ops", "password": PASSWORD, "next": target, "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/"


def test_security_headers_and_no_caching_of_pages(sqlite_console: Console) -> None:
    client = sqlite_console.anonymous()
    page = client.get("/signin")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline script: the CSP would block it
    cookie = page.headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()


def test_session_cookie_is_secure_by_default(tmp_path: Path) -> None:
    c = make_console(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path, extra="secure_cookies = true\n")
    try:
        page = c.anonymous().get("/signin")
        assert "secure" in page.headers["set-cookie"].lower()
    finally:
        c.node.close()


def test_the_vendored_echarts_is_the_recorded_release(sqlite_console: Console) -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    digest = hashlib.sha256((VENDOR / "echarts.min.js").read_bytes()).hexdigest()
    assert digest in readme
    served = sqlite_console.anonymous().get("/static/vendor/echarts.min.js")
    assert served.status_code == 200
    assert hashlib.sha256(served.content).hexdigest() == digest


def test_under_a_root_path_links_and_redirects_carry_it(tmp_path: Path) -> None:
    c = make_console(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path, extra='root_path = "/syncd"\n')
    try:
        client = c.anonymous()
        first = client.get("/", follow_redirects=False)
        assert first.headers["location"] == "/syncd/signin?next=%2Fsyncd%2F"
        page = client.get("/signin")
        assert 'action="/syncd/signin"' in page.text
        assert 'href="/syncd/static/console.css"' in page.text
        assert "path=/syncd/" in page.headers["set-cookie"].lower()
    finally:
        c.node.close()


def test_passwords_are_argon2id_and_rehashed_when_parameters_change(
    sqlite_console: Console,
) -> None:
    engine = sqlite_console.node.engine
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(h.console_users.c.password_hash).where(
                h.console_users.c.username == "steward"
            )
        ).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(
            h.console_users.update()
            .where(h.console_users.c.username == "steward")
            .values(password_hash=weak)
        )
    sign_in(sqlite_console.anonymous(), "steward")
    with engine.connect() as conn:
        again = conn.execute(
            sa.select(h.console_users.c.password_hash).where(
                h.console_users.c.username == "steward"
            )
        ).scalar_one()
    assert again != weak
    assert again.startswith("$argon2id$")


def test_user_commands_through_the_real_binary(sqlite_console: Console) -> None:
    config = sqlite_console.settings.config_path
    assert config is not None

    def syncd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SYNCD, "--config", str(config), "console", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    added = syncd(
        "user",
        "add",
        "wang.li",
        "--role",
        "manager",
        "--role",
        "auditor",
        "--name",
        "王丽",
        "--password-stdin",
        stdin="a-long-enough-pw\n",
    )
    assert added.returncode == 0, added.stderr
    assert "wang.li added (auditor, manager)" in added.stdout
    short = syncd("user", "add", "li.ming", "--role", "ops", "--password-stdin", stdin="short\n")
    assert short.returncode == 2
    assert "at least 10 characters" in short.stderr
    with pytest.raises(UsageError, match="unknown console role 'admin'"):
        console_users.add_user(sqlite_console.node.engine, "li.ming", ["admin"], "x" * 12)
    with pytest.raises(UsageError, match="exists already"):
        console_users.add_user(sqlite_console.node.engine, "wang.li", ["ops"], "x" * 12)
    with pytest.raises(UsageError, match="user name 'Li Ming'"):
        console_users.add_user(sqlite_console.node.engine, "Li Ming", ["ops"], "x" * 12)
    listed = syncd("user", "list", "--json")
    users = {u["username"]: u for u in json.loads(listed.stdout)}
    assert users["wang.li"]["roles"] == "auditor,manager"
    assert "password_hash" not in users["wang.li"]
    assert syncd("user", "disable", "wang.li").returncode == 0
    client = sqlite_console.anonymous()
    token = csrf_of(client.get("/signin").text)
    refused = client.post(
        "/signin",
        data={"username": "wang.li", "password": "a-long-enough-pw", "csrf_token": token},
    )
    assert refused.status_code == 401
    changes = [(a["change"], a["username"]) for a in _audit(sqlite_console, "console_user_changed")]
    assert ("added", "wang.li") in changes
    assert ("disabled", "wang.li") in changes


def test_the_console_runs_only_at_the_hub(tmp_path: Path) -> None:
    config = tmp_path / "city.toml"
    config.write_text(
        f'[node]\nid = "city-1"\nrole = "city"\n[database]\nurl = "sqlite:///{tmp_path}/c.db"\n'
        f'[hub]\nurl = "sqlite:///{tmp_path}/h.db"\n',
        encoding="utf-8",
    )
    run = subprocess.run(
        [SYNCD, "--config", str(config), "console", "--port", "18999"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "runs on the hub" in run.stderr


def test_times_are_shown_in_the_console_zone_and_a_bad_zone_is_named(tmp_path: Path) -> None:
    from syncd.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"console\.timezone.*unknown time zone 'Mars/Olympus'"):
        make_console(
            f"sqlite:///{tmp_path / 'x.db'}", tmp_path, extra='timezone = "Mars/Olympus"\n'
        )
    assert web.when(dt.datetime(2026, 11, 30, 16, 30, 5), ZoneInfo("Asia/Shanghai")) == (
        "2026-12-01 00:30:05"  # naive times are UTC as stored: Beijing is 8 hours ahead
    )
    assert web.when("2026-11-30T16:30:05") == "2026-11-30 16:30:05"
    assert web.when(None) == ""
