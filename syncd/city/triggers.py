"""Capture trigger builders: the triggers (and PostgreSQL functions) a policy implies, per dialect.

`builder` picks `_Postgres` or `_Sqlite` from the dialect object's kind; each builds the DDL of a
table's triggers from the `.sql` templates in `syncd/city/sql/<dialect>/`, reads the live ones
from the catalog with the signature to compare, and creates and drops them. `capture` reconciles
the two. Identifiers come from the validated policy or the live catalog and are quoted by
SQLAlchemy; only triggers named `syncd_capture_…` are ever touched.

An update is logged as the new row under its new key; when it changes the primary key, a
key-change trigger (`KEY_SUFFIX`) also logs a delete of the old key, or the hub would keep a
row the city no longer has. Its UPDATE OF and WHEN clauses leave ordinary updates untouched.
PostgreSQL logs inserts, updates and deletes a statement at a time from its transition tables;
SQLite, which has no statement triggers, with row triggers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.core.batch import UNSENDABLE, Unsendable
from syncd.core.policy import ColumnType, Table
from syncd.store.bulk import chunks
from syncd.store.city_tables import changelog
from syncd.store.db import sql_template
from syncd.store.dialect import Kind, dialect_for

TRIGGER_PREFIX = "syncd_capture_"
# One trigger per event, on both dialects.
INSERT_SUFFIX = "_ins"
UPDATE_SUFFIX = "_upd"
DELETE_SUFFIX = "_del"
# The key-change trigger: an UPDATE that changes the primary key logs a delete of the old key.
KEY_SUFFIX = "_key"
# PostgreSQL: the transition tables of the statement triggers, as the function reads them.
NEW_ROWS = "syncd_capture_new"
OLD_ROWS = "syncd_capture_old"
# PostgreSQL: the transaction-local setting that says the transaction has notified already.
NOTIFIED = "syncd.capture_notified"
# The channel a PostgreSQL city's capture notifies at commit; its daemon LISTENs on it.
CAPTURE_CHANNEL = "syncd_changelog"
# The one generic function of early builds, dropped by init.
FUNCTION = "syncd_capture"
# PostgreSQL: each table's own capture function ends so.
FUNCTION_SUFFIX = "_fn"
_MAX_IDENT = 63


@dataclass(frozen=True)
class _Function:
    """A table's capture function (PostgreSQL), created with the first of its triggers."""

    name: str
    ddl: str


@dataclass(frozen=True)
class _Trigger:
    """One trigger as the policy wants it; `signature` is what the live catalog must show."""

    table: str
    name: str
    ddl: str
    signature: str
    function: _Function | None = None


def trigger_name(table: str, suffix: str = "") -> str:
    """The syncd trigger name for a table, shortened with a hash to fit PostgreSQL's 63 bytes."""
    name = f"{TRIGGER_PREFIX}{table}{suffix}"
    if len(name) <= _MAX_IDENT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_IDENT - 9]}_{digest}"


def _fingerprint(ddl: str) -> str:
    """`syncd:` and a hex digest: safe to put in a COMMENT literal as it is."""
    return "syncd:" + hashlib.sha256(ddl.encode()).hexdigest()


class TriggerBuilder(Protocol):
    """How one database captures changes; chosen by `builder` from the dialect's kind."""

    def prepare(self, conn: Connection, lock_timeout_ms: int) -> None: ...

    def desired(self, conn: Connection, insp: sa.Inspector, table: Table) -> list[_Trigger]: ...

    def installed(self, conn: Connection) -> dict[str, dict[str, str]]: ...

    def create(self, conn: Connection, trigger: _Trigger) -> None: ...

    def drop(self, conn: Connection, table: str, name: str) -> None: ...

    def forget(self, conn: Connection, table: str) -> None: ...

    def problems(self, conn: Connection) -> list[tuple[str, str]]: ...

    def finish(self, conn: Connection) -> None: ...

    def image(self, source: sa.Table, table: Table) -> sa.ColumnElement[Any]: ...


def function_name(table: str) -> str:
    """The PostgreSQL capture function of one table (its triggers share it)."""
    return trigger_name(table, FUNCTION_SUFFIX)


# jsonb_build_object takes at most 100 arguments: a wider image is joined from parts.
_PAIRS_PER_CALL = 50
# SQLite's limit is 127 arguments (json_insert's first is the object).
_SQLITE_PAIRS = 60


class _Postgres:
    """A PL/pgSQL function per table built from the policy; statement triggers, fingerprinted.

    Three triggers per table, one per event (PostgreSQL allows transition tables on a trigger
    of one event only), each `FOR EACH STATEMENT` with its transition tables: the function
    logs the whole statement with one INSERT … SELECT and notifies the capture channel
    (capture_function.sql). The UPDATE trigger reads the old rows only on a filtered table
    (their filter values). The key-change trigger (`KEY_SUFFIX`) is a row trigger whose
    UPDATE OF and WHEN clauses leave ordinary updates untouched; row triggers fire before
    statement triggers, so an old key's delete always precedes the rows logged under new
    keys. A trigger's signature covers its own DDL and its function's, so a policy change
    that alters the image replaces both, and the row triggers of earlier builds (main,
    `_upd`/`_flt`, `_ntf`) are replaced or dropped by the next `init`.
    """

    # (event, trigger suffix, transition tables); the names are syncd's own, so they do not
    # shadow a CRM table the function might otherwise read.
    _EVENTS = (
        ("INSERT", INSERT_SUFFIX, f"NEW TABLE AS {NEW_ROWS}"),
        ("UPDATE", UPDATE_SUFFIX, f"OLD TABLE AS {OLD_ROWS} NEW TABLE AS {NEW_ROWS}"),
        ("DELETE", DELETE_SUFFIX, f"OLD TABLE AS {OLD_ROWS}"),
    )

    def __init__(self) -> None:
        self._saved_lock_timeout: str | None = None
        # Functions (name, fingerprint) created by this install: each table's triggers share one.
        self._created: set[tuple[str, str]] = set()

    def _changelog(self, conn: Connection) -> str:
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        prep = conn.dialect.identifier_preparer
        return f"{prep.quote_schema(schema)}.{prep.quote(changelog.name)}"

    def _image(self, conn: Connection, row: str, columns: Sequence[str]) -> str:
        prep = conn.dialect.identifier_preparer
        pairs = [f"{_literal(conn, c)}, {row}.{prep.quote(c)}" for c in columns]
        calls = ["jsonb_build_object(" + ", ".join(p) + ")" for p in chunks(pairs, _PAIRS_PER_CALL)]
        return " || ".join(calls)

    def _update_sql(self, conn: Connection, table: Table, changelog_name: str) -> str:
        """The UPDATE branch of the function: each new row as 'U' (capture_update_*.sql)."""
        prep = conn.dialect.identifier_preparer
        common = {
            "changelog": changelog_name,
            "table": _literal(conn, table.name),
            "new_image": self._image(conn, "n", table.public_columns),
            "new_rows": NEW_ROWS,
        }
        if not table.filter:
            return sql_template("syncd.city", "postgresql", "capture_update_plain.sql").substitute(
                common
            )
        key = _quoted_key(conn, table)
        filters = [prep.quote(c) for c in table.filter_columns]
        return sql_template("syncd.city", "postgresql", "capture_update_filtered.sql").substitute(
            common,
            old_rows=OLD_ROWS,
            first_key=key[0],
            narrow=", ".join(dict.fromkeys([*key, *filters])),
            key_join=" AND ".join(f"n.{c} = o.{c}" for c in key),
            old_values="(" + ", ".join(f"o.{c}" for c in filters) + ")",
            new_values="(" + ", ".join(f"n.{c}" for c in filters) + ")",
            old_filter=self._image(conn, "o", table.filter_columns),
        )

    def _function_ddl(self, conn: Connection, table: Table) -> str:
        prep = conn.dialect.identifier_preparer
        public = table.public_columns
        changelog_name = self._changelog(conn)
        return sql_template("syncd.city", "postgresql", "capture_function.sql").substitute(
            function=prep.quote(function_name(table.name)),
            changelog=changelog_name,
            table=_literal(conn, table.name),
            new_rows=NEW_ROWS,
            old_rows=OLD_ROWS,
            update_sql=self._update_sql(conn, table, changelog_name),
            new_image=self._image(conn, "n", public),
            old_image=self._image(conn, "o", public),
            old_row_image=self._image(conn, "OLD", public),
            notified=_literal(conn, NOTIFIED),
            channel=_literal(conn, CAPTURE_CHANNEL),
        )

    def image(self, source: sa.Table, table: Table) -> sa.ColumnElement[Any]:
        return sa.func.jsonb_build_object(
            *(v for name in table.public_columns for v in (_key(name), source.c[name]))
        )

    def prepare(self, conn: Connection, lock_timeout_ms: int) -> None:
        self._saved_lock_timeout = conn.execute(
            sa.text("SELECT current_setting('lock_timeout')")
        ).scalar_one()
        self._set_lock_timeout(conn, f"{lock_timeout_ms}ms")

    def finish(self, conn: Connection) -> None:
        # syncd 0.1 development builds had one generic function; no trigger uses it any more.
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
        # The caller's transaction may go on with other work that should wait as it chose to.
        if self._saved_lock_timeout is not None:
            self._set_lock_timeout(conn, self._saved_lock_timeout)

    def _set_lock_timeout(self, conn: Connection, value: str) -> None:
        # SET LOCAL cannot take a bound parameter; set_config(..., true) is its equivalent.
        conn.execute(sa.text("SELECT set_config('lock_timeout', :value, true)"), {"value": value})

    def desired(self, conn: Connection, insp: sa.Inspector, table: Table) -> list[_Trigger]:
        prep = conn.dialect.identifier_preparer
        function = _Function(function_name(table.name), self._function_ddl(conn, table))
        ddls: list[tuple[str, str]] = []
        for event, suffix, transitions in self._EVENTS:
            # An unfiltered table's update has no old filter values to read.
            plain = event == "UPDATE" and not table.filter
            transition = f"NEW TABLE AS {NEW_ROWS}" if plain else transitions
            name = trigger_name(table.name, suffix)
            ddl = sql_template("syncd.city", "postgresql", "capture_trigger.sql").substitute(
                trigger=prep.quote(name),
                event=event,
                table=prep.quote(table.name),
                transition=transition,
                function=prep.quote(function.name),
            )
            ddls.append((name, ddl))
        key = _quoted_key(conn, table)
        key_name = trigger_name(table.name, KEY_SUFFIX)
        key_ddl = sql_template("syncd.city", "postgresql", "capture_key_trigger.sql").substitute(
            trigger=prep.quote(key_name),
            table=prep.quote(table.name),
            key_columns=", ".join(key),
            old_key="(" + ", ".join(f"OLD.{c}" for c in key) + ")",
            new_key="(" + ", ".join(f"NEW.{c}" for c in key) + ")",
            function=prep.quote(function.name),
        )
        ddls.append((key_name, key_ddl))
        return [
            _Trigger(
                table.name,
                name,
                ddl,
                f"{_fingerprint(ddl)}|{_fingerprint(function.ddl)}|{function.name}",
                function,
            )
            for name, ddl in ddls
        ]

    def installed(self, conn: Connection) -> dict[str, dict[str, str]]:
        # Enabled, with both comments syncd wrote: anything else reads as out of date.
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, t.tgname,"
                " CASE WHEN t.tgenabled = 'O' THEN"
                " coalesce(obj_description(t.oid, 'pg_trigger'), '') || '|' ||"
                " coalesce(obj_description(p.oid, 'pg_proc'), '') || '|' ||"
                " p.proname ELSE '' END"
                " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " JOIN pg_proc p ON p.oid = t.tgfoid"
                " WHERE NOT t.tgisinternal AND starts_with(t.tgname, :prefix)"
                " AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"prefix": TRIGGER_PREFIX},
        )
        found: dict[str, dict[str, str]] = {}
        for table, name, signature in rows:
            found.setdefault(table, {})[name] = signature
        return found

    def create(self, conn: Connection, trigger: _Trigger) -> None:
        prep = conn.dialect.identifier_preparer
        fn = trigger.function
        if fn is not None and (fn.name, _fingerprint(fn.ddl)) not in self._created:
            conn.exec_driver_sql(fn.ddl)
            conn.exec_driver_sql(
                f"COMMENT ON FUNCTION {prep.quote(fn.name)}() IS '{_fingerprint(fn.ddl)}'"
            )
            self._created.add((fn.name, _fingerprint(fn.ddl)))
        conn.exec_driver_sql(trigger.ddl)
        conn.exec_driver_sql(
            f"COMMENT ON TRIGGER {prep.quote(trigger.name)} ON {prep.quote(trigger.table)}"
            f" IS '{_fingerprint(trigger.ddl)}'"
        )

    def drop(self, conn: Connection, table: str, name: str) -> None:
        prep = conn.dialect.identifier_preparer
        conn.exec_driver_sql(f"DROP TRIGGER {prep.quote(name)} ON {prep.quote(table)}")

    def forget(self, conn: Connection, table: str) -> None:
        prep = conn.dialect.identifier_preparer
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {prep.quote(function_name(table))}()")

    def problems(self, conn: Connection) -> list[tuple[str, str]]:
        # A function that differs from the policy shows in its triggers' signatures.
        return []


class _Sqlite:
    """Four triggers per table from one template; the catalog keeps their SQL to compare."""

    _EVENTS = (
        ("INSERT", "I", INSERT_SUFFIX),
        ("UPDATE", "U", UPDATE_SUFFIX),
        ("DELETE", "D", DELETE_SUFFIX),
    )

    def image(self, source: sa.Table, table: Table) -> sa.ColumnElement[Any]:
        # Exactly what the trigger writes (BLOBs as stand-ins, lists as arrays).
        return sa.func.json_object(
            *(
                v
                for name in table.public_columns
                for v in (_key(name), sqlite_image_value(source.c[name], table.columns[name].type))
            )
        )

    def prepare(self, conn: Connection, lock_timeout_ms: int) -> None:
        """Nothing to do: SQLite writers take the database lock at BEGIN (see syncd.store.db)."""

    def finish(self, conn: Connection) -> None:
        """Nothing to restore."""

    def _json_object(
        self, conn: Connection, table: Table, row: str, columns: tuple[str, ...]
    ) -> str:
        """A JSON object of the columns of OLD or NEW, as one SQL expression."""
        prep = conn.dialect.identifier_preparer
        pairs = []
        for name in columns:
            column: sa.ColumnElement[Any] = sa.literal_column(f"{row}.{prep.quote(name)}")
            value = sqlite_image_value(column, table.columns[name].type)
            pairs.append((name, _sql(conn, value)))
        # SQLite functions take at most 127 arguments: a wider row is built by json_insert
        # calls that add the next columns to the object (a NULL value is a JSON null).
        first, rest = pairs[:_SQLITE_PAIRS], pairs[_SQLITE_PAIRS:]
        expr = "json_object(" + ", ".join(f"{_literal(conn, n)}, {v}" for n, v in first) + ")"
        for part in chunks(rest, _SQLITE_PAIRS):
            more = ", ".join(f"{_literal(conn, f'$.{n}')}, {v}" for n, v in part)
            expr = f"json_insert({expr}, {more})"
        return expr

    def desired(self, conn: Connection, insp: sa.Inspector, table: Table) -> list[_Trigger]:
        triggers = [
            self._trigger(conn, table, event, op, suffix) for event, op, suffix in self._EVENTS
        ]
        key = _quoted_key(conn, table)
        # Any key column that changes moves the row to another key: OR, with IS NOT so that
        # NULL (which SQLite allows in a non-integer primary key) compares as a value.
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in key)
        triggers.append(
            self._trigger(
                conn, table, f"UPDATE OF {', '.join(key)}", "D", KEY_SUFFIX, f" WHEN {changed}"
            )
        )
        return triggers

    def _trigger(
        self, conn: Connection, table: Table, event: str, op: str, suffix: str, when: str = ""
    ) -> _Trigger:
        prep = conn.dialect.identifier_preparer
        # A delete, and the key-change trigger's delete of the old key, log the old row.
        row = "OLD" if op == "D" else "NEW"
        old_filter = "NULL"
        if op == "U" and table.filter:
            # As on PostgreSQL: old filter values only when the update changes one of them.
            obj = self._json_object(conn, table, "OLD", table.filter_columns)
            changed = " OR ".join(
                f"OLD.{c} IS NOT NEW.{c}" for c in (prep.quote(n) for n in table.filter_columns)
            )
            old_filter = f"CASE WHEN {changed} THEN {obj} END"
        name = trigger_name(table.name, suffix)
        ddl = sql_template("syncd.city", "sqlite", "capture_trigger.sql").substitute(
            trigger=prep.quote(name),
            event=event,
            table=prep.quote(table.name),
            when=when,
            table_name=_literal(conn, table.name),
            op=_literal(conn, op),
            image=self._json_object(conn, table, row, table.public_columns),
            old_filter=old_filter,
        )
        return _Trigger(table.name, name, ddl, ddl)

    def installed(self, conn: Connection) -> dict[str, dict[str, str]]:
        rows = conn.execute(
            sa.text(
                "SELECT tbl_name, name, sql FROM sqlite_master"
                " WHERE type = 'trigger' AND substr(name, 1, length(:prefix)) = :prefix"
            ),
            {"prefix": TRIGGER_PREFIX},
        )
        found: dict[str, dict[str, str]] = {}
        for table, name, ddl in rows:
            found.setdefault(table, {})[name] = ddl
        return found

    def create(self, conn: Connection, trigger: _Trigger) -> None:
        conn.exec_driver_sql(trigger.ddl)

    def drop(self, conn: Connection, table: str, name: str) -> None:
        conn.exec_driver_sql(f"DROP TRIGGER {conn.dialect.identifier_preparer.quote(name)}")

    def forget(self, conn: Connection, table: str) -> None:
        """Nothing besides the triggers: SQLite triggers hold their own SQL."""

    def problems(self, conn: Connection) -> list[tuple[str, str]]:
        return []


def sqlite_image_value(value: sa.ColumnElement[Any], type_: ColumnType) -> sa.ColumnElement[Any]:
    """A SQLite column's value as a capture image holds it (the triggers' and snapshot's).

    json_object fails on a BLOB, and a failing trigger would fail the CRM's own write: a BLOB,
    in any column (SQLite stores one whatever the declared type), becomes the stand-in of
    `batch.unsendable`. Lists are stored as JSON text and embedded as arrays; text that is not
    JSON stays a string for the hub to reject. Text that is not UTF-8 or holds a NUL character
    is copied as it is; the pusher replaces it when it reads the image (`transport`).
    """
    blob = sa.func.json_object(
        sa.literal(UNSENDABLE, sa.String()), sa.literal(Unsendable.BLOB.value, sa.String())
    )
    other = value
    if type_ is ColumnType.LIST:
        other = sa.case((sa.func.json_valid(value) == 1, sa.func.json(value)), else_=value)
    # The simple CASE form: typeof is called once per column (this runs on every CRM write).
    return sa.case({"blob": blob}, value=sa.func.typeof(value), else_=other)


def _sql(conn: Connection, expr: sa.ColumnElement[Any]) -> str:
    """An expression as SQL text with its values inline, for trigger DDL (policy names only)."""
    return str(expr.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


_BUILDERS: dict[Kind, type[TriggerBuilder]] = {Kind.POSTGRES: _Postgres, Kind.SQLITE: _Sqlite}


def builder(conn: Connection) -> TriggerBuilder:
    """The trigger builder for the connection's database."""
    return _BUILDERS[dialect_for(conn).kind]()


def row_image(conn: Connection, source: sa.Table, table: Table) -> sa.ColumnElement[Any]:
    """The image a capture trigger writes of a row of `source`, as one SQL expression."""
    return builder(conn).image(source, table)


def _key(name: str) -> sa.ColumnElement[str]:
    return sa.literal(name, sa.String())


def _quoted_key(conn: Connection, table: Table) -> list[str]:
    prep = conn.dialect.identifier_preparer
    return [prep.quote(c) for c in table.primary_key]


def _literal(conn: Connection, name: str) -> str:
    """A name as an SQL string literal (trigger arguments, JSON keys), escaped by SQLAlchemy.

    Policy names are plain identifiers already; live column names that the policy does not
    declare (PostgreSQL trigger arguments) need the escaping.
    """
    return _sql(conn, sa.literal(name, sa.String()))
