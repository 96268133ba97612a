"""Set-based SQL at the hub: bulk upserts, key lookups, the writer lock, the policy's tables.

One place for what differs by dialect in the hub's hot paths: on PostgreSQL keys travel as
array parameters and rows by COPY (through a staging table for upserts); SQLite gets chunked
IN lists and executemany.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from syncd.core.policy import Policy, Table
from syncd.store import hub_tables as h
from syncd.store.db import copy_rows, copy_text_rows
from syncd.store.dialect import Kind, dialect_for

# pg_advisory_xact_lock key serializing hub writers (apply, quarantine retry, conflict
# resolution): the bytes of "syncdapl" as a bigint. SQLite's BEGIN IMMEDIATE does the same.
APPLY_LOCK_KEY = 0x73796E6364617070

# Rows per IN (...) list: far below SQLite's and PostgreSQL's bind-parameter limits.
_CHUNK = 500
NAME_MAX = 63
# The staging table's extra column: the position of each row in the caller's list.
_STAGE_ORDER = "syncd_stage_order"

_T = TypeVar("_T")


def lock(conn: Connection) -> None:
    """Serialize hub writers until the transaction ends (PostgreSQL; SQLite already is)."""
    dialect_for(conn).lock_writers(conn, APPLY_LOCK_KEY)


def upsert(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    index: Sequence[str],
    update: Sequence[str],
) -> None:
    """INSERT … ON CONFLICT (index) DO UPDATE SET update = excluded, for all rows at once.

    PostgreSQL: COPY into a staging table, then one INSERT … SELECT; SQLite: one executemany.
    As with a multi-row INSERT, one call must not hold two rows for the same index values.
    """
    if not rows:
        return
    insert, params = _UPSERT[dialect_for(conn).kind](conn, table, rows)
    excluded = insert.excluded
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=list(index), set_={c: excluded[c] for c in update}
        ),
        params,
    )


_Upsert = postgresql.Insert | sqlite.Insert


def _from_stage(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[_Upsert, None]:
    """One INSERT … SELECT from the rows COPYed into a staging table."""
    columns = list(rows[0])
    staged = _stage(conn, table, columns, rows)
    select = sa.select(*(staged.c[c] for c in columns)).order_by(staged.c[_STAGE_ORDER])
    return postgresql.insert(table).from_select(columns, select), None


def _from_params(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[_Upsert, list[Mapping[str, Any]]]:
    """One INSERT run as an executemany over the rows."""
    return sqlite.insert(table), list(rows)


def _stage(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> sa.Table:
    """COPY rows into a temporary table shaped like `table` (PostgreSQL), gone at commit.

    The table's columns without its constraints or defaults (a serial default would burn
    sequence numbers), plus the rows' order, so serial ids are given in that order as the
    multi-row INSERT it replaces gave them.
    """
    name = f"syncd_stage_{table.name}"
    if len(name) > NAME_MAX:
        name = f"{name[:50]}_{hashlib.sha256(table.name.encode()).hexdigest()[:12]}"
    staged = sa.Table(
        name,
        sa.MetaData(),
        *(sa.Column(c.name, c.type) for c in table.c),
        sa.Column(_STAGE_ORDER, sa.BigInteger()),
        schema="pg_temp",
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    conn.execute(sa.schema.CreateTable(staged, if_not_exists=True))
    # Emptied, not created anew, when one transaction stages rows for a table again.
    conn.exec_driver_sql(f"TRUNCATE {conn.dialect.identifier_preparer.format_table(staged)}")
    names = [*columns, _STAGE_ORDER]
    copy_rows(conn, staged, names, ([row[c] for c in columns] + [i] for i, row in enumerate(rows)))
    return staged


def insert_returning_ids(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], id_column: str
) -> list[int]:
    """Insert rows in one executemany and return their generated ids in the rows' order."""
    if not rows:
        return []
    stmt = table.insert().returning(table.c[id_column], sort_by_parameter_order=True)
    return [int(i) for i in conn.execute(stmt, list(rows)).scalars()]


def chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _matching(
    cols: Sequence[sa.ColumnElement[Any]], values: Sequence[tuple[Any, ...]]
) -> sa.ColumnElement[bool]:
    if len(cols) == 1:
        return cols[0].in_([v[0] for v in values])
    return sa.tuple_(*cols).in_(values)


def _in_arrays(
    cols: Sequence[sa.ColumnElement[Any]], values: Sequence[tuple[Any, ...]]
) -> Iterator[sa.ColumnElement[bool]]:
    # One array parameter per column: PostgreSQL plans a semi-join against unnest() where a
    # tuple IN list of thousands of rows becomes an OR of ANDs that takes longer to plan than
    # to run, and the statement text stays the same size whatever the number of keys.
    arrays = [
        sa.bindparam(None, [v[i] for v in values], type_=postgresql.ARRAY(c.type))
        for i, c in enumerate(cols)
    ]
    if len(cols) == 1:
        yield cols[0] == sa.any_(arrays[0])
        return
    keys = sa.func.unnest(*arrays).table_valued(*(f"k{i}" for i in range(len(cols))))
    yield sa.tuple_(*cols).in_(sa.select(*keys.render_derived().c))


def key_matches(
    conn: Connection, cols: Sequence[sa.ColumnElement[Any]], values: Sequence[tuple[Any, ...]]
) -> Iterator[sa.ColumnElement[bool]]:
    """Conditions that together match rows whose `cols` equal one of the key tuples `values`.

    One condition on PostgreSQL (array parameters); on SQLite one IN list per chunk, below its
    bind-parameter limit.
    """
    if values:
        yield from _KEY_MATCHES[dialect_for(conn).kind](cols, values)


def _in_chunks(
    cols: Sequence[sa.ColumnElement[Any]], values: Sequence[tuple[Any, ...]]
) -> Iterator[sa.ColumnElement[bool]]:
    for chunk in chunks(values):
        yield _matching(cols, chunk)


def insert_rows(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert rows holding `columns`: by COPY on PostgreSQL, one executemany on SQLite."""
    if rows:
        _INSERT[dialect_for(conn).kind](conn, table, columns, rows)


def insert_text_rows(
    conn: Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[str | int | None]],
) -> None:
    """Insert rows of plain text and integers (values in `columns` order, no bind processing):
    as COPY text in one buffer on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return
    if dialect_for(conn).kind is Kind.POSTGRES:
        copy_text_rows(conn, table, columns, rows)
    else:
        conn.execute(sa.insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


def _copy_in(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    copy_rows(conn, table, columns, ([r[c] for c in columns] for r in rows))


def _execute_many(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    conn.execute(sa.insert(table), list(rows))


# Each dialect's way with the hot paths above (module docstring).
_UPSERT = {Kind.POSTGRES: _from_stage, Kind.SQLITE: _from_params}
_KEY_MATCHES = {Kind.POSTGRES: _in_arrays, Kind.SQLITE: _in_chunks}
_INSERT = {Kind.POSTGRES: _copy_in, Kind.SQLITE: _execute_many}


# --- the policy's tables at the hub -------------------------------------------------------


def hub_tables(policy: Policy) -> sa.MetaData:
    """The consolidated and source tables of a policy, built once and kept on the policy."""
    return policy.derived("hub_tables", lambda: h.policy_metadata(policy))


def source_table(policy: Policy, table: Table) -> sa.Table:
    return hub_tables(policy).tables[h.source_table_name(table)]


def golden_table(policy: Policy, table: Table) -> sa.Table:
    return hub_tables(policy).tables[table.name]


def merged_columns(table: Table) -> tuple[str, ...]:
    """The golden record's columns chosen by merge rules (data columns minus identity)."""
    return tuple(c for c in table.data_columns if c not in table.identity)
