"""Alembic environment for syncd's own tables.

One script tree with two branches: `city` (changelog, state) and `hub` (nodes, inbox,
quarantine, conflicts, audit). `syncd init` passes the connection and the node's role through
`config.attributes`; only tables of that role's MetaData are ever compared or touched, so the
CRM's own tables and the policy-derived hub tables are invisible to Alembic.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import MetaData

from syncd.store import city_tables as schema_city
from syncd.store import hub_tables as schema_hub

VERSION_TABLE = "syncd_alembic_version"

config = context.config
role: str = config.attributes.get("role") or context.get_x_argument(as_dictionary=True).get(
    "role", "city"
)
target: MetaData = schema_hub.metadata if role == "hub" else schema_city.metadata


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if type_ == "table":
        return name in target.tables
    table = getattr(obj, "table", None)
    return table is None or table.name in target.tables


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from syncd.store.db import create_engine

        url = config.get_main_option("sqlalchemy.url")
        assert url, "pass a connection through config.attributes or set sqlalchemy.url"
        with create_engine(url).connect() as conn:
            _run(conn)
            conn.commit()
        return
    _run(connection)


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
