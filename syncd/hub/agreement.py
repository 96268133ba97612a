"""The hub's side of policy agreement: the policy it records, and its verdict on a batch's.

The hub records the stamp of its own policy (`syncd_hub_state`, key `policy`) at `init` and
when its daemon starts. A batch whose city policy differs from it in what is public is
refused at submission, before anything of it is stored, and the node shows why until one of
its batches is accepted: by the PostgreSQL submit function, or by `check` on a SQLite hub.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.core.agreement import Stamp, read_stamp, refusal, stamp
from syncd.core.policy import Policy
from syncd.store import hub_tables as h
from syncd.store.health import put_state

POLICY_KEY = "policy"


def record_policy(conn: Connection, policy: Policy) -> Stamp:
    """Make the policy the one batches are checked against; returns its stamp."""
    mine = stamp(policy)
    put_state(conn, h.hub_state, POLICY_KEY, {**mine.wire(), "source": policy.source})
    return mine


def recorded(conn: Connection) -> Stamp | None:
    """The stamp of the policy the hub recorded, or None before its first `init`."""
    value = conn.execute(
        sa.select(h.hub_state.c.value).where(h.hub_state.c.key == POLICY_KEY)
    ).scalar()
    return read_stamp(value)


def check(conn: Connection, node_id: str, sent: object, now: dt.datetime) -> str | None:
    """The refusal of a batch stamped `sent` by node_id, or None; records it on the node."""
    reason = refusal(sent, recorded(conn))
    if reason is not None:
        since = sa.func.coalesce(h.nodes.c.policy_problem_at, now)
        conn.execute(
            h.nodes.update()
            .where(h.nodes.c.node_id == node_id)
            .values(policy_problem=reason, policy_problem_at=since)
        )
    return reason


def accepted(sent: Any) -> dict[str, Any]:
    """The node's columns once a batch stamped `sent` is accepted: its problem is over."""
    city = read_stamp(sent)
    return {
        "policy_fingerprint": None if city is None else city.fingerprint,
        "policy_problem": None,
        "policy_problem_at": None,
    }
