"""Run Alembic for syncd's own tables from code: `syncd init` and the drift check use this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

import syncd


def script_location() -> Path:
    """The migrations shipped in the wheel, or the repository's `migrations/` in a checkout."""
    packaged = Path(syncd.__file__).parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(syncd.__file__).resolve().parent.parent / "migrations"


def alembic_config(conn: Connection, role: str) -> Config:
    cfg = Config()
    loc = script_location()
    cfg.set_main_option("script_location", str(loc))
    cfg.set_main_option("path_separator", "os")
    # One version directory per role: each role sees a single linear history.
    cfg.set_main_option("version_locations", str(loc / "versions" / role))
    cfg.attributes["connection"] = conn
    cfg.attributes["role"] = role
    return cfg


def upgrade(conn: Connection, role: str) -> None:
    """Bring this node's syncd tables to the newest revision of its role's branch."""
    command.upgrade(alembic_config(conn, role), "head")


def check(conn: Connection, role: str) -> None:
    """Raise if the database and the role's MetaData differ (alembic check)."""
    command.check(alembic_config(conn, role))
