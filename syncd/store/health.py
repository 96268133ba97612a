"""A node's health: its last failed cycle, kept where `status` reads it until a cycle succeeds.

Every failure of a cycle is recorded — the hub unreachable, the changelog unreadable, a
refused submit, the hub's database failing — with its time, its class and a message that
never carries row values (`syncd.store.db.describe_failure`). A city keeps it in its
`syncd_city_state`, a hub in `syncd_hub_state`; a hub's per-node apply failures live on the
node's row (`syncd.hub.nodes.record_node_failure`). The daemon also holds it in memory
(`Health`), for `/readyz` and metrics, which must answer when the database does not.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.store.city_tables import city_state
from syncd.store.db import describe_failure, translated, utcnow
from syncd.store.hub_tables import hub_state

ERROR_KEY = "last_error"


def put_state(conn: Connection, table: sa.Table, key: str, value: Any) -> None:
    """Set one key of a node's key/value state table (city or hub), in the caller's transaction."""
    now = utcnow()
    updated = conn.execute(
        table.update().where(table.c.key == key).values(value=value, updated_at=now)
    ).rowcount
    if not updated:
        conn.execute(table.insert().values(key=key, value=value, updated_at=now))


def state_table(is_city: bool) -> sa.Table:
    return city_state if is_city else hub_state


def error_record(exc: BaseException) -> dict[str, str]:
    """What is kept of a failure: when, its class, and a message without row values."""
    return {
        "message": describe_failure(exc),
        "kind": type(exc).__name__,
        "at": utcnow().isoformat(timespec="seconds"),
    }


def write_error(engine: Engine, is_city: bool, record: dict[str, str] | None) -> None:
    """Record (or, with None, clear) the node's last cycle failure in its own database."""
    with translated("recording the node's health"), engine.begin() as conn:
        put_state(conn, state_table(is_city), ERROR_KEY, record)


def read_error(conn: Connection, is_city: bool) -> dict[str, Any] | None:
    table = state_table(is_city)
    value = conn.execute(sa.select(table.c.value).where(table.c.key == ERROR_KEY)).scalar()
    return value if isinstance(value, dict) and value.get("message") else None


@dataclass
class Health:
    """The daemon's own view of its last cycle, thread-safe (jobs, metrics and /readyz)."""

    failing: bool = False
    last_error: str | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def failed(self, message: str) -> None:
        with self._lock:
            self.failing = True
            self.last_error = message

    def succeeded(self) -> None:
        with self._lock:
            self.failing = False
