"""The database edge: engines, per-dialect connection setup, and driver-error translation."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from syncd.canonical import canonical
from syncd.errors import DatabaseError, TransientError
from syncd.redact import redact_url

# SQLSTATE classes worth retrying: connection exceptions, serialization failure, deadlock,
# lock not available, query canceled (statement/lock timeouts), admin shutdown, cannot connect.
_TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03")


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with syncd's connection defaults for the URL's dialect."""
    # JSON columns get syncd's canonical encoder: exact decimals and dates, whatever the
    # source dialect of the values (a PostgreSQL city's Decimals into a SQLite hub).
    kwargs.setdefault("json_serializer", canonical)
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"timeout": 30, "isolation_level": None}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    connect_args = {"connect_timeout": 5, "application_name": "syncd"}
    return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # pysqlite's own BEGIN handling is off (isolation_level=None): take the write lock at BEGIN,
    # so a transaction never upgrades from read to write half-way and dies with SQLITE_BUSY.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def utcnow() -> dt.datetime:
    """Now as naive UTC: how every syncd timestamp column stores time, on both dialects."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same work may succeed (network, timeouts, lock/serialization)."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate.startswith(_TRANSIENT_SQLSTATES)
        if isinstance(exc, OperationalError):
            text = str(orig).lower()
            if "locked" in text or "busy" in text:
                return True
            if "unable to open" in text:
                return False
            # psycopg raises OperationalError without SQLSTATE when it cannot connect.
            return getattr(orig, "sqlstate", "") is None and "sqlite" not in type(orig).__module__
    return isinstance(exc, ConnectionError | TimeoutError)


def translate(exc: BaseException, what: str) -> DatabaseError:
    """The syncd error for a driver error, with any password removed from its text."""
    text = redact_url(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    cls = TransientError if is_transient(exc) else DatabaseError
    if getattr(getattr(exc, "orig", None), "sqlstate", None) == "42P01" or "no such table" in first:
        first += " (is this node initialised? run `syncd init`)"
    return cls(f"{what}: {first}")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run a block, turning driver errors into syncd errors named by `what`."""
    try:
        yield
    except (DBAPIError, sa.exc.SQLAlchemyError, OSError) as exc:
        raise translate(exc, what) from exc


def run_script(conn: Connection, script: str) -> None:
    """Run a shipped SQL script (DDL, several statements) inside the connection's transaction.

    Goes to the driver without parameters, so '%' in PL/pgSQL (format('%s')) is not taken
    for a placeholder; scripts hold no runtime values, only the package's own SQL.
    """
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(script)
    finally:
        cursor.close()


def copy_rows(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Load rows (values in `columns` order) into `table` with COPY, in the open transaction.

    PostgreSQL only. Values pass through the columns' SQLAlchemy bind processors (jsonb,
    exact decimals), as an INSERT would send them, and travel as COPY text for the server to
    parse into the columns' types.
    """
    dialect = conn.dialect
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(c) for c in columns)
    statement = f"COPY {quote.format_table(table)} ({names}) FROM STDIN"
    dbapi_error = dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        v if p is None or v is None else p(v)
                        for p, v in zip(processors, row, strict=True)
                    ]
                )
    except dbapi_error as exc:
        # Past SQLAlchemy, so wrapped here as it would have: `translated` and `is_transient`
        # then see a COPY failure like any other statement's.
        raise DBAPIError.instance(statement, None, exc, dbapi_error, dialect=dialect) from exc
    finally:
        cursor.close()
