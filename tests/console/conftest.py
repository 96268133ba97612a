"""A console on a real hub: the fixed province of test_reports, one user per role.

`console` (SQLite and PostgreSQL) gives a `Console`: its settings, the ASGI app and
`client(role)`, a Starlette TestClient already signed in as that role's user (through the
real sign-in form, CSRF token included).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from syncd.app import Node, init_node
from syncd.console.app import create_app
from syncd.core.settings import Settings, load_settings
from syncd.hub import console_users
from tests.conftest import POLICY
from tests.integration.test_reports import seed

PASSWORD = "correct-horse-battery"
ROLES = ("manager", "auditor", "ops", "steward")


def console_config(url: str, path: Path, extra: str = "") -> Path:
    path.write_text(
        f'[node]\nid = "hub-t"\nrole = "hub"\n[database]\nurl = "{url}"\n'
        f'[policy]\npath = "{POLICY}"\n[log]\nformat = "json"\n'
        "[console]\n" + ("" if "secure_cookies" in extra else "secure_cookies = false\n") + extra,
        encoding="utf-8",
    )
    return path


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match[1]


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> TestClient:
    page = client.get("/signin")
    assert page.status_code == 200
    answer = client.post(
        "/signin",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


@dataclasses.dataclass
class Console:
    settings: Settings
    node: Node
    app: FastAPI
    clients: list[TestClient]

    def anonymous(self) -> TestClient:
        root = self.settings.console.root_path
        client = TestClient(self.app, base_url="http://testserver" + root, root_path=root)
        client.__enter__()
        self.clients.append(client)
        return client

    def client(self, role: str) -> TestClient:
        return sign_in(self.anonymous(), role)


def make_console(url: str, tmp_path: Path, extra: str = "", *, seeded: bool = False) -> Console:
    """A console on the hub at url: initialised, seeded and given its users unless `seeded`."""
    settings = load_settings(console_config(url, tmp_path / "hub.toml", extra))
    if not seeded:
        init_node(settings)
    node = Node.open(settings)
    if not seeded:
        with node.engine.begin() as conn:
            seed(conn, node.policy)
        for role in ROLES:
            console_users.add_user(node.engine, role, [role], PASSWORD, display_name=f"{role} user")
    return Console(settings, node, create_app(settings, node), [])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded SQLite hub per test process; each `sqlite_console` gets a copy of the file
    (init, seed and four argon2 hashes cost half a second a test otherwise)."""
    where = tmp_path_factory.mktemp("console-template")
    c = make_console(f"sqlite:///{where / 'hub.db'}", where)
    c.node.close()
    return where / "hub.db"


@pytest.fixture
def console(db_url: str, tmp_path: Path) -> Iterator[Console]:
    c = make_console(db_url, tmp_path)
    yield c
    for client in c.clients:
        client.__exit__(None, None, None)
    c.node.close()


@pytest.fixture
def sqlite_console(tmp_path: Path, sqlite_template: Path) -> Iterator[Console]:
    shutil.copyfile(sqlite_template, tmp_path / "hub.db")
    c = make_console(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path, seeded=True)
    yield c
    for client in c.clients:
        client.__exit__(None, None, None)
    c.node.close()


ConsoleFactory = Callable[[str], Console]
