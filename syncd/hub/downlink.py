"""The downward path at the hub: the province's insights, sent to each city on its own customers.

`publish` derives, for every live golden customer, its value tier, contribution rank, segment
and open warnings (`derive`), then for each registered node, in that node's own transaction:

* the node's customers are the live source rows *that node sent* (``src_customers`` with
  ``origin_node`` = the node) linked to a live golden record: a customer held by two cities is
  in both lists, and no list can hold a customer its node never sent (sovereignty downward);
* each is compared with what the node was last sent (``syncd_insight_sent``, a digest per
  customer key): changed or new ones become upserts, keys no longer held become deletes;
* the changes are cut into batches of ``[downlink] batch_rows`` numbered on from the node's
  ``built_seq``, each stored with its payload text and checksum and audited (action
  ``insights_sent``: seq, counts, checksum), and the sent digests move on with them.

A crash rolls the node's transaction back whole: batches, digests and the audit entry go
together or not at all. One node's failure is logged and counted and does not stop the others.

Cities fetch their batches in order (`fetch`, or on PostgreSQL the SECURITY DEFINER function
syncd_fetch_insights, which answers only for the caller's own node: a node's role has no
right on these tables) and acknowledge what they applied (`ack`, syncd_ack_insights): the
downward lag `status` shows is built_seq − acked_seq and the age of the oldest batch not
acknowledged. Acknowledged batches older than ``[downlink] retention_days`` are trimmed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.core import downlink as wire
from syncd.core.canonical import canonical, loads
from syncd.core.errors import BatchRefused, SyncdError, UsageError
from syncd.core.logs import get_logger
from syncd.core.policy import Policy
from syncd.core.settings import DownlinkSection, ReportSection
from syncd.hub import analysis
from syncd.hub.audit import Action, AuditWriter
from syncd.hub.report_views import CUSTOMERS, Views, missing_analysis_inputs
from syncd.store import hub_tables as h
from syncd.store.bulk import chunks
from syncd.store.db import translated, utcnow
from syncd.store.dialect import dialect_for
from syncd.store.health import put_state

log = get_logger("syncd.downlink")


@dataclass
class PublishResult:
    """What one publish built: batches and changes per node, and the nodes that failed."""

    customers: int = 0
    batches: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    trimmed: int = 0
    skipped: str | None = None  # why nothing was built (the policy lacks the reports' inputs)


# --- what each customer's insight is -------------------------------------------------------


def derive(conn: Connection, policy: Policy, report: ReportSection) -> dict[Any, dict[str, Any]]:
    """Per live golden customer: the insight fields (`core.downlink.FIELDS`) as they travel.

    From `analysis.customer_insights`: tier and rank as `report value`, the segment code and
    the open warnings as `report warnings` (reason codes, severity 1-3), at today's date.
    """
    return {
        row["golden_id"]: {
            "golden_id": str(row["golden_id"]),
            "tier": row["tier"],
            "rank": int(row["rank"]),
            "contribution": str(row["contribution"]),
            "segment": row["segment"],
            "warnings": [
                {"reason": w["reason"], "severity": int(w["severity"])} for w in row["warnings"]
            ],
        }
        for row in analysis.customer_insights(conn, policy, report)
    }


# --- building batches ----------------------------------------------------------------------


def _held(conn: Connection, views: Views, node_id: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(golden_id, the city's key) for each live customer row this node sent to the hub."""
    link = views.link().subquery("held")
    key_columns = views.policy.table(CUSTOMERS).primary_key
    query = sa.select(link.c[h.GOLDEN_ID], *(link.c[k] for k in key_columns)).where(
        link.c[h.ORIGIN] == node_id
    )
    for row in conn.execute(query):
        yield row[0], dict(zip(key_columns, row[1:], strict=True))


def _changes(
    conn: Connection, views: Views, node_id: str, insights: Mapping[Any, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Upserts for customers whose insight is new or changed, deletes for those no longer held."""
    query = sa.select(h.insight_sent.c.row_key, h.insight_sent.c.digest).where(
        h.insight_sent.c.node_id == node_id
    )
    sent: dict[str, str] = {row.row_key: row.digest for row in conn.execute(query)}
    changes: list[dict[str, Any]] = []
    held: set[str] = set()
    for golden_id, key in _held(conn, views, node_id):
        fields = insights.get(golden_id)
        if fields is None:
            continue
        row_key = canonical(key)
        held.add(row_key)
        change = wire.upsert(key, fields)
        if sent.get(row_key) != change["digest"]:
            changes.append(change)
    for row_key in sorted(sent.keys() - held):
        changes.append(wire.delete(_key_of(row_key)))
    return changes


def _key_of(row_key: str) -> dict[str, Any]:
    key = loads(row_key)
    assert isinstance(key, dict)
    return key


def _node_state(conn: Connection, node_id: str) -> int:
    """The node's built_seq, its row locked for this transaction (made if missing)."""
    d = h.downlink_nodes
    found = conn.execute(
        sa.select(d.c.built_seq).where(d.c.node_id == node_id).with_for_update()
    ).scalar()
    if found is None:
        conn.execute(d.insert().values(node_id=node_id, built_seq=0, acked_seq=0))
        return 0
    return int(found)


def build_for_node(
    conn: Connection,
    views: Views,
    node_id: str,
    insights: Mapping[Any, Mapping[str, Any]],
    batch_rows: int,
) -> tuple[int, int]:
    """Store the node's new batches and move its sent digests on; (batches, changes)."""
    seq = _node_state(conn, node_id)
    changes = _changes(conn, views, node_id, insights)
    d = h.downlink_nodes
    if conn.execute(sa.select(d.c.reset).where(d.c.node_id == node_id)).scalar():
        changes.insert(0, wire.reset())
        conn.execute(d.update().where(d.c.node_id == node_id).values(reset=False))
    if not changes:
        return 0, 0
    now = utcnow()
    audit = AuditWriter(conn)
    batches = []
    for chunk in chunks(changes, batch_rows):
        seq += 1
        payload = canonical(list(chunk))
        checksum = wire.batch_checksum(node_id, seq, payload)
        batches.append(
            {
                "node_id": node_id,
                "seq": seq,
                "row_count": len(chunk),
                "checksum": checksum,
                "payload": payload,
                "created_at": now,
            }
        )
        deletes = sum(1 for c in chunk if c["op"] == wire.DELETE)
        upserts = sum(1 for c in chunk if c["op"] == wire.UPSERT)
        detail = {
            "seq": seq,
            "rows": len(chunk),
            "upserts": upserts,
            "deletes": deletes,
            "checksum": checksum,
        }
        if wire.resets(chunk):
            detail["reset"] = True
        audit.append(Action.INSIGHTS_SENT, node_id=node_id, detail=detail)
    conn.execute(h.downlink_batches.insert(), batches)
    _move_sent(conn, node_id, [c for c in changes if c["op"] != wire.RESET])
    conn.execute(d.update().where(d.c.node_id == node_id).values(built_seq=seq, built_at=now))
    audit.flush()
    return len(batches), len(changes)


def _move_sent(conn: Connection, node_id: str, changes: Sequence[Mapping[str, Any]]) -> None:
    """The sent digests after these changes: changed keys replaced, deleted keys gone."""
    s = h.insight_sent
    keys = [canonical(c["key"]) for c in changes]
    for part in chunks(keys, 5000):
        conn.execute(s.delete().where(s.c.node_id == node_id, s.c.row_key.in_(part)))
    rows = [
        {"node_id": node_id, "row_key": k, "digest": c["digest"]}
        for k, c in zip(keys, changes, strict=True)
        if c["op"] == wire.UPSERT
    ]
    if rows:
        conn.execute(s.insert(), rows)


def publish(
    engine: Engine,
    policy: Policy,
    report: ReportSection,
    settings: DownlinkSection,
    nodes: Sequence[str] | None = None,
) -> PublishResult:
    """Derive the insights once, then build every node's batches, each node on its own."""
    result = PublishResult()
    problems = missing_analysis_inputs(policy)
    if problems:
        result.skipped = "the policy lacks " + ", ".join(problems)
        return result
    with translated("deriving the province's insights"), engine.connect() as conn:
        views = Views(policy, dialect_for(conn))
        insights = derive(conn, policy, report)
        known = list(
            conn.execute(sa.select(h.nodes.c.node_id).order_by(h.nodes.c.node_id)).scalars()
        )
        conn.rollback()
    result.customers = len(insights)
    if nodes is not None:
        unknown = sorted(set(nodes) - set(known))
        if unknown:
            raise UsageError(f"not registered at this hub: {', '.join(unknown)}")
        wanted = set(nodes)
        known = [n for n in known if n in wanted]
    for node_id in known:
        try:
            with translated(f"building insights for {node_id}"), engine.begin() as conn:
                batches, changes = build_for_node(
                    conn, views, node_id, insights, settings.batch_rows
                )
        except SyncdError as exc:
            result.failed[node_id] = str(exc)
            log.error("downlink_build_failed", node_id=node_id, error=str(exc))
            continue
        if batches:
            result.batches[node_id] = batches
            result.changes[node_id] = changes
            log.info("insights_built", node_id=node_id, batches=batches, changes=changes)
    result.trimmed = trim(engine, settings.retention_days)
    with translated("recording the publish"), engine.begin() as conn:
        put_state(conn, h.hub_state, PUBLISHED_KEY, utcnow().isoformat(timespec="microseconds"))
    return result


def forget_sent(engine: Engine, node_id: str, after: int = 0) -> dict[str, int]:
    """`insights resend`: the node's next build sends a fresh full set, starting with a reset.

    In one transaction: what the node was sent is forgotten (every insight goes again), its
    batches are dropped (a batch the city refuses, e.g. one altered, can never block it: the
    reset batch may skip those not applied; `dropped_batches` counts these), and the next batch
    is numbered above every seq built so far and above `after` (a city ahead of a hub restored
    from a backup says its position). Audited as insights_resend.
    """
    if after < 0:
        raise UsageError(f"--after: a batch number, not {after}")
    with translated("forgetting what a node was sent"), engine.begin() as conn:
        _registered(conn, node_id)
        s, b, d = h.insight_sent, h.downlink_batches, h.downlink_nodes
        built = _node_state(conn, node_id)
        acked = int(
            conn.execute(sa.select(d.c.acked_seq).where(d.c.node_id == node_id)).scalar_one()
        )
        gone = conn.execute(s.delete().where(s.c.node_id == node_id)).rowcount or 0
        # Every batch of the node goes: the unapplied ones so the reset can skip them, the
        # applied ones (kept only for retention; their audit entries stay) so a city checking
        # its last batch against a restored hub's numbering finds none to disagree with.
        dropped = conn.execute(
            sa.select(sa.func.count()).where(b.c.node_id == node_id, b.c.seq > acked)
        ).scalar_one()
        conn.execute(b.delete().where(b.c.node_id == node_id))
        start = max(built, after)
        conn.execute(d.update().where(d.c.node_id == node_id).values(built_seq=start, reset=True))
        detail = {"forgotten": int(gone), "dropped_batches": int(dropped), "next_seq": start + 1}
        audit = AuditWriter(conn)
        audit.append(Action.INSIGHTS_RESEND, node_id=node_id, detail=detail)
        audit.flush()
    return detail


def trim(engine: Engine, retention_days: float) -> int:
    """Delete batches their city acknowledged more than retention_days ago (audit stays)."""
    b, d = h.downlink_batches, h.downlink_nodes
    horizon = utcnow() - dt.timedelta(days=retention_days)
    acked = sa.select(d.c.acked_seq).where(d.c.node_id == b.c.node_id).scalar_subquery()
    with translated("trimming downlink batches"), engine.begin() as conn:
        done = conn.execute(b.delete().where(b.c.seq <= acked, b.c.created_at < horizon))
    return int(done.rowcount or 0)


# --- the last failure, for status ---------------------------------------------------------

ERROR_KEY = "downlink_error"
PUBLISHED_KEY = "downlink_published_at"  # when the last publish finished (naive UTC, ISO)


def record_error(engine: Engine, message: str | None) -> None:
    """Keep the last publish failure in syncd_hub_state for `status` (None clears it)."""
    with translated("recording a downlink failure"), engine.begin() as conn:
        put_state(conn, h.hub_state, ERROR_KEY, message)


def due(conn: Connection) -> bool:
    """Whether a build is due: never built, or a batch was applied after the last build."""
    published = conn.execute(
        sa.select(h.hub_state.c.value).where(h.hub_state.c.key == PUBLISHED_KEY)
    ).scalar()
    if not isinstance(published, str):
        return True
    applied = conn.execute(sa.select(sa.func.max(h.nodes.c.applied_at))).scalar()
    return applied is not None and applied.isoformat(timespec="microseconds") > published


def last_error(conn: Connection) -> str | None:
    value = conn.execute(
        sa.select(h.hub_state.c.value).where(h.hub_state.c.key == ERROR_KEY)
    ).scalar()
    return value if isinstance(value, str) and value else None


# --- what a city reads (the Python side of syncd_fetch_insights / syncd_ack_insights) -------


def _registered(conn: Connection, node_id: str) -> None:
    found = conn.execute(sa.select(h.nodes.c.node_id).where(h.nodes.c.node_id == node_id)).scalar()
    if found is None:
        raise BatchRefused(f"node {node_id} is not registered at this hub")


def fetch(conn: Connection, node_id: str, after: int, limit: int) -> list[wire.DownBatch]:
    """The node's batches after seq `after`, in order, at most `limit` (SQLite hub)."""
    _registered(conn, node_id)
    b = h.downlink_batches
    rows = conn.execute(
        sa.select(b.c.seq, b.c.row_count, b.c.checksum, b.c.payload)
        .where(b.c.node_id == node_id, b.c.seq > after)
        .order_by(b.c.seq)
        .limit(limit)
    )
    return [
        wire.DownBatch(node_id, int(r.seq), r.checksum, r.payload, int(r.row_count)) for r in rows
    ]


def ack(conn: Connection, node_id: str, seq: int) -> int:
    """Record that the node applied every batch up to seq (never moves back; SQLite hub).

    Returns the node's built_seq: what the city has yet to fetch is the difference.
    """
    _registered(conn, node_id)
    d = h.downlink_nodes
    built = int(conn.execute(sa.select(d.c.built_seq).where(d.c.node_id == node_id)).scalar() or 0)
    if seq > built:
        raise BatchRefused(f"node {node_id} acknowledges downlink batch {seq}, never built")
    conn.execute(
        d.update()
        .where(d.c.node_id == node_id, d.c.acked_seq < seq)
        .values(acked_seq=seq, acked_at=utcnow())
    )
    return built


def summary(conn: Connection, node_id: str) -> dict[str, Any]:
    """What the node was sent, summed (`core.downlink.row_hash`), and its last batch (SQLite
    hub; PostgreSQL's syncd_insight_summary answers the same for the caller's node)."""
    _registered(conn, node_id)
    s, d = h.insight_sent, h.downlink_nodes
    total, rows = 0, 0
    for row in conn.execute(sa.select(s.c.row_key, s.c.digest).where(s.c.node_id == node_id)):
        total += wire.row_hash(row.row_key, row.digest)
        rows += 1
    built = conn.execute(sa.select(d.c.built_seq).where(d.c.node_id == node_id)).scalar()
    return {"rows": rows, "hash_sum": str(total), "built_seq": int(built or 0)}


def lag(conn: Connection) -> dict[str, dict[str, Any]]:
    """Per node: built and acknowledged seq, and when the oldest unacknowledged batch was made."""
    d, b = h.downlink_nodes, h.downlink_batches
    oldest = (
        sa.select(sa.func.min(b.c.created_at))
        .where(b.c.node_id == d.c.node_id, b.c.seq > d.c.acked_seq)
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(d.c.node_id, d.c.built_seq, d.c.acked_seq, d.c.acked_at, oldest.label("oldest"))
    )
    return {
        r.node_id: {
            "built_seq": int(r.built_seq),
            "acked_seq": int(r.acked_seq),
            "acked_at": r.acked_at,
            "oldest_unacked_at": r.oldest,
        }
        for r in rows
    }
