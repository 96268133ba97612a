"""`syncd status`: what ops need to see that sync is alive — backlog, lag, last contact, errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd import schema_hub as h
from syncd.canonical import loads
from syncd.db import create_engine, is_postgres, translated, utcnow
from syncd.push import STATE_ACKED, STATE_ERROR, STATE_PUSH, get_state
from syncd.schema_city import changelog
from syncd.settings import Settings


@dataclass(frozen=True)
class CityStatus:
    node_id: str
    role: str
    backlog_rows: int
    lag_seconds: float | None
    oldest_unsent_at: str | None
    last_acked_seq: int
    last_acked_at: str | None
    last_push_at: str | None
    last_error: str | None
    last_error_at: str | None
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    city_code: str | None
    last_seen_at: str | None
    received_seq: int
    applied_seq: int
    applied_at: str | None
    pending_batches: int
    lag_seconds: float | None
    quarantined: int
    open_conflicts: int
    silent: bool


@dataclass(frozen=True)
class HubStatus:
    node_id: str
    role: str
    nodes: tuple[NodeStatus, ...]
    open_conflicts: int
    quarantined: int
    pending_batches: int
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _db_age_seconds(conn: Connection, ts: dt.datetime | None) -> float | None:
    """Age of a timestamp the database wrote, measured on the database's clock."""
    if ts is None:
        return None
    now_sql = "SELECT now()::timestamp" if is_postgres(conn) else "SELECT datetime('now')"
    now = conn.execute(sa.text(now_sql)).scalar_one()
    if isinstance(now, str):
        now = dt.datetime.fromisoformat(now)
    return max(0.0, float((now - ts).total_seconds()))


@contextmanager
def _connection(settings: Settings, engine: Engine | None, what: str) -> Iterator[Connection]:
    """A connection on the caller's engine (the daemon's), or on a short-lived one (the CLI)."""
    own = engine is None
    bound = create_engine(settings.database.url) if engine is None else engine
    try:
        with translated(what), bound.connect() as conn:
            yield conn
    finally:
        if own:
            bound.dispose()


def city_status(settings: Settings, engine: Engine | None = None) -> CityStatus:
    with _connection(settings, engine, "reading city status") as conn:
        state = get_state(conn)
        acked = (state.get(STATE_ACKED) or {}).get("seq", 0)
        backlog, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(changelog.c.captured_at)).where(
                changelog.c.seq > acked
            )
        ).one()
        lag = _db_age_seconds(conn, oldest)
    error = state.get(STATE_ERROR) or {}
    warnings = []
    if lag is not None and lag > settings.sync.backlog_warn_seconds:
        warnings.append(
            f"oldest unsent change is {lag / 3600:.1f} h old (threshold "
            f"{settings.sync.backlog_warn_seconds / 3600:.1f} h): is the hub reachable?"
        )
    if error.get("message"):
        warnings.append(f"last error: {error['message']}")
    return CityStatus(
        node_id=settings.node.id,
        role="city",
        backlog_rows=int(backlog),
        lag_seconds=None if lag is None else round(lag, 3),
        oldest_unsent_at=_iso(oldest),
        last_acked_seq=int(acked),
        last_acked_at=(state.get(STATE_ACKED) or {}).get("at"),
        last_push_at=(state.get(STATE_PUSH) or {}).get("at"),
        last_error=error.get("message"),
        last_error_at=error.get("at"),
        warnings=tuple(warnings),
    )


def _per_node_counts(conn: Connection) -> tuple[dict[str, Any], dict[str, int], dict[str, int]]:
    pending = {
        n: (int(c), oldest)
        for n, c, oldest in conn.execute(
            sa.select(h.batches.c.node_id, sa.func.count(), sa.func.min(h.batches.c.received_at))
            .where(h.batches.c.status == "pending")
            .group_by(h.batches.c.node_id)
        )
    }
    quarantined = {
        n: int(c)
        for n, c in conn.execute(
            sa.select(h.quarantine.c.node_id, sa.func.count())
            .where(h.quarantine.c.status == "open")
            .group_by(h.quarantine.c.node_id)
        )
    }
    conflicts: dict[str, int] = {}
    for (candidates,) in conn.execute(
        sa.select(sa.cast(h.conflicts.c.candidates, sa.Text)).where(h.conflicts.c.status == "open")
    ):
        for node in loads(candidates):
            conflicts[node] = conflicts.get(node, 0) + 1
    return pending, quarantined, conflicts


def hub_status(settings: Settings, engine: Engine | None = None) -> HubStatus:
    with _connection(settings, engine, "reading hub status") as conn:
        nodes = list(conn.execute(sa.select(h.nodes).order_by(h.nodes.c.node_id)).mappings())
        pending, quarantined, conflicts = _per_node_counts(conn)
        total_conflicts = int(
            conn.execute(
                sa.select(sa.func.count()).where(h.conflicts.c.status == "open")
            ).scalar_one()
        )
    now = utcnow()
    out: list[NodeStatus] = []
    warnings: list[str] = []
    for n in nodes:
        node_id = n["node_id"]
        count, oldest = pending.get(node_id, (0, None))
        lag = (now - oldest).total_seconds() if oldest else 0.0
        seen = n["last_seen_at"]
        silent = seen is None or (now - seen).total_seconds() > settings.sync.silent_node_seconds
        if silent:
            warnings.append(
                f"{node_id} silent: last contact {_iso(seen) or 'never'} "
                f"(threshold {settings.sync.silent_node_seconds:.0f} s)"
            )
        out.append(
            NodeStatus(
                node_id=node_id,
                city_code=n["city_code"],
                last_seen_at=_iso(seen),
                received_seq=int(n["received_seq"]),
                applied_seq=int(n["applied_seq"]),
                applied_at=_iso(n["applied_at"]),
                pending_batches=count,
                lag_seconds=round(lag, 3),
                quarantined=quarantined.get(node_id, 0),
                open_conflicts=conflicts.get(node_id, 0),
                silent=silent,
            )
        )
    return HubStatus(
        node_id=settings.node.id,
        role="hub",
        nodes=tuple(out),
        open_conflicts=total_conflicts,
        quarantined=sum(quarantined.values()),
        pending_batches=sum(c for c, _ in pending.values()),
        warnings=tuple(warnings),
    )


def node_status(settings: Settings) -> CityStatus | HubStatus:
    return city_status(settings) if settings.is_city else hub_status(settings)
