"""The quarantine: rows the hub rejected at apply, why, and retrying them under a new policy.

A quarantined row is kept as the city sent it (its public columns only: rows that break
sovereignty are refused, never quarantined). Retry validates it again with the current policy
and, if it now passes and no newer version of its key arrived from its city, applies it through
the same `RowWriter` as a batch, so a retried row is merged and audited like any other.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.core.canonical import loads
from syncd.core.errors import UsageError
from syncd.core.policy import Policy
from syncd.core.validate import Change, Verdict, classify
from syncd.hub.audit import Action, AuditWriter
from syncd.hub.rows import RowOutcome, RowWriter
from syncd.store import hub_tables as h
from syncd.store.bulk import lock
from syncd.store.db import translated, utcnow

_q = h.quarantine.c
_COLUMNS = (
    _q.quarantine_id,
    _q.node_id,
    _q.batch_id,
    _q.seq,
    _q.table_name,
    _q.op,
    sa.cast(_q.row_key, sa.Text).label("row_key"),
    sa.cast(_q.row_data, sa.Text).label("row_data"),
    _q.reason,
    _q.created_at,
    _q.status,
    _q.closed_at,
)


def _entry(row: sa.RowMapping) -> dict[str, Any]:
    entry = dict(row)
    entry["row_key"] = loads(entry["row_key"])
    entry["row_data"] = None if entry["row_data"] is None else loads(entry["row_data"])
    return entry


def list_entries(
    conn: Connection,
    status: str | None = h.QuarantineStatus.OPEN,
    node: str | None = None,
    table: str | None = None,
) -> list[dict[str, Any]]:
    """Quarantine entries in id order; status None lists every status."""
    stmt = sa.select(*_COLUMNS).order_by(_q.quarantine_id)
    if status is not None:
        stmt = stmt.where(_q.status == status)
    if node is not None:
        stmt = stmt.where(_q.node_id == node)
    if table is not None:
        stmt = stmt.where(_q.table_name == table)
    with translated("reading the quarantine"):
        return [_entry(r) for r in conn.execute(stmt).mappings()]


def show(conn: Connection, qid: int) -> dict[str, Any]:
    """One entry with its row as sent; UsageError if there is no such entry."""
    with translated("reading the quarantine"):
        row = conn.execute(sa.select(*_COLUMNS).where(_q.quarantine_id == qid)).mappings().first()
    if row is None:
        raise UsageError(f"quarantine entry {qid} does not exist")
    return _entry(row)


@dataclass(frozen=True)
class RetryResult:
    """Entries applied now, still invalid (with the reason), superseded or refused."""

    retried: tuple[int, ...] = ()
    still_invalid: dict[int, str] = field(default_factory=dict)
    superseded: tuple[int, ...] = ()
    refused: tuple[int, ...] = ()
    conflicts_opened: int = 0


@dataclass
class _Retry:
    """One retry transaction: the entries' outcomes, gathered for one status update at the end."""

    conn: Connection
    policy: Policy
    audit: AuditWriter
    who: dict[str, str] = field(default_factory=dict)  # by / os_user, in each entry
    retried: list[int] = field(default_factory=list)
    still_invalid: dict[int, str] = field(default_factory=dict)
    superseded: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    conflicts_opened: int = 0
    closing: list[dict[str, Any]] = field(default_factory=list)

    def finish(self) -> None:
        """Write the entries' new statuses, one executemany per shape of update."""
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for values in self.closing:
            shapes[tuple(sorted(values))].append(values)
        for rows in shapes.values():
            self.conn.execute(
                h.quarantine.update().where(_q.quarantine_id == sa.bindparam("qid")), rows
            )

    def node(self, node_id: str, entries: list[tuple[sa.Row[Any], Verdict]]) -> None:
        valid = [(e, v) for e, v in entries if v.valid]
        for e, v in entries:
            if v.refused is not None:
                # The policy no longer lets this row reach the hub: its data goes.
                self.closing.append(
                    {
                        "qid": e.quarantine_id,
                        "status": h.QuarantineStatus.REFUSED,
                        "closed_at": utcnow(),
                        "row_data": None,
                    }
                )
                self.audit.append(
                    Action.REFUSED_ROW,
                    node_id=node_id,
                    table=e.table_name,
                    detail={"quarantine_id": e.quarantine_id, "seq": e.seq, "reason": v.refused},
                )
                self.refused.append(e.quarantine_id)
            elif v.invalid is not None:
                self.still_invalid[e.quarantine_id] = v.invalid
        if not valid:
            return
        self.conn.execute(
            h.quarantine.update()
            .where(_q.quarantine_id.in_([e.quarantine_id for e, _ in valid]))
            .values(status=h.QuarantineStatus.RETRYING)
        )
        # One write per original batch: each source row records the batch it came in.
        by_batch: dict[int | None, list[tuple[sa.Row[Any], Verdict]]] = defaultdict(list)
        for e, v in valid:
            by_batch[e.batch_id].append((e, v))
        for batch_id, group in by_batch.items():
            writer = RowWriter(self.conn, self.policy, self.audit, utcnow())
            outcomes = writer.write(node_id, batch_id, [v for _, v in group])
            self.conflicts_opened += writer.counts.conflicts_opened
            for (e, _), outcome in zip(group, outcomes, strict=True):
                self._after_write(node_id, e, outcome is RowOutcome.APPLIED)

    def _after_write(self, node_id: str, e: sa.Row[Any], applied: bool) -> None:
        self.closing.append(
            {
                "qid": e.quarantine_id,
                "status": h.QuarantineStatus.RETRIED if applied else h.QuarantineStatus.SUPERSEDED,
                "closed_at": utcnow(),
            }
        )
        self.audit.append(
            Action.QUARANTINE_RETRIED if applied else Action.QUARANTINE_SUPERSEDED,
            node_id=node_id,
            batch_id=e.batch_id,
            table=e.table_name,
            key=loads(e.row_key),
            detail={
                "quarantine_id": e.quarantine_id,
                "seq": e.seq,
                "applied": applied,
                **self.who,
            },
        )
        (self.retried if applied else self.superseded).append(e.quarantine_id)


def _open_entries(conn: Connection, qid: int | None) -> list[sa.Row[Any]]:
    stmt = sa.select(*_COLUMNS).order_by(_q.node_id, _q.seq, _q.quarantine_id)
    if qid is None:
        return list(conn.execute(stmt.where(_q.status == h.QuarantineStatus.OPEN)))
    found = list(conn.execute(stmt.where(_q.quarantine_id == qid)))
    if not found:
        raise UsageError(f"quarantine entry {qid} does not exist")
    if found[0].status != h.QuarantineStatus.OPEN:
        raise UsageError(f"quarantine entry {qid} is {found[0].status}, not open")
    return found


def retry(
    engine: Engine,
    policy: Policy,
    qid: int | None = None,
    *,
    by: str | None = None,
    os_user: str | None = None,
) -> RetryResult:
    """Validate one open entry (or all) again under `policy`; apply those that now pass.

    `by`/`os_user`: who asked (the CLI: the OS user; the console: the console user and
    `console:<user>`), recorded in each quarantine_retried/_superseded entry."""
    with translated("retrying quarantined rows"), engine.begin() as conn:
        lock(conn)
        entries = _open_entries(conn, qid)
        by_node: dict[str, list[tuple[sa.Row[Any], Verdict]]] = defaultdict(list)
        for e in entries:
            change = Change.parse(e.seq, e.table_name, e.op, e.row_key, e.row_data)
            by_node[e.node_id].append((e, classify(policy, change)))
        audit = AuditWriter(conn)
        who = {k: v for k, v in {"by": by, "os_user": os_user}.items() if v}
        work = _Retry(conn, policy, audit, who)
        for node_id, node_entries in by_node.items():
            work.node(node_id, node_entries)
        work.finish()
        audit.flush()
    return RetryResult(
        retried=tuple(work.retried),
        still_invalid=work.still_invalid,
        superseded=tuple(work.superseded),
        refused=tuple(work.refused),
        conflicts_opened=work.conflicts_opened,
    )
