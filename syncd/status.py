"""`syncd status`: what ops need to see that sync is alive — backlog, lag, last contact, errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.city.push import STATE_ACKED, STATE_ERROR, STATE_PUSH, get_state
from syncd.core.canonical import loads
from syncd.core.settings import Settings
from syncd.store import hub_tables as h
from syncd.store.city_tables import changelog
from syncd.store.db import create_engine, is_postgres, translated, utcnow
from syncd.store.health import read_error


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
    last_error_kind: str | None = None
    healthy: bool = True
    problems: tuple[str, ...] = ()


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
    failing: bool = False
    failures: int = 0
    failing_since: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    retry_at: str | None = None


@dataclass(frozen=True)
class HubStatus:
    node_id: str
    role: str
    nodes: tuple[NodeStatus, ...]
    open_conflicts: int
    quarantined: int
    pending_batches: int
    warnings: tuple[str, ...] = field(default_factory=tuple)
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: str | None = None
    healthy: bool = True
    problems: tuple[str, ...] = ()


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
    bound = (
        engine
        if engine is not None
        else create_engine(settings.database.url, **settings.engine_options)
    )
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
    problems: tuple[str, ...] = ()
    if error.get("message"):
        problems = (f"last cycle failed at {error.get('at')}: {error['message']}",)
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
        last_error_kind=error.get("kind"),
        healthy=not problems,
        problems=problems,
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
        hub_error = read_error(conn, is_city=False) or {}
    now = utcnow()
    out: list[NodeStatus] = []
    warnings: list[str] = []
    problems: list[str] = []
    if hub_error:
        problems.append(f"last apply cycle failed at {hub_error.get('at')}: {hub_error['message']}")
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
        failing = bool(n["failures"])
        if failing:
            problems.append(
                f"{node_id} failing since {_iso(n['failing_since'])} ({n['failures']} tries, "
                f"next {_iso(n['retry_at'])}): {n['last_error']}"
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
                failing=failing,
                failures=int(n["failures"]),
                failing_since=_iso(n["failing_since"]),
                last_error=n["last_error"],
                last_error_at=_iso(n["last_error_at"]),
                retry_at=_iso(n["retry_at"]),
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
        last_error=hub_error.get("message"),
        last_error_kind=hub_error.get("kind"),
        last_error_at=hub_error.get("at"),
        healthy=not problems,
        problems=tuple(problems),
    )


def node_status(settings: Settings) -> CityStatus | HubStatus:
    return city_status(settings) if settings.is_city else hub_status(settings)
