"""The CRM tables as the policy declares them, and the check of a live city database against it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from syncd.city.capture import trigger_problems
from syncd.core.policy import ColumnType, Policy, SchemaProblem, Table
from syncd.store.db import translated
from syncd.store.dialect import Kind, dialect_for
from syncd.store.sqltypes import sql_type


def crm_metadata(policy: Policy) -> sa.MetaData:
    """One Core table per declared table, public and local alike."""
    metadata = sa.MetaData()
    for table in policy.tables.values():
        sa.Table(
            table.name,
            metadata,
            *(
                sa.Column(
                    name,
                    sql_type(col),
                    nullable=col.nullable,
                    primary_key=name in table.primary_key,
                    autoincrement=False,
                )
                for name, col in table.columns.items()
            ),
        )
    return metadata


def create_crm_schema(conn: Connection, policy: Policy) -> None:
    """Create the declared CRM tables that do not exist yet; existing tables are left alone."""
    with translated("cannot create the CRM tables"):
        crm_metadata(policy).create_all(conn, checkfirst=True)


# Live types a policy type accepts. Lengths and precisions are not compared: a wider or
# narrower column still holds the data, and the hub validates every value anyway.
_COMPATIBLE: dict[ColumnType, tuple[type[TypeEngine[Any]], ...]] = {
    ColumnType.STRING: (sa.String,),
    ColumnType.TEXT: (sa.String,),
    ColumnType.INTEGER: (sa.Integer,),
    ColumnType.DECIMAL: (sa.Numeric,),
    ColumnType.BOOLEAN: (sa.Boolean,),
    ColumnType.DATE: (sa.Date,),
    ColumnType.TIMESTAMP: (sa.DateTime,),
    ColumnType.LIST: (sa.JSON, sa.ARRAY),
}

# What each dialect accepts besides: SQLite stores decimals as text (ExactDecimal), lists as
# JSON text and booleans as integers.
_ALSO_COMPATIBLE: dict[Kind, dict[ColumnType, tuple[type[TypeEngine[Any]], ...]]] = {
    Kind.POSTGRES: {},
    Kind.SQLITE: {
        ColumnType.DECIMAL: (sa.Numeric, sa.String),
        ColumnType.BOOLEAN: (sa.Boolean, sa.Integer),
        ColumnType.LIST: (sa.JSON, sa.String),
    },
}


def _compatible(policy_type: ColumnType, live: TypeEngine[Any], kind: Kind) -> bool:
    accepted = _ALSO_COMPATIBLE[kind].get(policy_type, _COMPATIBLE[policy_type])
    if policy_type is ColumnType.DECIMAL and isinstance(live, sa.Float):
        # Float is a Numeric subclass in SQLAlchemy, but binary floating point rounds money.
        return False
    return isinstance(live, accepted)


def _table_problems(insp: sa.Inspector, table: Table, kind: Kind) -> list[SchemaProblem]:
    problems: list[SchemaProblem] = []
    live = {c["name"]: c for c in insp.get_columns(table.name)}
    for name, col in table.columns.items():
        found = live.get(name)
        if found is None:
            problems.append(SchemaProblem(table.name, name, "column is missing"))
        elif not _compatible(col.type, found["type"], kind):
            problems.append(
                SchemaProblem(
                    table.name,
                    name,
                    f"type {found['type']!s} is not compatible with policy type {col.type.value}",
                )
            )
    live_pk = tuple(insp.get_pk_constraint(table.name).get("constrained_columns") or ())
    if live_pk and set(live_pk) != set(table.primary_key):
        problems.append(
            SchemaProblem(
                table.name,
                None,
                f"primary key is ({', '.join(live_pk)}), "
                f"the policy says ({', '.join(table.primary_key)})",
            )
        )
    return problems


def check_schema(conn: Connection, policy: Policy) -> list[SchemaProblem]:
    """Every difference between the live database and the policy, capture triggers included."""
    with translated("cannot read the database schema"):
        insp = sa.inspect(conn)
        existing = set(insp.get_table_names())
        problems: list[SchemaProblem] = []
        for table in policy.tables.values():
            if table.name not in existing:
                problems.append(SchemaProblem(table.name, None, "table is missing"))
            else:
                problems.extend(_table_problems(insp, table, dialect_for(conn).kind))
        capture_problems = trigger_problems(conn, policy)
    problems.extend(
        SchemaProblem(table, None, problem)
        for table, problem in capture_problems
        if table in existing or table not in policy.tables
    )
    return problems
