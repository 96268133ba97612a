"""The manual conflict queue: fields under rule `manual` whose cities disagree.

Apply opens a conflict per disputed field and keeps the queue current (a dispute that ends or
changes supersedes its open conflict). A data steward resolves one by taking a city's value or
giving one; the resolution holds the candidates it answered, so it stays in force while the
cities keep those values and a new dispute opens a new conflict. Resolving recomputes the
golden record through the same merge as apply, under the same writer lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.core.canonical import loads
from syncd.core.errors import UsageError
from syncd.core.merge import encode_value
from syncd.core.policy import MergeRule, Policy, Table
from syncd.core.validate import decode_value, validate_value
from syncd.hub.audit import Action, AuditWriter
from syncd.hub.golden import recompute_goldens
from syncd.store import hub_tables as h
from syncd.store.bulk import golden_table, lock
from syncd.store.db import translated, utcnow

_c = h.conflicts.c
_COLUMNS = (
    _c.conflict_id,
    _c.table_name,
    _c.golden_id,
    sa.cast(_c.identity, sa.Text).label("identity"),
    _c.column_name,
    sa.cast(_c.golden_value, sa.Text).label("golden_value"),
    sa.cast(_c.candidates, sa.Text).label("candidates"),
    _c.status,
    _c.opened_at,
    _c.resolved_at,
    _c.resolved_by,
    _c.resolved_os_user,
    sa.cast(_c.resolution, sa.Text).label("resolution"),
    _c.proposed_by,
    _c.proposed_os_user,
    _c.proposed_at,
)
_JSON = ("identity", "golden_value", "candidates", "resolution")


def _conflict(row: sa.RowMapping) -> dict[str, Any]:
    found = dict(row)
    for name in _JSON:
        found[name] = None if found[name] is None else loads(found[name])
    return found


def list_conflicts(
    conn: Connection, status: str | None = h.ConflictStatus.OPEN
) -> list[dict[str, Any]]:
    """Conflicts in id order; status None lists every status."""
    stmt = sa.select(*_COLUMNS).order_by(_c.conflict_id)
    if status is not None:
        stmt = stmt.where(_c.status == status)
    with translated("reading conflicts"):
        return [_conflict(r) for r in conn.execute(stmt).mappings()]


def _get(conn: Connection, cid: int) -> dict[str, Any]:
    row = conn.execute(sa.select(*_COLUMNS).where(_c.conflict_id == cid)).mappings().first()
    if row is None:
        raise UsageError(f"conflict {cid} does not exist")
    return _conflict(row)


def _sources(conn: Connection, conflict: dict[str, Any]) -> list[dict[str, Any]]:
    """Every city's current record of the conflict's identity, with its value of the column."""
    # Reflected, not built from a policy: `show` is a read command that takes none.
    src = sa.Table(f"src_{conflict['table_name']}", sa.MetaData(), autoload_with=conn)
    column = conflict["column_name"]
    where = [src.c[k] == v for k, v in conflict["identity"].items()]
    stmt = (
        sa.select(src, h.nodes.c.city_code)
        .select_from(src.outerjoin(h.nodes, h.nodes.c.node_id == src.c[h.ORIGIN]))
        .where(*where)
        .order_by(src.c[h.ORIGIN])
    )
    return [
        {
            "node_id": r[h.ORIGIN],
            "city_code": r["city_code"],
            "seq": r["_seq"],
            "deleted": bool(r["_deleted"]),
            "value": r[column],
        }
        for r in conn.execute(stmt).mappings()
    ]


def show(conn: Connection, cid: int) -> dict[str, Any]:
    """One conflict with every source's value; UsageError if there is no such conflict."""
    with translated("reading a conflict"):
        conflict = _get(conn, cid)
        conflict["sources"] = _sources(conn, conflict)
    return conflict


def _table(policy: Policy, conflict: dict[str, Any]) -> Table:
    table = policy.tables.get(conflict["table_name"])
    column = conflict["column_name"]
    if table is None or not table.identity or column not in table.columns:
        raise UsageError(
            f"conflict {conflict['conflict_id']} is on {conflict['table_name']}.{column}, "
            "which the current policy does not merge"
        )
    return table


def _chosen(
    table: Table, conflict: dict[str, Any], take_node: str | None, value: str | None
) -> Any:
    column = conflict["column_name"]
    candidates: dict[str, Any] = conflict["candidates"]
    if take_node is not None:
        if take_node not in candidates:
            raise UsageError(
                f"node {take_node!r} holds no value in conflict {conflict['conflict_id']} "
                f"(its nodes: {', '.join(sorted(candidates))})"
            )
        chosen, problem = decode_value(table, column, candidates[take_node])
    else:
        assert value is not None
        chosen, problem = validate_value(table, column, value)
    if problem is not None:
        raise UsageError(f"--value: {problem}" if take_node is None else problem)
    return chosen


@dataclasses.dataclass(frozen=True)
class Steward:
    """Who acts on a conflict: the name given (`--by`) and the operating-system user (None
    when the caller did not say, as when a name alone is passed to `resolve`)."""

    name: str
    os_user: str | None = None

    def same_person(self, name: str | None, os_user: str | None) -> bool:
        """Either identity matches: four eyes need another name *and* another OS account."""
        return self.name == name or (self.os_user is not None and self.os_user == os_user)


def resolve(
    engine: Engine,
    policy: Policy,
    cid: int,
    *,
    take_node: str | None = None,
    value: str | None = None,
    by: str | Steward,
    four_eyes: bool = False,
) -> dict[str, Any]:
    """Close an open conflict with one node's value or a given one; recompute its golden record.

    Exactly one of take_node and value; a value is typed like the column (a JSON array for a
    list column). With four_eyes the resolution is only proposed: `approve` by another steward
    applies it. Returns the conflict id, golden id, column, chosen value, resolver and status.
    """
    steward = by if isinstance(by, Steward) else Steward(by)
    if (take_node is None) == (value is None):
        raise UsageError("give exactly one of --take NODE or --value VALUE")
    with translated(f"resolving conflict {cid}"), engine.begin() as conn:
        lock(conn)
        conflict = _get(conn, cid)
        if conflict["status"] != h.ConflictStatus.OPEN:
            raise UsageError(f"conflict {cid} is {conflict['status']}, not open")
        table = _table(policy, conflict)
        chosen = encode_value(_chosen(table, conflict, take_node, value))
        resolution = {"value": chosen, "candidates": conflict["candidates"], "took": take_node}
        audit = AuditWriter(conn)
        if four_eyes:
            status = _propose(conn, audit, table, conflict, resolution, steward)
        else:
            status = h.ConflictStatus.RESOLVED
            _apply(conn, audit, policy, table, conflict, resolution, steward, None)
        audit.flush()
    return _outcome(conflict, chosen, steward, status)


def approve(engine: Engine, policy: Policy, cid: int, *, by: Steward) -> dict[str, Any]:
    """Apply a proposed resolution (four eyes): `by` must be another steward than the proposer."""
    with translated(f"approving conflict {cid}"), engine.begin() as conn:
        lock(conn)
        conflict = _get(conn, cid)
        if conflict["status"] != h.ConflictStatus.PROPOSED:
            raise UsageError(
                f"conflict {cid} is {conflict['status']}, not proposed: only a proposed "
                "resolution can be approved"
            )
        if by.same_person(conflict["proposed_by"], conflict["proposed_os_user"]):
            raise UsageError(
                f"conflict {cid} was proposed by {conflict['proposed_by']} (OS user "
                f"{conflict['proposed_os_user']}): a second steward, under another name and "
                "another OS account, must approve it"
            )
        table = _table(policy, conflict)
        resolution = dict(conflict["resolution"])
        audit = AuditWriter(conn)
        proposer = Steward(conflict["proposed_by"], conflict["proposed_os_user"])
        _apply(conn, audit, policy, table, conflict, resolution, by, proposer)
        audit.flush()
    return _outcome(conflict, resolution["value"], by, h.ConflictStatus.RESOLVED)


def _outcome(
    conflict: dict[str, Any], chosen: Any, steward: Steward, status: h.ConflictStatus
) -> dict[str, Any]:
    return {
        "conflict_id": conflict["conflict_id"],
        "golden_id": conflict["golden_id"],
        "column": conflict["column_name"],
        "value": chosen,
        "by": steward.name,
        "os_user": steward.os_user,
        "status": status.value,
    }


def _audit_detail(conflict: dict[str, Any], resolution: dict[str, Any]) -> dict[str, Any]:
    return {
        "conflict_id": conflict["conflict_id"],
        "golden_id": conflict["golden_id"],
        "column": conflict["column_name"],
        "rule": MergeRule.MANUAL.value,
        "value": resolution["value"],
        "took": resolution.get("took"),
        "was": conflict["golden_value"],
    }


def _propose(
    conn: Connection,
    audit: AuditWriter,
    table: Table,
    conflict: dict[str, Any],
    resolution: dict[str, Any],
    steward: Steward,
) -> h.ConflictStatus:
    conn.execute(
        h.conflicts.update()
        .where(_c.conflict_id == conflict["conflict_id"])
        .values(
            status=h.ConflictStatus.PROPOSED,
            proposed_by=steward.name,
            proposed_os_user=steward.os_user,
            proposed_at=utcnow(),
            resolution=resolution,
        )
    )
    audit.append(
        Action.CONFLICT_PROPOSED,
        table=table.name,
        key=conflict["identity"],
        detail={
            **_audit_detail(conflict, resolution),
            "by": steward.name,
            "os_user": steward.os_user,
        },
    )
    return h.ConflictStatus.PROPOSED


def _apply(
    conn: Connection,
    audit: AuditWriter,
    policy: Policy,
    table: Table,
    conflict: dict[str, Any],
    resolution: dict[str, Any],
    steward: Steward,
    proposer: Steward | None,
) -> None:
    now = utcnow()
    conn.execute(
        h.conflicts.update()
        .where(_c.conflict_id == conflict["conflict_id"])
        .values(
            status=h.ConflictStatus.RESOLVED,
            resolved_by=steward.name,
            resolved_os_user=steward.os_user,
            resolved_at=now,
            resolution=resolution,
        )
    )
    detail = {**_audit_detail(conflict, resolution), "by": steward.name, "os_user": steward.os_user}
    if proposer is not None:
        detail["proposed_by"] = proposer.name
        detail["proposed_os_user"] = proposer.os_user
    audit.append(
        Action.CONFLICT_RESOLVED, table=table.name, key=conflict["identity"], detail=detail
    )
    _recompute(conn, policy, table, conflict, audit, now)


def _recompute(
    conn: Connection,
    policy: Policy,
    table: Table,
    conflict: dict[str, Any],
    audit: AuditWriter,
    now: dt.datetime,
) -> None:
    golden = golden_table(policy, table)
    identity = conn.execute(
        sa.select(*(golden.c[c] for c in table.identity)).where(
            golden.c[h.GOLDEN_ID] == conflict["golden_id"]
        )
    ).first()
    if identity is not None:
        recompute_goldens(conn, policy, table, [tuple(identity)], audit, now)
