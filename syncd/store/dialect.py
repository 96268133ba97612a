"""What differs between SQLite and PostgreSQL, in one object per database.

Engine code asks `dialect_for(conn)` to do a thing and never asks which database it is on.
`dialect_for` is the one place that looks at the name. Strategies too large for a method and
owned by one side (capture triggers, the inbox's submit, the hub's bulk SQL) are picked from
a mapping keyed by `Dialect.kind`, next to the code they belong to.

Why they differ:

- **Writers.** SQLite serialises writers: every transaction starts with BEGIN IMMEDIATE
  (`configure`), so no advisory lock is needed to order hub writers or audit chain heads, and
  sequence numbers are taken in commit order, so the pusher needs no gap guard
  (`sequence_gaps`). PostgreSQL takes numbers at write time and commits concurrently: hub
  writers take a transaction advisory lock (`lock_writers`) and the pusher waits out running
  transactions before it ships a sequence.
- **Wake-ups.** PostgreSQL has LISTEN/NOTIFY, so a capture trigger or a submission wakes the
  daemon (`can_listen`, `notify`); SQLite has none, so daemons poll.
- **Values.** PostgreSQL stores JSON as jsonb and decimals as exact NUMERIC. SQLite keeps JSON
  as text and decimals as canonical text (its REAL would round money), so money sums cast
  (`money_sum`) and decimals are bound as text (`decimal_type`, `bind_decimal`).
- **Connections.** PostgreSQL sessions get lock and statement timeouts and a small pool;
  SQLite files get WAL, a busy timeout and pysqlite's own BEGIN handling switched off.
- **Cities' access to the hub.** On PostgreSQL each city logs in with its own role, which may
  only call the SECURITY DEFINER submission functions (`has_roles`); a SQLite hub is a file,
  so access is the file's permissions and the same rules run in Python.
- **One daemon per node.** A session advisory lock on PostgreSQL; an flock on the database
  file on SQLite (`hold_lock`). Either dies with the process.
- **Reconcile digests.** PostgreSQL has md5 and exact NUMERIC sums; SQLite gets deterministic
  Python functions registered on every connection (`syncd.store.digest_functions`), so the
  same canonical text and hashes come out of both (`md5_hex`, `key32`, `hash_sum`, …).
- **Row locks.** A snapshot chunk reads its rows FOR SHARE on PostgreSQL to wait for their
  writers; SQLite has no row locks and needs none (`read_locked`).
"""

from __future__ import annotations

import decimal
import fcntl
import os
from enum import StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.interfaces import Dialect as SaDialect

from syncd.core.errors import DatabaseError
from syncd.store.digest_functions import register_functions


class Kind(StrEnum):
    """Which database; also the name of the `sql/<kind>/` folder holding its shipped SQL."""

    POSTGRES = "postgresql"
    SQLITE = "sqlite"


class Held(Protocol):
    """A lock held until `close`."""

    def close(self) -> None: ...


class Dialect:
    """The per-database behaviour syncd's engine code relies on; see the module docstring."""

    kind: Kind
    # Whether the daemon can be woken by NOTIFY instead of polling.
    can_listen: bool
    # Whether a sequence number may become visible after a higher one (the pusher's gap guard).
    sequence_gaps: bool
    # Whether each city logs in with its own role, limited to the submission functions.
    has_roles: bool

    def engine_options(self, lock_timeout_ms: int, statement_timeout_ms: int) -> dict[str, Any]:
        """Keyword arguments for `sqlalchemy.create_engine`."""
        raise NotImplementedError

    def configure(self, engine: Engine) -> None:
        """Session setup on a new engine (event listeners)."""

    def pool_options(self, size: int) -> dict[str, Any]:
        """Engine keyword arguments capping the pool at `size` connections."""
        raise NotImplementedError

    def lock_writers(self, conn: Connection, key: int) -> None:
        """Serialise writers that take the same `key` until the transaction ends."""

    def hold_lock(self, engine: Engine, key: int) -> Held | None:
        """A lock on the node's database for the process's lifetime; None if held elsewhere."""
        raise NotImplementedError

    def now(self) -> sa.ColumnElement[Any]:
        """The database clock as naive UTC."""
        raise NotImplementedError

    def minus_seconds(self, seconds: float) -> sa.ColumnElement[Any]:
        """The database clock `seconds` ago, comparable with timestamps it wrote."""
        raise NotImplementedError

    def notify(self, conn: Connection, channel: str) -> None:
        """Wake whoever listens on `channel` at commit (nothing where no one can listen)."""

    def read_locked(self, select: sa.Select[Any]) -> sa.Select[Any]:
        """A select that waits for transactions writing its rows, then reads their commit."""
        return select

    def money_sum(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The sum of a decimal column, as exact as the database stores it."""
        return sa.func.sum(expr)

    def joined_names(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """Comma-separated values of expr (sorted where the database can)."""
        raise NotImplementedError

    def decimal_type(self, precision: int, scale: int) -> sa.types.TypeEngine[Any]:
        """The column type holding an exact decimal."""
        return sa.Numeric(precision, scale)

    def bind_decimal(self, value: Any) -> Any:
        """A decimal as `decimal_type` stores it."""
        return value

    # Reconcile's digests (syncd.core.reconcile): the same canonical text and hashes on both.

    def md5_hex(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """md5 of a text as 32 lowercase hex digits."""
        raise NotImplementedError

    def key32(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
        """The first 8 hex digits of md5(text) as an integer."""
        raise NotImplementedError

    def hash_sum(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """Aggregate: the sum of the first 15 hex digits of each row's md5(text)."""
        raise NotImplementedError

    def exact_sum(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """Aggregate: the exact sum of a decimal column (text or NUMERIC)."""
        return sa.func.sum(expr)

    def decimal_text(self, expr: sa.ColumnElement[Any], scale: int) -> sa.ColumnElement[str]:
        """A decimal rendered with exactly `scale` digits after the point."""
        raise NotImplementedError

    def date_text(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        raise NotImplementedError

    def timestamp_text(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """A naive UTC timestamp as ISO seconds (YYYY-MM-DDTHH:MM:SS)."""
        raise NotImplementedError

    def list_elements(self, expr: sa.ColumnElement[Any]) -> sa.TableValuedAlias:
        """A JSON array's elements as text, one row each, in a column named `value`."""
        raise NotImplementedError

    def text_agg(self, expr: sa.ColumnElement[Any], sep: str) -> sa.ColumnElement[str]:
        """Aggregate: texts joined by `sep` in the order they come."""
        raise NotImplementedError

    def json_null(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Whether a JSON document is JSON null (a None SQLAlchemy stored as a document)."""
        raise NotImplementedError


class Postgres(Dialect):
    kind = Kind.POSTGRES
    can_listen = True
    sequence_gaps = True
    has_roles = True

    def engine_options(self, lock_timeout_ms: int, statement_timeout_ms: int) -> dict[str, Any]:
        timeouts = f"-c lock_timeout={int(lock_timeout_ms)}"
        timeouts += f" -c statement_timeout={int(statement_timeout_ms)}"
        connect_args = {"connect_timeout": 5, "application_name": "syncd", "options": timeouts}
        return {"connect_args": connect_args, "pool_pre_ping": True}

    def pool_options(self, size: int) -> dict[str, Any]:
        return {"pool_size": size, "max_overflow": 0}

    def lock_writers(self, conn: Connection, key: int) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.literal(key, sa.BigInteger))))

    def hold_lock(self, engine: Engine, key: int) -> Held | None:
        conn = engine.connect()
        # Off the pool for good: a session lock must not go back to the pool with the
        # connection, where another borrower would hold it without knowing, or keep it
        # after release. Closing the detached connection ends the session and the lock.
        conn.detach()
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
        conn.commit()
        if not got:
            conn.close()
            return None
        return conn

    def now(self) -> sa.ColumnElement[Any]:
        return sa.cast(sa.func.now(), sa.DateTime())

    def minus_seconds(self, seconds: float) -> sa.ColumnElement[Any]:
        interval = sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.literal(seconds), type_=sa.Interval())
        return self.now() - interval

    def notify(self, conn: Connection, channel: str) -> None:
        conn.execute(sa.select(sa.func.pg_notify(channel, "")))

    def read_locked(self, select: sa.Select[Any]) -> sa.Select[Any]:
        return select.with_for_update(read=True)

    def joined_names(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        ordered = postgresql.aggregate_order_by(sa.literal(","), expr)
        return sa.func.string_agg(expr, ordered, type_=sa.String())

    def md5_hex(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        return sa.func.md5(text, type_=sa.String())

    def _hex_int(self, text: sa.ColumnElement[Any], digits: int) -> sa.ColumnElement[int]:
        hexed = sa.literal("x") + sa.func.substr(self.md5_hex(text), 1, digits)
        return sa.cast(sa.cast(hexed, postgresql.BIT(digits * 4)), sa.BigInteger())

    def key32(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
        return self._hex_int(text, 8)

    def hash_sum(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        # sum(bigint) is numeric in PostgreSQL: a million 60-bit values do not overflow.
        return sa.func.sum(self._hex_int(text, 15), type_=sa.Numeric())

    def decimal_text(self, expr: sa.ColumnElement[Any], scale: int) -> sa.ColumnElement[str]:
        rounded = sa.func.round(sa.cast(expr, sa.Numeric()), scale, type_=sa.Numeric())
        return sa.cast(rounded, sa.Text())

    def date_text(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        return sa.func.to_char(expr, "YYYY-MM-DD", type_=sa.String())

    def timestamp_text(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        return sa.func.to_char(expr, 'YYYY-MM-DD"T"HH24:MI:SS', type_=sa.String())

    def list_elements(self, expr: sa.ColumnElement[Any]) -> sa.TableValuedAlias:
        return sa.func.jsonb_array_elements_text(expr).table_valued("value")

    def text_agg(self, expr: sa.ColumnElement[Any], sep: str) -> sa.ColumnElement[str]:
        return sa.func.string_agg(expr, sep, type_=sa.String())

    def json_null(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.func.jsonb_typeof(expr) == "null"


class _FileLock:
    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Sqlite(Dialect):
    kind = Kind.SQLITE
    can_listen = False
    sequence_gaps = False
    has_roles = False  # cities write to the hub file: access is the file's permissions

    def engine_options(self, lock_timeout_ms: int, statement_timeout_ms: int) -> dict[str, Any]:
        # pysqlite's own BEGIN handling off: `configure` begins every transaction itself.
        return {"connect_args": {"timeout": 30, "isolation_level": None}}

    def configure(self, engine: Engine) -> None:
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)

    def pool_options(self, size: int) -> dict[str, Any]:
        return {}  # one file, writers serialised: the default pool serves

    def hold_lock(self, engine: Engine, key: int) -> Held | None:
        # flock, which SQLite's own POSIX record locks do not touch; the key is the file.
        path = make_url(str(engine.url)).database
        if not path or path == ":memory:":
            return _FileLock(None)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return _FileLock(fd)

    def now(self) -> sa.ColumnElement[Any]:
        return sa.func.datetime("now", type_=sa.DateTime())

    def minus_seconds(self, seconds: float) -> sa.ColumnElement[Any]:
        return sa.func.datetime("now", f"-{float(seconds)} seconds")

    def money_sum(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        total = sa.func.sum(sa.cast(expr, sa.Float()), type_=sa.Float())
        return sa.func.round(total, 2, type_=sa.Float())

    def joined_names(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        return sa.func.group_concat(expr, sa.literal(","), type_=sa.String())

    def decimal_type(self, precision: int, scale: int) -> sa.types.TypeEngine[Any]:
        return sa.String(precision + 2)

    def bind_decimal(self, value: Any) -> Any:
        return str(decimal.Decimal(str(value)))

    # SQLite has no md5 and no exact decimals: deterministic Python functions registered on
    # every connection (`_sqlite_on_connect`, syncd.store.digest_functions).
    def md5_hex(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        return sa.func.syncd_md5(text, type_=sa.String())

    def key32(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
        return sa.func.syncd_key32(text, type_=sa.BigInteger())

    def hash_sum(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.syncd_hashsum(text, type_=sa.String())

    def exact_sum(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.syncd_decsum(expr, type_=sa.String())

    def decimal_text(self, expr: sa.ColumnElement[Any], scale: int) -> sa.ColumnElement[str]:
        return sa.func.syncd_dectext(expr, scale, type_=sa.String())

    def date_text(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        return sa.func.strftime("%Y-%m-%d", expr, type_=sa.String())

    def timestamp_text(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        # SQLite's date functions turn a "+08:00" suffix into UTC, as the hub's validation does.
        return sa.func.strftime("%Y-%m-%dT%H:%M:%S", expr, type_=sa.String())

    def list_elements(self, expr: sa.ColumnElement[Any]) -> sa.TableValuedAlias:
        return sa.func.json_each(expr).table_valued("value")

    def text_agg(self, expr: sa.ColumnElement[Any], sep: str) -> sa.ColumnElement[str]:
        return sa.func.group_concat(expr, sep, type_=sa.String())

    def json_null(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.func.json_type(expr) == "null"


def _sqlite_on_connect(dbapi_conn: Any, _record: object) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
    register_functions(dbapi_conn)
    # Only syncd's own connections define it: the read-only guard of syncd_province_insight
    # (syncd.city.insights) calls it, so a write from any other connection fails.
    dbapi_conn.create_function("syncd_insight_writer", 0, _insight_writer)


def _insight_writer() -> int:
    return 1


def _sqlite_on_begin(conn: Connection) -> None:
    # Take the write lock at BEGIN, so a transaction never upgrades from read to write
    # half-way and dies with SQLITE_BUSY.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


POSTGRES = Postgres()
SQLITE = Sqlite()
_BY_NAME: dict[str, Dialect] = {d.kind.value: d for d in (POSTGRES, SQLITE)}


def dialect_for(bind: Engine | Connection | SaDialect | str) -> Dialect:
    """The dialect object for an engine, a connection, a SQLAlchemy dialect or a URL."""
    if isinstance(bind, str):
        name = make_url(bind).get_backend_name()
    elif isinstance(bind, Engine | Connection):
        name = bind.dialect.name
    else:
        name = bind.name
    found = _BY_NAME.get(name)
    if found is None:
        raise DatabaseError(f"unsupported database {name!r}: syncd runs on SQLite and PostgreSQL")
    return found


def is_postgres(bind: Engine | Connection) -> bool:
    """For tests that check a database's own state; engine code asks `dialect_for` instead."""
    return dialect_for(bind).kind is Kind.POSTGRES
