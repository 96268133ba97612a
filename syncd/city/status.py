"""`syncd status` at a city: backlog, lag, last acknowledgement, the last failed cycle."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.city import insights
from syncd.city.egress import last_acknowledged
from syncd.city.push import STATE_ACKED, STATE_ERROR, STATE_PUSH, get_state
from syncd.core.canonical import iso_seconds
from syncd.core.settings import Settings
from syncd.store.city_tables import changelog
from syncd.store.db import translated
from syncd.store.dialect import dialect_for


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
    # This node as the hub sees it (`Hub.report`): refused rows, a policy problem, open
    # quarantine; None when status was read without asking the hub (metrics) or it was down.
    at_hub: dict[str, Any] | None = None
    # The egress ledger's latest acknowledged batch: the hub's id for it, and when.
    last_egress_batch_id: int | None = None
    last_egress_at: str | None = None
    # The downward path (issue 14): the last insight batch applied here, the last the hub had
    # built when this city last asked, and the last failure to apply them.
    downlink_applied_seq: int = 0
    downlink_hub_seq: int | None = None
    downlink_behind: int | None = None
    downlink_applied_at: str | None = None
    downlink_error: str | None = None


def _db_age_seconds(conn: Connection, ts: dt.datetime | None) -> float | None:
    """Age of a timestamp the database wrote, measured on the database's clock."""
    if ts is None:
        return None
    now = conn.execute(sa.select(dialect_for(conn).now())).scalar_one()
    return max(0.0, float((now - ts).total_seconds()))


def city_status(settings: Settings, engine: Engine) -> CityStatus:
    """A city's status, read on its own engine."""
    with translated("reading city status"), engine.connect() as conn:
        state = get_state(conn)
        acked = (state.get(STATE_ACKED) or {}).get("seq", 0)
        backlog, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(changelog.c.captured_at)).where(
                changelog.c.seq > acked
            )
        ).one()
        lag = _db_age_seconds(conn, oldest)
        last_out = last_acknowledged(conn)
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
    down = insights.status_of(state)
    if down["error"]:
        problems += (f"applying the province's insights failed: {down['error']}",)
    return CityStatus(
        node_id=settings.node.id,
        role="city",
        backlog_rows=int(backlog),
        lag_seconds=None if lag is None else round(lag, 3),
        oldest_unsent_at=iso_seconds(oldest),
        last_acked_seq=int(acked),
        last_acked_at=(state.get(STATE_ACKED) or {}).get("at"),
        last_push_at=(state.get(STATE_PUSH) or {}).get("at"),
        last_error=error.get("message"),
        last_error_at=error.get("at"),
        warnings=tuple(warnings),
        last_error_kind=error.get("kind"),
        healthy=not problems,
        problems=problems,
        last_egress_batch_id=None if last_out is None else last_out.hub_batch_id,
        last_egress_at=None if last_out is None else iso_seconds(last_out.acknowledged_at),
        downlink_applied_seq=down["applied_seq"],
        downlink_hub_seq=down["hub_seq"],
        downlink_behind=down["behind"],
        downlink_applied_at=down["applied_at"],
        downlink_error=down["error"],
    )


def with_hub_report(
    status: CityStatus, report: dict[str, Any] | None, error: str | None
) -> CityStatus:
    """The status with what the hub says of this node: a refused batch's policy problem is a
    problem, refused rows and open quarantine are warnings, an unreachable hub a warning."""
    warnings, problems = list(status.warnings), list(status.problems)
    if error is not None:
        warnings.append(f"the hub did not answer for this node's report: {error}")
    report = report or {}
    if report.get("policy_problem"):
        problems.append(
            f"the hub refuses this city's batches since {report.get('policy_problem_at')}: "
            f"{report['policy_problem']}"
        )
    if report.get("refused_rows"):
        warnings.append(
            f"the hub refused {report['refused_rows']} rows of this city, the last at "
            f"{report.get('last_refused_at')}: {report.get('last_refused_reason')}"
        )
    if report.get("quarantined"):
        warnings.append(
            f"{report['quarantined']} rows of this city wait in the hub's quarantine "
            "(`syncd quarantine list` at the hub)"
        )
    return replace(
        status,
        warnings=tuple(warnings),
        problems=tuple(problems),
        healthy=not problems,
        at_hub=report or None,
    )
