"""The database edge: engines, per-dialect connection setup, and driver-error translation."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from importlib import resources
from string import Template
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from syncd.core.canonical import canonical
from syncd.core.errors import DatabaseError, SyncdError, TransientError
from syncd.core.redact import redact_url
from syncd.store.dialect import dialect_for

# SQLSTATE classes worth retrying: connection exceptions, serialization failure, deadlock,
# lock not available, query canceled (statement/lock timeouts), admin shutdown, cannot connect.
_TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03")


# What syncd's own PostgreSQL sessions wait for at most, unless the caller says otherwise: a
# lock held elsewhere (on the inbox, a node row, a CRM row) fails the statement after
# LOCK_TIMEOUT_MS as a transient error that is retried, instead of holding a cycle (and a
# shutdown) for as long as the other transaction lasts.

LOCK_TIMEOUT_MS = 10_000
STATEMENT_TIMEOUT_MS = 600_000
# The DBAPI connections each engine has lent out, for cancel_running.
_LENT: weakref.WeakKeyDictionary[Any, set[Any]] = weakref.WeakKeyDictionary()
_LENT_LOCK = threading.Lock()


def create_engine(
    url: str,
    *,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    **kwargs: Any,
) -> Engine:
    """An engine with syncd's connection defaults for the URL's dialect.

    Every connection it lends is tracked while lent, so `cancel_running` can interrupt the
    statements in flight (a daemon told to stop); connections go back to the pool as they
    came (see `_reset_autocommit`).
    """
    # JSON columns get syncd's canonical encoder: exact decimals and dates, whatever the
    # source dialect of the values (a PostgreSQL city's Decimals into a SQLite hub).
    kwargs.setdefault("json_serializer", canonical)
    dialect = dialect_for(url)
    options = dialect.engine_options(lock_timeout_ms, statement_timeout_ms)
    engine = sa.create_engine(url, **options, **kwargs)
    dialect.configure(engine)
    lent: set[Any] = set()
    _LENT[engine] = lent

    def on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        with _LENT_LOCK:
            lent.add(dbapi_conn)

    def on_checkin(dbapi_conn: Any, _record: Any) -> None:
        with _LENT_LOCK:
            lent.discard(dbapi_conn)
        _reset_autocommit(dbapi_conn)

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    return engine


def _reset_autocommit(dbapi_conn: Any) -> None:
    # A connection lent out must come back in the state every borrower assumes: one
    # transaction at a time. One left in autocommit (a LISTEN loop did this once) would run
    # an apply statement by statement, losing its staging tables and transaction locks.
    if dbapi_conn is not None and getattr(dbapi_conn, "autocommit", False) is True:
        dbapi_conn.autocommit = False


def cancel_running(engine: Engine) -> int:
    """Interrupt the statements running on the engine's lent connections; how many were asked.

    For shutdown: the interrupted statement fails (PostgreSQL: query_canceled, SQLite:
    interrupted), its transaction rolls back, and the job that ran it sees a transient error.
    """
    with _LENT_LOCK:
        lent = list(_LENT.get(engine, ()))
    asked = 0
    for dbapi_conn in lent:
        try:
            if isinstance(dbapi_conn, sqlite3.Connection):
                dbapi_conn.interrupt()
            else:
                dbapi_conn.cancel()
            asked += 1
        except Exception:  # noqa: S112 - closed meanwhile: nothing left to cancel
            continue
    return asked


def utcnow() -> dt.datetime:
    """Now as naive UTC: how every syncd timestamp column stores time, on both dialects."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same work may succeed (network, timeouts, lock/serialization)."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, sa.exc.TimeoutError):
        return True  # the pool had no free connection in time: another job holds it
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate.startswith(_TRANSIENT_SQLSTATES)
        if isinstance(exc, OperationalError):
            text = str(orig).lower()
            if "locked" in text or "busy" in text or "interrupted" in text:
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


# Literals a database message may quote from the row it refused ("invalid input syntax for
# type bigint: \"12x\"", "Key (id)=(42) already exists").
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'|\([^()]*\)=\([^()]*\)")


def describe_failure(exc: BaseException) -> str:
    """What failed, for status and logs, without the values of any row.

    A database error is named by its class and SQLSTATE, with the table, column and
    constraint the server reports and its message with quoted literals cut out; anything
    else by its type (and syncd's own message, which never quotes row values).
    """
    orig = _driver_error(exc)
    if orig is None:
        if isinstance(exc, SyncdError):
            return f"{type(exc).__name__}: {redact_url(str(exc))}"
        return type(exc).__name__
    parts = [type(orig).__name__]
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        parts.append(f"(SQLSTATE {sqlstate})")
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None) or (str(orig).splitlines() or [""])[0]
    parts.append(_QUOTED.sub("…", redact_url(primary)))
    for what in ("table_name", "column_name", "constraint_name"):
        value = getattr(diag, what, None)
        if value:
            parts.append(f"[{what.removesuffix('_name')} {value}]")
    return " ".join(p for p in parts if p)


def _driver_error(exc: BaseException | None) -> BaseException | None:
    """The driver's own exception behind exc (through syncd's and SQLAlchemy's wrappers)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DBAPIError):
            orig: BaseException | None = exc.orig
            return orig
        if type(exc).__module__.split(".")[0] in ("psycopg", "sqlite3"):
            return exc
        exc = exc.__cause__
        seen += 1
    return None


def row_fault(exc: BaseException) -> bool:
    """Whether the database refused a write for the values of the row it was given.

    Data exceptions (SQLSTATE class 22: out of range, too long, bad datetime) and integrity
    violations (23: not null, unique, check) are about the row; anything else (a missing
    column, out of memory, a refused connection) is about the hub or the batch. On SQLite,
    integrity errors and Python values the driver cannot bind are the row's.
    """
    orig = _driver_error(exc)
    if orig is None:
        return isinstance(exc, OverflowError | ValueError | TypeError | ArithmeticError)
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(("22", "23"))
    return isinstance(orig, sqlite3.IntegrityError | sqlite3.DataError | OverflowError)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run a block, turning driver errors into syncd errors named by `what`."""
    try:
        yield
    except (DBAPIError, sa.exc.SQLAlchemyError, OSError) as exc:
        raise translate(exc, what) from exc


# Only ${name} is a placeholder; the other groups Template requires never match.
_PLACEHOLDER = r"\$\{(?P<braced>[a-z_]+)\}|(?P<escaped>(?!))|(?P<named>(?!))|(?P<invalid>(?!))"


class SqlTemplate(Template):
    """`${name}` placeholders only, so PostgreSQL's `$tag$` quoting passes through untouched."""

    # Template compiles this string in __init_subclass__; typeshed only knows the result.
    pattern = _PLACEHOLDER  # type: ignore[assignment]


@cache
def sql_template(package: str, dialect: str, name: str) -> SqlTemplate:
    """A SQL file shipped in `<package>/sql/<dialect>/`, its leading comment block cut.

    The comment documents the file; a catalog that keeps a trigger's or function's text (and
    a fingerprint of it) should hold only the statement.
    """
    text = resources.files(package).joinpath("sql", dialect, name).read_text(encoding="utf-8")
    lines = text.strip().splitlines()
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    return SqlTemplate("\n".join(lines))


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


def _copy_text(value: str | int | None) -> str:
    """One value in COPY's text format: NULL is \\N; backslash, newline, CR, tab escaped."""
    if value is None:
        return "\\N"
    if not isinstance(value, str):
        return str(value)
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value or "\r" in value or "\t" in value:
        value = value.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return value


def copy_text_rows(
    conn: Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[str | int | None]],
) -> None:
    """Load rows of plain text and integers into `table` with COPY, in the open transaction.

    PostgreSQL only. For columns that need no bind processing (text, integers): the rows are
    written as COPY text in one buffer, which is several times cheaper per row than
    `copy_rows` for a hot path of many small rows (the audit log's row decisions).
    """
    text = "".join("\t".join(map(_copy_text, row)) + "\n" for row in rows)
    if text:
        _copy(conn, table, columns, lambda copy: copy.write(text.encode("utf-8")))


def _copy(
    conn: Connection, table: sa.Table, columns: Sequence[str], feed: Callable[[Any], None]
) -> None:
    """COPY `columns` of `table` FROM STDIN on the connection's driver, `feed` writing the data.

    A failure is wrapped as SQLAlchemy would have wrapped it, past which this runs: `translated`
    and `is_transient` then see a COPY failure like any other statement's.
    """
    dialect = conn.dialect
    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(c) for c in columns)
    statement = f"COPY {quote.format_table(table)} ({names}) FROM STDIN"
    dbapi_error = dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as copy:
            feed(copy)
    except dbapi_error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi_error, dialect=dialect) from exc
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

    def feed(copy: Any) -> None:
        for row in rows:
            copy.write_row(
                [
                    v if p is None or v is None else p(v)
                    for p, v in zip(processors, row, strict=True)
                ]
            )

    _copy(conn, table, columns, feed)
