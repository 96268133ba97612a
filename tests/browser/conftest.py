"""Browser tests: Debian's Chromium, steered by Playwright, on the console of the real demo.

Once per test session (all browser tests are in the xdist group "browser", so one worker runs
them all): `syncd demo --console` runs as `make demo` runs it — a hub and two cities on SQLite,
real daemons, conflicts and quarantined rows — and then serves the hub's console with one demo
user per role; the tests sign in with the user and password it prints. At the end the console
is stopped with SIGINT (Ctrl-C), which must end it cleanly.

The browser is /usr/bin/chromium (Debian's `chromium` package, installed by .ci/run), never one
Playwright downloads: if it is missing, the tests FAIL and say which package to install, as
the suite does for an unreachable PostgreSQL. SYNCD_TEST_CHROMIUM names another binary.

Fixtures: `demo_console` (the running demo console: url(path), users, password, hub config),
`browser` (session), `page` (a fresh context at 1366x900, not signed in), `page_as(role)` (a
page signed in through the form as the demo user of that role) and `shot(page, name)`, a
full-page screenshot saved as test-artifacts/screenshots/<test>-<name>.png; with
SYNCD_DOCS_SCREENSHOTS=1 (`make screenshots`) the shots taken with `docs=True` are also copied
to docs/img/console/<name>.png.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import SYNCD

# Playwright must never fetch a browser of its own (the network is closed, and CI uses the
# distribution's Chromium); this only matters to `playwright install`, which nothing runs.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM = os.environ.get("SYNCD_TEST_CHROMIUM", "/usr/bin/chromium")
# Playwright's headless mode adds --headless. Root needs --no-sandbox; the rest keep Chromium
# from calling home (its background connections are refused by the closed network and would
# only slow it down): no QUIC, no first-run, sync, component updates or background fetches.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 900}
SHOTS = REPO / "test-artifacts" / "screenshots"
DOCS_SHOTS = REPO / "docs" / "img" / "console"
ROLES = ("manager", "auditor", "ops", "steward")
DEMO_CITIES = "2"
DEMO_CUSTOMERS = "40"
START_TIMEOUT = 240.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(url: str, proc: subprocess.Popen[str], output: Callable[[], str]) -> None:
    """Until GET url answers 200; fails with the process's output if it exits or never does."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the console exited with {proc.returncode}:\n{output()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within 30 s:\n{output()[-3000:]}")


class Process:
    """A child `syncd` whose combined output is collected by a thread (the pipe never fills)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.lines: list[str] = []
        self._seen = 0  # lines wait_for has looked at
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The next output line matching `pattern` (searched) after the last one matched."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self._seen < len(self.lines):
                match = re.search(pattern, self.lines[self._seen])
                self._seen += 1
                if match:
                    return match
            if self.proc.poll() is not None:
                self._reader.join(5)
                if self._seen >= len(self.lines):
                    pytest.fail(
                        f"exited with {self.proc.returncode} before printing {pattern!r}:\n"
                        + self.output()[-3000:]
                    )
            time.sleep(0.1)
        pytest.fail(f"no {pattern!r} within {timeout:.0f} s:\n{self.output()[-3000:]}")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, as a terminal sends it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


@dataclasses.dataclass
class DemoConsole:
    """The console `syncd demo --console` serves, and how to sign in to it."""

    directory: Path
    hub_config: Path
    base: str  # http://127.0.0.1:PORT (the console's root: no root path)
    password: str
    users: dict[str, str]  # role -> demo user name
    process: Process
    started_seconds: float

    def url(self, path: str = "/") -> str:
        return self.base + path


@pytest.fixture(scope="session")
def demo_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoConsole]:
    """`syncd demo --console` on a small province, serving until the session ends."""
    directory = tmp_path_factory.mktemp("browser-demo")
    port = free_port()
    started = time.monotonic()
    process = Process(
        [
            SYNCD,
            "demo",
            "--dir",
            str(directory),
            "--cities",
            DEMO_CITIES,
            "--customers",
            DEMO_CUSTOMERS,
            "--console",
            "--console-port",
            str(port),
        ],
        cwd=directory,
    )
    try:
        url = process.wait_for(r"The hub's web console: (http://\S+?)/? ", START_TIMEOUT)[1]
        password = process.wait_for(r"password for this run only: (\S+)$", 5)[1]
        users: dict[str, str] = {}
        for _ in ROLES:
            match = process.wait_for(r"^  (demo-\S+)\s+(\w+)$", 5)
            users[match[2]] = match[1]
        assert set(users) == set(ROLES), process.output()[-2000:]
        assert url == f"http://127.0.0.1:{port}"
        wait_healthy(url + "/healthz", process.proc, process.output)
        console = DemoConsole(
            directory,
            directory / "hub.toml",
            url,
            password,
            users,
            process,
            time.monotonic() - started,
        )
        yield console
    finally:
        code = process.interrupt()
    assert code == 0, process.output()[-3000:]
    assert "console stopped" in process.output()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is required for the browser tests and is missing ({CHROMIUM}): install "
            "Debian's package with `apt-get install chromium` (.ci/run does); Playwright never "
            "downloads a browser here",
            pytrace=False,
        )
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A new browser context (no cookies) at 1366x900; pages answer within 15 s or fail."""
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    p = context.new_page()
    yield p
    context.close()


def sign_in(page: Page, console: DemoConsole, username: str, password: str) -> None:
    """Through the sign-in form, as a person would; waits for the answer's page."""
    page.goto(console.url("/signin"))
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("#signin-submit")


@pytest.fixture
def page_as(page: Page, demo_console: DemoConsole) -> Callable[[str], Page]:
    """page_as("steward"): the page, signed in as the demo user of that role."""

    def as_role(role: str) -> Page:
        sign_in(page, demo_console, demo_console.users[role], demo_console.password)
        assert page.locator("#signout").count() == 1, page.content()[:2000]
        return page

    return as_role


Shot = Callable[..., Path]


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shot:
    """shot(page, "signin"): test-artifacts/screenshots/<test>-signin.png, the whole page
    (full=False: what the 1366x900 window shows, for long pages); docs=True also copies it to
    docs/img/console/signin.png when SYNCD_DOCS_SCREENSHOTS=1."""
    test = re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")

    def take(page: Page, name: str, *, docs: bool = False, full: bool = True) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{test}-{name}.png"
        page.screenshot(path=str(path), full_page=full)
        if docs and os.environ.get("SYNCD_DOCS_SCREENSHOTS") == "1":
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SHOTS / f"{name}.png")
        return path

    return take
