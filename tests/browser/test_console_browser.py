"""The console in a real browser, on the demo's data: signing in and out, the language, the
return to the page asked for, CSRF, and the console behind a reverse proxy at /syncd."""

from __future__ import annotations

import http.client
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from playwright.sync_api import Page, Response

from syncd.core.i18n import Translator
from tests.browser.conftest import DemoConsole, Process, Shot, free_port, wait_healthy
from tests.helpers import SYNCD

pytestmark = pytest.mark.xdist_group("browser")

ZH = Translator("zh")
EXPIRED = "The form has expired or did not come from this console. Nothing was done."


def sign_in_form(page: Page, username: str, password: str) -> Response | None:
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation() as nav:
        page.click("#signin-submit")
    return nav.value


def test_sign_in_through_the_form(page: Page, demo_console: DemoConsole, shot: Shot) -> None:
    page.goto(demo_console.url("/signin"))
    assert page.locator("html").get_attribute("lang") == "zh-CN"  # Chinese by default
    shot(page, "signin", docs=True)
    sign_in_form(page, demo_console.users["steward"], demo_console.password)
    assert "/signin" not in page.url
    assert page.locator("#signout").is_visible()
    who = page.locator(".who").inner_text()
    assert "李娜" in who  # the demo steward's display name
    assert ZH.enum("console_role", "steward") in who
    shot(page, "signed-in")


def test_a_wrong_password_shows_the_error(
    page: Page, demo_console: DemoConsole, shot: Shot
) -> None:
    page.goto(demo_console.url("/signin"))
    answer = sign_in_form(page, demo_console.users["manager"], "not-the-password")
    assert answer is not None
    assert answer.status == 401
    assert page.locator(".error[role=alert]").inner_text() == ZH.gettext(
        "Wrong user name or password."
    )
    assert page.input_value("#username") == demo_console.users["manager"]  # kept
    assert page.input_value("#password") == ""  # never sent back
    assert page.locator("#signout").count() == 0
    shot(page, "error")


def test_language_switch_chinese_english_chinese(
    page: Page, demo_console: DemoConsole, shot: Shot
) -> None:
    page.goto(demo_console.url("/signin?next=%2F"))
    html = page.locator("html")
    switch = page.locator("#lang-switch")
    assert html.get_attribute("lang") == "zh-CN"
    assert switch.inner_text() == "English"
    assert page.locator("h1").inner_text() == ZH.gettext("Sign in")
    with page.expect_navigation():
        switch.click()
    assert html.get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Sign in"
    assert switch.inner_text() == "中文"
    assert page.url.endswith("/signin?next=%2F")  # back on the page it was switched on
    shot(page, "english", docs=True)
    with page.expect_navigation():
        switch.click()
    assert html.get_attribute("lang") == "zh-CN"
    assert switch.inner_text() == "English"


def test_sign_out(page_as: Callable[[str], Page], demo_console: DemoConsole) -> None:
    page = page_as("ops")
    with page.expect_navigation():
        page.click("#signout")
    assert page.url.startswith(demo_console.url("/signin"))
    assert page.locator("#signout").count() == 0
    page.goto(demo_console.url("/"))  # the session is gone: back to the sign-in page
    assert page.url == demo_console.url("/signin?next=%2F")


def test_a_page_without_session_goes_to_sign_in_and_back(
    page: Page, demo_console: DemoConsole
) -> None:
    page.goto(demo_console.url("/?unit=wan"))
    assert page.url == demo_console.url("/signin?next=%2F%3Funit%3Dwan")
    assert page.input_value("input[name=next]") == "/?unit=wan"

    def is_sign_in_post(r: Response) -> bool:
        return r.request.method == "POST" and r.url == demo_console.url("/signin")

    with page.expect_response(is_sign_in_post) as answer:
        sign_in_form(page, demo_console.users["manager"], demo_console.password)
    assert answer.value.status == 303
    assert answer.value.headers["location"] == "/?unit=wan"
    assert page.locator("#signout").is_visible()


def test_a_form_with_a_tampered_csrf_token_is_refused(
    page_as: Callable[[str], Page], demo_console: DemoConsole, shot: Shot
) -> None:
    page = page_as("auditor")
    page.eval_on_selector_all(
        "input[name=csrf_token]", "inputs => inputs.forEach(i => { i.value = 'tampered' })"
    )
    with page.expect_navigation() as nav:
        page.click("#lang-switch")
    answer = nav.value
    assert answer is not None
    assert answer.status == 403
    assert page.locator(".error[role=alert]").inner_text() == ZH.gettext(EXPIRED)
    assert page.locator("html").get_attribute("lang") == "zh-CN"  # the language did not change
    shot(page, "refused")
    # Signing out with a tampered token does not sign out either.
    page.goto(demo_console.url("/"))
    page.eval_on_selector_all(
        "input[name=csrf_token]", "inputs => inputs.forEach(i => { i.value = 'tampered' })"
    )
    with page.expect_navigation() as nav:
        page.click("#signout")
    assert nav.value is not None
    assert nav.value.status == 403
    page.goto(demo_console.url("/"))
    assert page.locator("#signout").count() == 1  # still signed in


def test_a_user_added_with_the_cli_signs_in(page: Page, demo_console: DemoConsole) -> None:
    add = subprocess.run(
        [
            SYNCD,
            "--config",
            str(demo_console.hub_config),
            "console",
            "user",
            "add",
            "wang.fang",
            "--role",
            "manager",
            "--role",
            "auditor",
            "--name",
            "王芳",
            "--password-stdin",
        ],
        input="a-long-cli-password\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert add.returncode == 0, add.stdout + add.stderr
    page.goto(demo_console.url("/signin"))
    sign_in_form(page, "wang.fang", "a-long-cli-password")
    who = page.locator(".who").inner_text()
    assert "王芳" in who
    assert ZH.enum("console_role", "manager") in who
    assert ZH.enum("console_role", "auditor") in who


# --- behind a reverse proxy at /syncd ----------------------------------------------------------

PREFIX = "/syncd"


class StrippingProxy(BaseHTTPRequestHandler):
    """A reverse proxy as deploy/nginx/syncd-console.conf configures nginx: it serves the
    console under /syncd/ and forwards the path WITHOUT that prefix (`proxy_pass
    http://127.0.0.1:PORT/;`), with X-Forwarded-Proto/-For."""

    upstream: ClassVar[tuple[str, int]] = ("127.0.0.1", 0)
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        if not self.path.startswith(PREFIX + "/"):
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-For"] = self.client_address[0]
        conn = http.client.HTTPConnection(*self.upstream, timeout=15)
        conn.request(self.command, self.path[len(PREFIX) :], body, headers)
        answer = conn.getresponse()
        data = answer.read()
        conn.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_HEAD = _forward  # noqa: N815 (BaseHTTPRequestHandler's names)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxied_console(demo_console: DemoConsole) -> Iterator[str]:
    """`syncd console --root-path /syncd` on the demo's hub (real uvicorn) behind the
    stripping proxy; yields the proxy's URL of the console (…/syncd)."""
    port = free_port()
    console = Process(
        [
            SYNCD,
            "--config",
            str(demo_console.hub_config),
            "console",
            "--port",
            str(port),
            "--root-path",
            PREFIX,
        ],
        cwd=demo_console.directory,
    )
    proxy = None
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", console.proc, console.output)
        handler = type("Proxy", (StrippingProxy,), {"upstream": ("127.0.0.1", port)})
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{proxy.server_address[1]}{PREFIX}"
        # The console expects the proxy to strip the prefix: a full path is not found.
        with pytest.raises(urllib.error.HTTPError) as full:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{PREFIX}/signin", timeout=5)
        assert full.value.code == 404
        full.value.close()
    finally:
        if proxy is not None:
            proxy.shutdown()
            proxy.server_close()
        console.interrupt()


def test_root_path_behind_a_proxy(
    page: Page, proxied_console: str, demo_console: DemoConsole, shot: Shot
) -> None:
    css: list[int] = []
    page.on("response", lambda r: css.append(r.status) if r.url.endswith("console.css") else None)
    page.goto(proxied_console + "/")
    assert page.url == proxied_console + "/signin?next=%2Fsyncd%2F"
    assert css == [200]  # the stylesheet's link carries /syncd
    assert page.locator("form[action='/syncd/signin']").count() == 1
    assert page.locator("a.brand").get_attribute("href") == "/syncd/"
    sign_in_form(page, demo_console.users["manager"], demo_console.password)
    assert page.url.startswith(proxied_console + "/")
    assert page.locator("#signout").is_visible()
    (cookie,) = page.context.cookies()
    assert cookie["path"] == "/syncd/"
    assert cookie["httpOnly"]
    shot(page, "root-path")
    with page.expect_navigation():
        page.click("#signout")
    assert page.url == proxied_console + "/signin"
