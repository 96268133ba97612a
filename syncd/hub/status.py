"""`syncd status` at the hub: per node position, pending batches, lag, quarantine, failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.core.canonical import iso_seconds, loads
from syncd.core.settings import Settings
from syncd.hub import agreement, downlink, search
from syncd.store import hub_tables as h
from syncd.store.db import translated, utcnow
from syncd.store.health import read_error


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
    # Policy agreement (issue 12): the fingerprint of the node's last accepted batch, and why
    # its batches are refused while its policy differs from the hub's.
    policy_fingerprint: str | None = None
    policy_problem: str | None = None
    policy_problem_at: str | None = None
    refused_rows: int = 0
    last_refused_reason: str | None = None
    last_refused_at: str | None = None
    # The downward path (issue 14): insight batches built for the node, the last it applied
    # (acknowledged), and how long the oldest batch it has not applied has waited.
    down_built_seq: int = 0
    down_acked_seq: int = 0
    down_acked_at: str | None = None
    down_behind: int = 0
    down_lag_seconds: float | None = None
    display_name: str | None = None  # as reports show the city (杭州), if the registry has one


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
    policy_fingerprint: str | None = None  # of the policy the hub checks batches against
    downlink_error: str | None = None  # the last publish's failure, until one succeeds


def _per_node_counts(conn: Connection) -> tuple[dict[str, Any], dict[str, int], dict[str, int]]:
    pending = {
        n: (int(c), oldest)
        for n, c, oldest in conn.execute(
            sa.select(h.batches.c.node_id, sa.func.count(), sa.func.min(h.batches.c.received_at))
            .where(h.batches.c.status == h.BatchStatus.PENDING)
            .group_by(h.batches.c.node_id)
        )
    }
    quarantined = {
        n: int(c)
        for n, c in conn.execute(
            sa.select(h.quarantine.c.node_id, sa.func.count())
            .where(h.quarantine.c.status == h.QuarantineStatus.OPEN)
            .group_by(h.quarantine.c.node_id)
        )
    }
    conflicts: dict[str, int] = {}
    for (candidates,) in conn.execute(
        sa.select(sa.cast(h.conflicts.c.candidates, sa.Text)).where(
            h.conflicts.c.status == h.ConflictStatus.OPEN
        )
    ):
        for node in loads(candidates):
            conflicts[node] = conflicts.get(node, 0) + 1
    return pending, quarantined, conflicts


def hub_status(settings: Settings, engine: Engine) -> HubStatus:
    """The hub's status and each node's, read on the hub's engine."""
    with translated("reading hub status"), engine.connect() as conn:
        nodes = list(conn.execute(sa.select(h.nodes).order_by(h.nodes.c.node_id)).mappings())
        pending, quarantined, conflicts = _per_node_counts(conn)
        total_conflicts = int(
            conn.execute(
                sa.select(sa.func.count()).where(h.conflicts.c.status == h.ConflictStatus.OPEN)
            ).scalar_one()
        )
        hub_error = read_error(conn, is_city=False) or {}
        hub_policy = agreement.recorded(conn)
        down = downlink.lag(conn)
        down_error = downlink.last_error(conn)
        search_warning = search.index_warning(conn)
    now = utcnow()
    out: list[NodeStatus] = []
    warnings: list[str] = []
    problems: list[str] = []
    if search_warning:
        warnings.append(search_warning)
    if hub_error:
        problems.append(f"last apply cycle failed at {hub_error.get('at')}: {hub_error['message']}")
    if down_error:
        problems.append(f"sending insights to the cities failed: {down_error}")
    for n in nodes:
        node_id = n["node_id"]
        count, oldest = pending.get(node_id, (0, None))
        lag = (now - oldest).total_seconds() if oldest else 0.0
        seen = n["last_seen_at"]
        silent = seen is None or (now - seen).total_seconds() > settings.sync.silent_node_seconds
        if silent:
            warnings.append(
                f"{node_id} silent: last contact {iso_seconds(seen) or 'never'} "
                f"(threshold {settings.sync.silent_node_seconds:.0f} s)"
            )
        failing = bool(n["failures"])
        if failing:
            problems.append(
                f"{node_id} failing since {iso_seconds(n['failing_since'])} "
                f"({n['failures']} tries, next {iso_seconds(n['retry_at'])}): {n['last_error']}"
            )
        problems += _policy_problem(n)
        d = down.get(node_id, {})
        built, acked = d.get("built_seq", 0), d.get("acked_seq", 0)
        oldest_down = d.get("oldest_unacked_at")
        down_lag = (now - oldest_down).total_seconds() if oldest_down else 0.0
        if down_lag > settings.sync.silent_node_seconds:
            warnings.append(
                f"{node_id} has not applied {built - acked} insight batch(es) for "
                f"{down_lag:.0f} s (downward lag)"
            )
        out.append(
            NodeStatus(
                node_id=node_id,
                city_code=n["city_code"],
                last_seen_at=iso_seconds(seen),
                received_seq=int(n["received_seq"]),
                applied_seq=int(n["applied_seq"]),
                applied_at=iso_seconds(n["applied_at"]),
                pending_batches=count,
                lag_seconds=round(lag, 3),
                quarantined=quarantined.get(node_id, 0),
                open_conflicts=conflicts.get(node_id, 0),
                silent=silent,
                failing=failing,
                failures=int(n["failures"]),
                failing_since=iso_seconds(n["failing_since"]),
                last_error=n["last_error"],
                last_error_at=iso_seconds(n["last_error_at"]),
                retry_at=iso_seconds(n["retry_at"]),
                policy_fingerprint=n["policy_fingerprint"],
                policy_problem=n["policy_problem"],
                policy_problem_at=iso_seconds(n["policy_problem_at"]),
                refused_rows=int(n["refused_rows"]),
                last_refused_reason=n["last_refused_reason"],
                last_refused_at=iso_seconds(n["last_refused_at"]),
                down_built_seq=built,
                down_acked_seq=acked,
                down_acked_at=iso_seconds(d.get("acked_at")),
                down_behind=built - acked,
                down_lag_seconds=round(down_lag, 3),
                display_name=n["display_name"],
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
        policy_fingerprint=None if hub_policy is None else hub_policy.fingerprint,
        downlink_error=down_error,
    )


def _policy_problem(node: Any) -> list[str]:
    """A node whose batches the hub refuses for its policy: a problem until one is accepted."""
    if not node["policy_problem"]:
        return []
    return [
        f"{node['node_id']} refused since {iso_seconds(node['policy_problem_at'])}: "
        f"{node['policy_problem']}"
    ]
