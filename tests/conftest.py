"""Fixtures shared by every tier: real SQLite files and real PostgreSQL databases.

PostgreSQL is required. If it cannot be reached the session fails (never skips): CI must not
go green on SQLite alone. The server is taken from SYNCD_TEST_PG (a psycopg URL of a
superuser connection), by default the local trust-auth cluster.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

PG_ADMIN = os.environ.get("SYNCD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parent.parent
POLICY = REPO / "schemas" / "crm.yaml"


def _pg_base() -> str:
    return PG_ADMIN.rsplit("/", 1)[0]


@pytest.fixture(scope="session")
def pg_admin() -> str:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the test suite and is unreachable: {exc}", pytrace=False
        )
    return PG_ADMIN


def create_pg_database(admin: str, prefix: str = "syncd_t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_pg_database(admin: str, name: str) -> None:
    """Drop a test database and the node login roles `node add` made for it (cluster-wide)."""
    tag = hashlib.sha256(name.encode()).hexdigest()[:6]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        roles = conn.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, 'syncd_') "
            "AND right(rolname, 7) = %s",
            (f"_{tag}",),
        ).fetchall()
        for (role,) in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def pg_url(pg_admin: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database as a SQLAlchemy URL; dropped afterwards."""
    name = create_pg_database(pg_admin)
    try:
        yield f"{_pg_base().replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        drop_pg_database(pg_admin, name)


@pytest.fixture
def pg_url_factory(pg_admin: str) -> Iterator[object]:
    """Make as many fresh PostgreSQL databases as a test needs; all dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = create_pg_database(pg_admin)
        made.append(name)
        return f"{_pg_base().replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"

    yield make
    for name in made:
        drop_pg_database(pg_admin, name)


@pytest.fixture(scope="module")
def pg_functions(pg_admin: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to a scratch hub database holding the hub's tables and its
    PostgreSQL functions (no policy tables): for calling one function against Python's rules."""
    from syncd.hub import inbox
    from syncd.store import hub_tables as h
    from syncd.store.db import create_engine

    name = create_pg_database(pg_admin, "syncd_fn")
    url = f"{_pg_base().replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    engine = create_engine(url)
    h.metadata.create_all(engine)
    with engine.begin() as conn:
        inbox.install_functions(conn)
    engine.dispose()
    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    yield conn
    conn.close()
    drop_pg_database(pg_admin, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A real SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'node.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a real SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def policy_path() -> Path:
    return POLICY
