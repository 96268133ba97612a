"""Golden records at the hub: merge every live source of an identity, keep the conflict queue.

Called inside the transaction that changed the sources (apply, quarantine retry, conflict
resolution); a pure merge (`syncd.core.merge`) decides the values, this module loads and stores.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.core.canonical import canonical, loads
from syncd.core.merge import (
    FieldDecision,
    MergeResult,
    Resolution,
    Source,
    encode_value,
    merge_golden,
    merge_values,
)
from syncd.core.policy import Policy, Table
from syncd.core.validate import decode_value
from syncd.hub.audit import Action, AuditWriter
from syncd.store import hub_tables as h
from syncd.store.bulk import (
    golden_table,
    insert_returning_ids,
    key_matches,
    merged_columns,
    source_table,
    upsert,
)


@dataclass(frozen=True)
class GoldenState:
    """A golden record after a recompute; `result` is None once it has no live source.

    With one live source nothing is ranked or disputed, and `result.decisions` is empty.
    """

    golden_id: int
    identity: tuple[Any, ...]
    result: MergeResult | None


@dataclass(frozen=True)
class Fresh:
    """The live source records one batch has just written, handed over to save reading them.

    Rows of `batch_id` that are not deletes are left out when sources are read back, and
    these take their place; deleted rows are read, as their last data is the history kept.
    """

    batch_id: int
    sources: Mapping[tuple[Any, ...], Sequence[Source]]


def as_source(
    table: Table, node_id: str, city: str | None, seq: int, row: Mapping[str, Any]
) -> Source:
    """A source record for the merge: its row's `updated_at` column read as the policy names it."""
    updated = row.get(table.updated_at) if table.updated_at else None
    return Source(node_id, city, seq, updated, row)


def _identity_doc(table: Table, identity: tuple[Any, ...]) -> dict[str, Any]:
    return {c: encode_value(v) for c, v in zip(table.identity, identity, strict=True)}


def _one_per_node(sources: Iterable[Source]) -> list[Source]:
    # A city may hold one identity under two keys (a duplicate customer). Its most recently
    # changed row speaks for it: a choice made from the set of records, so order-independent.
    best: dict[str, Source] = {}
    for s in sources:
        if s.node_id not in best or s.seq > best[s.node_id].seq:
            best[s.node_id] = s
    return list(best.values())


def _load_sources(
    conn: Connection,
    policy: Policy,
    table: Table,
    identities: Sequence[tuple[Any, ...]],
    fresh: Fresh | None = None,
) -> dict[tuple[Any, ...], tuple[list[Source], list[Source]]]:
    """(live, deleted) sources per identity, with each node's city."""
    src = source_table(policy, table)
    names = table.public_columns
    cols = [src.c[c] for c in names]
    found: dict[tuple[Any, ...], tuple[list[Source], list[Source]]] = defaultdict(lambda: ([], []))
    if fresh is not None:
        for ident, given in fresh.sources.items():
            found[ident][0].extend(given)
    for where in key_matches(conn, [src.c[c] for c in table.identity], identities):
        stmt = (
            sa.select(src.c[h.ORIGIN], src.c._seq, src.c._deleted, h.nodes.c.city_code, *cols)
            .select_from(src.outerjoin(h.nodes, h.nodes.c.node_id == src.c[h.ORIGIN]))
            .where(where)
        )
        if fresh is not None:
            # In a first load most identities have no source but the fresh one: nothing to read.
            stmt = stmt.where(
                sa.or_(
                    src.c._batch_id.is_(None),
                    src.c._batch_id != fresh.batch_id,
                    src.c._deleted == sa.true(),
                )
            )
        for r in conn.execute(stmt).mappings():
            row = {c: r[c] for c in names}
            source = as_source(table, r[h.ORIGIN], r["city_code"], int(r["_seq"]), row)
            live, dead = found[tuple(row[c] for c in table.identity)]
            (dead if r["_deleted"] else live).append(source)
    return found


def _golden_ids(
    conn: Connection, policy: Policy, table: Table, identities: Sequence[tuple[Any, ...]]
) -> dict[tuple[Any, ...], int]:
    golden = golden_table(policy, table)
    ids: dict[tuple[Any, ...], int] = {}
    for where in key_matches(conn, [golden.c[c] for c in table.identity], identities):
        stmt = sa.select(golden.c[h.GOLDEN_ID], *(golden.c[c] for c in table.identity)).where(where)
        for r in conn.execute(stmt):
            ids[tuple(r[1:])] = int(r[0])
    return ids


def _resolutions(
    conn: Connection, table: Table, golden_ids: Sequence[int]
) -> dict[int, dict[str, Resolution]]:
    """The latest steward resolution per golden record and column."""
    found: dict[int, dict[str, Resolution]] = defaultdict(dict)
    c = h.conflicts.c
    for where in key_matches(conn, [c.golden_id], [(i,) for i in golden_ids]):
        stmt = (
            sa.select(c.golden_id, c.column_name, sa.cast(c.resolution, sa.Text))
            .where(c.table_name == table.name, c.status == h.ConflictStatus.RESOLVED, where)
            .order_by(c.conflict_id)
        )
        for gid, column, text in conn.execute(stmt):
            if text is None or column not in table.columns:
                continue
            doc = loads(text)
            value, problem = decode_value(table, column, doc.get("value"))
            if problem is None:
                found[int(gid)][column] = Resolution(value, doc.get("candidates") or {})
    return found


def _golden_row(
    table: Table,
    merged: Sequence[str],
    identity: tuple[Any, ...],
    values: Mapping[str, Any],
    live: int,
    now: dt.datetime,
) -> dict[str, Any]:
    row = dict(zip(table.identity, identity, strict=True))
    row.update({c: values.get(c) for c in merged})
    row.update(_sources=live, _deleted=live == 0, _updated_at=now)
    return row


def _ordered(identities: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Distinct identities in a fixed order: by value (validated, so one type per column)."""
    distinct = set(identities)
    try:
        return sorted(distinct)
    except TypeError:  # values of mixed types: order by their canonical encoding instead
        return sorted(distinct, key=canonical)


def recompute_goldens(
    conn: Connection,
    policy: Policy,
    table: Table,
    identities: Iterable[tuple[Any, ...]],
    audit: AuditWriter,
    now: dt.datetime,
    fresh: Fresh | None = None,
) -> tuple[dict[tuple[Any, ...], GoldenState], int]:
    """Merge the sources of each identity into its golden record; return states and new conflicts.

    With no live source left the golden record is kept, marked deleted, with the merge of its
    deleted sources (or empty): a function of the source records, so any arrival order ends
    in the same record.
    """
    idents = _ordered(identities)
    if not idents:
        return {}, 0
    sources = _load_sources(conn, policy, table, idents, fresh)
    existing = _golden_ids(conn, policy, table, idents)
    resolutions = _resolutions(conn, table, sorted(existing.values()))
    merged = merged_columns(table)
    rows: list[dict[str, Any]] = []
    results: dict[tuple[Any, ...], MergeResult | None] = {}
    for ident in idents:
        live, dead = sources.get(ident, ([], []))
        gid = existing.get(ident)
        if live:
            chosen = _one_per_node(live)
            if len(chosen) == 1:
                result = MergeResult(merge_values(table, chosen[0]), (), ())
            else:
                resolved = resolutions.get(gid) if gid is not None else None
                result = merge_golden(table, chosen, resolved)
            rows.append(_golden_row(table, merged, ident, result.values, len(live), now))
            results[ident] = result
        elif gid is not None:
            values = merge_golden(table, _one_per_node(dead)).values if dead else {}
            rows.append(_golden_row(table, merged, ident, values, 0, now))
            results[ident] = None
    golden = golden_table(policy, table)
    update = [c for c in rows[0] if c not in table.identity] if rows else []
    upsert(conn, golden, rows, table.identity, update)
    missing = [i for i in results if i not in existing]
    ids = {**existing, **_golden_ids(conn, policy, table, missing)} if missing else existing
    states = {i: GoldenState(ids[i], i, r) for i, r in results.items()}
    opened = _sync_conflicts(conn, table, list(states.values()), audit, now)
    return states, opened


def _signature(value_json: str | None, candidates_json: str) -> str:
    """One text per (golden value, candidates), whether from merge or back from the database."""
    return canonical([loads(value_json or "null"), loads(candidates_json)])


def _decision_signature(d: FieldDecision) -> str:
    candidates = {n: encode_value(v) for n, v in d.candidates.items()}
    return _signature(canonical(encode_value(d.value)), canonical(candidates))


def _open_conflicts(
    conn: Connection, table: Table, golden_ids: Sequence[int]
) -> list[tuple[int, int, str, str]]:
    c = h.conflicts.c
    found: list[tuple[int, int, str, str]] = []
    for where in key_matches(conn, [c.golden_id], [(i,) for i in golden_ids]):
        stmt = sa.select(
            c.conflict_id,
            c.golden_id,
            c.column_name,
            sa.cast(c.golden_value, sa.Text),
            sa.cast(c.candidates, sa.Text),
        ).where(c.table_name == table.name, c.status.in_(h.UNDECIDED_CONFLICTS), where)
        for cid, gid, column, value, candidates in conn.execute(stmt):
            found.append((int(cid), int(gid), column, _signature(value, candidates)))
    return found


def _sync_conflicts(
    conn: Connection,
    table: Table,
    states: Sequence[GoldenState],
    audit: AuditWriter,
    now: dt.datetime,
) -> int:
    """Open a conflict per unresolved dispute; supersede open ones no longer current."""
    wanted: dict[tuple[int, str], tuple[GoldenState, FieldDecision]] = {}
    for state in states:
        for d in state.result.conflicts if state.result is not None else ():
            wanted[(state.golden_id, d.column)] = (state, d)
    keep: set[tuple[int, str]] = set()
    stale: list[tuple[int, int, str]] = []
    for cid, gid, column, signature in _open_conflicts(conn, table, [s.golden_id for s in states]):
        want = wanted.get((gid, column))
        current = None if want is None else _decision_signature(want[1])
        if current == signature and (gid, column) not in keep:
            keep.add((gid, column))
        else:
            stale.append((cid, gid, column))
    if stale:
        c = h.conflicts.c
        conn.execute(
            h.conflicts.update().where(c.conflict_id == sa.bindparam("cid")),
            [
                {"cid": cid, "status": h.ConflictStatus.SUPERSEDED, "resolved_at": now}
                for cid, _, _ in stale
            ],
        )
        for cid, gid, column in stale:
            audit.append(
                Action.CONFLICT_SUPERSEDED,
                table=table.name,
                detail={"conflict_id": cid, "golden_id": gid, "column": column},
            )
    new = [(s, d) for k, (s, d) in sorted(wanted.items()) if k not in keep]
    rows = [
        {
            "table_name": table.name,
            "golden_id": s.golden_id,
            "identity": _identity_doc(table, s.identity),
            "column_name": d.column,
            "golden_value": encode_value(d.value),
            "candidates": {n: encode_value(v) for n, v in d.candidates.items()},
            "status": h.ConflictStatus.OPEN,
            "opened_at": now,
        }
        for s, d in new
    ]
    for cid, row in zip(
        insert_returning_ids(conn, h.conflicts, rows, "conflict_id"), rows, strict=True
    ):
        audit.append(
            Action.CONFLICT_OPENED,
            table=table.name,
            key=row["identity"],
            detail={
                "conflict_id": cid,
                "golden_id": row["golden_id"],
                "column": row["column_name"],
                "golden_value": row["golden_value"],
                "candidates": row["candidates"],
            },
        )
    return len(rows)


def disputes(result: MergeResult | None) -> dict[str, dict[str, Any]]:
    if result is None:
        return {}
    return {
        d.column: {"rule": d.rule.value, "winner": d.winner} for d in result.decisions if d.disputed
    }
