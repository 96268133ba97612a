"""Change capture on a city database: the triggers that append public changes to the changelog.

`install_triggers` reconciles the live triggers with the policy (add, replace, drop, keep) and
`verify_triggers` reports where they differ. What each trigger is, per dialect, is built by
`triggers`; this module decides which to create, replace or drop, in the caller's transaction.
On PostgreSQL the CRM tables, the changelog and the function live in the connection's current
schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from syncd.city.triggers import builder
from syncd.core.errors import DatabaseError, SchemaMismatch
from syncd.core.policy import Policy
from syncd.store.city_tables import changelog
from syncd.store.db import translate, translated

_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class CaptureReport:
    """What `install_triggers` did, as table names."""

    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.dropped)


@contextmanager
def _changing(what: str, lock_timeout_ms: int) -> Iterator[None]:
    """Turn driver errors while changing triggers into a syncd error that says what failed."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise DatabaseError(
                f"cannot {what}: table is busy (lock_timeout {lock_timeout_ms} ms); "
                "retry init later"
            ) from exc
        raise translate(exc, f"cannot {what}") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, f"cannot {what}") from exc


def _require_schema(insp: sa.Inspector, policy: Policy) -> None:
    """Refuse to install triggers that would fail every CRM write (SQLite checks columns late)."""
    tables = set(insp.get_table_names())
    if changelog.name not in tables:
        raise DatabaseError(
            f"cannot install capture triggers: table {changelog.name} does not exist "
            "(create syncd's tables first)"
        )
    missing: list[str] = []
    for table in policy.public_tables:
        if table.name not in tables:
            missing.append(f"table {table.name}")
            continue
        live = {c["name"] for c in insp.get_columns(table.name)}
        missing.extend(f"column {table.name}.{c}" for c in table.public_columns if c not in live)
    if missing:
        raise SchemaMismatch(
            "cannot install capture triggers, the database lacks what the policy declares: "
            + ", ".join(missing)
        )


def install_triggers(conn: Connection, policy: Policy, lock_timeout_ms: int) -> CaptureReport:
    """Make the capture triggers match the policy, in the caller's transaction; idempotent."""
    dialect = builder(conn)
    with _changing("install capture triggers", lock_timeout_ms):
        insp = sa.inspect(conn)
        _require_schema(insp, policy)
        dialect.prepare(conn, lock_timeout_ms)
        installed = dialect.installed(conn)
    added: list[str] = []
    replaced: list[str] = []
    dropped: list[str] = []
    kept: list[str] = []
    public = {t.name: t for t in policy.public_tables}
    for gone in sorted(installed.keys() - public.keys()):
        with _changing(f"drop capture trigger on {gone}", lock_timeout_ms):
            for name in sorted(installed[gone]):
                dialect.drop(conn, gone, name)
            dialect.forget(conn, gone)
        dropped.append(gone)
    for table_name, table in public.items():
        current = installed.get(table_name, {})
        with _changing(f"install capture trigger on {table_name}", lock_timeout_ms):
            wanted = dialect.desired(conn, insp, table)
            stale = [t for t in wanted if current.get(t.name) != t.signature]
            extra = sorted(current.keys() - {t.name for t in wanted})
            if not stale and not extra:
                kept.append(table_name)
                continue
            for name in extra + [t.name for t in stale if t.name in current]:
                dialect.drop(conn, table_name, name)
            for trigger in stale:
                dialect.create(conn, trigger)
        (replaced if current else added).append(table_name)
    dialect.finish(conn)
    return CaptureReport(tuple(added), tuple(replaced), tuple(dropped), tuple(kept))


def trigger_problems(conn: Connection, policy: Policy) -> list[tuple[str, str]]:
    """(table, problem) for every capture trigger that differs from what the policy implies."""
    dialect = builder(conn)
    insp = sa.inspect(conn)
    tables = set(insp.get_table_names())
    installed = dialect.installed(conn)
    problems = dialect.problems(conn)
    for table_name, triggers in sorted(installed.items()):
        declared = policy.tables.get(table_name)
        if declared is None or not declared.is_public:
            why = "is not declared in the policy" if declared is None else "is local"
            problems.extend(
                (table_name, f"table {why} but has capture trigger {name}")
                for name in sorted(triggers)
            )
    for table in policy.public_tables:
        if table.name not in tables:
            problems.append((table.name, "table is missing, so its changes cannot be captured"))
            continue
        current = installed.get(table.name, {})
        wanted = dialect.desired(conn, insp, table)
        for trigger in wanted:
            if trigger.name not in current:
                problems.append((table.name, f"capture trigger {trigger.name} is missing"))
            elif current[trigger.name] != trigger.signature:
                problems.append(
                    (
                        table.name,
                        f"capture trigger {trigger.name} is out of date, disabled or altered",
                    )
                )
        problems.extend(
            (table.name, f"unexpected capture trigger {name}")
            for name in sorted(current.keys() - {t.name for t in wanted})
        )
    return problems


def verify_triggers(conn: Connection, policy: Policy) -> list[str]:
    """Human-readable problems with the capture triggers; empty when they match the policy."""
    with translated("cannot read the capture triggers"):
        return [f"{table}: {problem}" for table, problem in trigger_problems(conn, policy)]
