"""The hub's side of reconcile: answers about one node's own source records, and the audit view.

A city asks through `HubReconcile` (wired by `syncd.app` into `syncd.city.reconcile`): on a
PostgreSQL hub with its own login role, through the SECURITY DEFINER functions of
sql/postgresql/reconcile_functions.sql, which answer for the caller's node only; on a SQLite
hub the same questions run here against the hub file (syncd.store.digest). The city's summary
becomes a 'reconcile' inbox event that the apply cycle writes into the audit chain
(`syncd.hub.apply.audit_inbox_events`); `last_results` reads them back per node.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.core.canonical import canonical
from syncd.core.errors import BatchRefused, UsageError
from syncd.core.policy import Policy
from syncd.core.reconcile import NULL, Digest, Spec, key_text
from syncd.hub import payload
from syncd.hub.audit import Action
from syncd.hub.inbox import HubInbox
from syncd.store import hub_tables as h
from syncd.store.db import translated, utcnow
from syncd.store.dialect import Kind, dialect_for
from syncd.store.digest import TableDigest


class HubReconcile:
    """A city's reconcile questions to its hub, about its own records only."""

    def __init__(self, inbox: HubInbox, policy: Policy) -> None:
        self.inbox = inbox
        self.engine = inbox.engine
        self.node_id = inbox.node_id
        self.policy = policy
        self._pg = dialect_for(self.engine).kind is Kind.POSTGRES

    def watermark(self) -> int:
        return self.inbox.watermark()

    def _ask(self, what: str, fn: Any) -> Any:
        with translated(f"asking the hub ({what})"), self.engine.connect() as conn:
            try:
                return fn(conn)
            except sa.exc.DBAPIError as exc:
                _refused(exc)
                raise
            finally:
                conn.rollback()

    def _local(self, conn: Connection, spec: Spec) -> TableDigest:
        table = self.policy.tables[spec.table]
        source = h.policy_metadata(self.policy).tables[h.source_table_name(table)]
        where = sa.and_(source.c[h.ORIGIN] == self.node_id, source.c._deleted == sa.false())
        return TableDigest(conn, source, spec, where)

    def _args(self, spec: Spec) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "table": h.source_table_name(self.policy.tables[spec.table]),
            "cols": [c.name for c in spec.columns],
            "kinds": [c.kind.value for c in spec.columns],
            "scales": [c.scale for c in spec.columns],
            "key": list(spec.key),
        }

    def digests(
        self, spec: Spec, modulus: int, parent_modulus: int, parents: Sequence[int] | None
    ) -> dict[int, Digest]:
        def pg(conn: Connection) -> dict[int, Digest]:
            rows = conn.execute(
                sa.text(
                    "SELECT * FROM syncd_reconcile_digests(:node, :table, CAST(:cols AS text[]), "
                    "CAST(:kinds AS text[]), CAST(:scales AS int[]), CAST(:key AS text[]), "
                    ":m, :pm, CAST(:parents AS bigint[]))"
                ),
                {**self._args(spec), "m": modulus, "pm": parent_modulus, "parents": parents},
            )
            return {
                int(b): Digest(
                    int(n),
                    tuple(None if s is None else decimal.Decimal(s) for s in sums),
                    int(hsum or 0),
                )
                for b, n, hsum, sums in rows
            }

        if self._pg:
            return dict(self._ask("bucket digests", pg))
        return dict(
            self._ask(
                "bucket digests",
                lambda c: self._local(c, spec).digests(modulus, parent_modulus, parents),
            )
        )

    def leaf(self, spec: Spec, modulus: int, buckets: Sequence[int]) -> dict[str, str]:
        def pg(conn: Connection) -> dict[str, str]:
            rows = conn.execute(
                sa.text(
                    "SELECT * FROM syncd_reconcile_leaf(:node, :table, CAST(:cols AS text[]), "
                    "CAST(:kinds AS text[]), CAST(:scales AS int[]), CAST(:key AS text[]), "
                    ":m, CAST(:buckets AS bigint[]))"
                ),
                {**self._args(spec), "m": modulus, "buckets": list(buckets)},
            )
            return {str(k): str(v) for k, v in rows}

        if self._pg:
            return dict(self._ask("keys of buckets", pg))
        return dict(
            self._ask("keys of buckets", lambda c: self._local(c, spec).leaf(modulus, buckets))
        )

    def columns(self, spec: Spec, keys: Sequence[str], values: bool) -> dict[str, dict[str, Any]]:
        def pg(conn: Connection) -> dict[str, dict[str, Any]]:
            rows = conn.execute(
                sa.text(
                    "SELECT * FROM syncd_reconcile_columns(:node, :table, CAST(:cols AS text[]), "
                    "CAST(:kinds AS text[]), CAST(:scales AS int[]), CAST(:key AS text[]), "
                    "CAST(:keys AS text[]), :values)"
                ),
                {**self._args(spec), "keys": list(keys), "values": values},
            )
            out: dict[str, dict[str, Any]] = {}
            for k, raw in rows:
                cells = [None if values and v == NULL else v for v in raw]
                out[str(k)] = dict(zip([c.name for c in spec.columns], cells, strict=True))
            return out

        if not keys:
            return {}
        if self._pg:
            return dict(self._ask("column hashes", pg))
        return dict(
            self._ask("column hashes", lambda c: self._local(c, spec).columns(keys, values))
        )

    def pending(self, spec: Spec, keys: Sequence[str]) -> dict[str, str]:
        """Which of `keys` are in open quarantine or in a batch not yet applied."""
        if not keys:
            return {}
        if self._pg:

            def pg(conn: Connection) -> dict[str, str]:
                rows = conn.execute(
                    sa.text(
                        "SELECT * FROM syncd_reconcile_pending(:node, :table, "
                        "CAST(:key AS text[]), CAST(:keys AS text[]))"
                    ),
                    {
                        "node": self.node_id,
                        "table": spec.table,
                        "key": list(spec.key),
                        "keys": list(keys),
                    },
                )
                return _first_state(rows)

            return dict(self._ask("quarantine and in-flight keys", pg))
        return dict(
            self._ask(
                "quarantine and in-flight keys",
                lambda c: pending_local(c, self.node_id, spec, set(keys)),
            )
        )

    def record(self, summary: dict[str, Any]) -> None:
        """Leave the run's summary (counts, no values) for the hub's audit log."""
        text = canonical(summary)
        with translated("recording the reconcile at the hub"), self.engine.begin() as conn:
            if self._pg:
                try:
                    conn.execute(
                        sa.text("SELECT syncd_reconcile_record(:node, CAST(:s AS jsonb))"),
                        {"node": self.node_id, "s": text},
                    )
                except sa.exc.DBAPIError as exc:
                    _refused(exc)
                    raise
                return
            conn.execute(
                h.inbox_events.insert().values(
                    node_id=self.node_id, kind=h.RECONCILE_EVENT, reason=text, at=utcnow()
                )
            )


def _first_state(rows: Any) -> dict[str, str]:
    """Key → state; quarantine wins over in flight (a row can be both: sent again)."""
    out: dict[str, str] = {}
    for k, state in rows:
        if out.get(str(k)) != "quarantined":
            out[str(k)] = str(state)
    return out


def pending_local(conn: Connection, node_id: str, spec: Spec, keys: set[str]) -> dict[str, str]:
    """`syncd_reconcile_pending` on a SQLite hub: the same answer, keys read in Python."""
    q, b, r = h.quarantine.c, h.batches.c, h.batch_rows.c
    found: list[tuple[str, str]] = []
    quarantined = conn.execute(
        sa.select(q.row_key).where(
            q.node_id == node_id,
            q.table_name == spec.table,
            q.status == h.QuarantineStatus.OPEN,
        )
    ).scalars()
    found += [(key_text(spec, k), "quarantined") for k in quarantined if isinstance(k, dict)]
    flying = conn.execute(
        sa.select(r.row_key)
        .join(h.batches, b.batch_id == r.batch_id)
        .where(
            b.node_id == node_id,
            b.status == h.BatchStatus.PENDING,
            r.table_name == spec.table,
        )
    ).scalars()
    found += [(key_text(spec, k), "in_flight") for k in flying if isinstance(k, dict)]
    payloads = conn.execute(
        sa.select(b.payload).where(
            b.node_id == node_id, b.status == h.BatchStatus.PENDING, b.payload.is_not(None)
        )
    ).scalars()
    for text in payloads:
        changes, _ = payload.read(text)
        found += [
            (key_text(spec, c.wire_key), "in_flight")
            for c in changes or ()
            if c.table == spec.table
        ]
    return _first_state((k, s) for k, s in found if k in keys)


def _refused(exc: sa.exc.DBAPIError) -> None:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in ("42501", "42704", "42703", "22023"):
        raise BatchRefused(str(exc.orig).splitlines()[0]) from exc


@dataclass(frozen=True)
class NodeReconcile:
    """The last reconcile a city recorded at this hub."""

    node_id: str
    at: str
    audited: bool
    in_sync: bool
    summary: dict[str, Any]


def last_results(conn: Connection, node: str | None = None) -> list[NodeReconcile]:
    """Per node, its last recorded reconcile: audited entries, then events not yet audited."""
    a, e = h.audit.c, h.inbox_events.c
    latest: dict[str, NodeReconcile] = {}
    audited = sa.select(a.node_id, a.at, a.detail).where(a.action == Action.RECONCILE)
    if node is not None:
        audited = audited.where(a.node_id == node)
    for node_id, at, detail in conn.execute(audited.order_by(a.entry_id)):
        summary = json.loads(detail).get("summary", {})
        latest[str(node_id)] = _result(str(node_id), at, True, summary)
    waiting = sa.select(e.node_id, e.at, e.reason).where(
        e.kind == h.RECONCILE_EVENT, e.audited == sa.false()
    )
    if node is not None:
        waiting = waiting.where(e.node_id == node)
    for node_id, at, reason in conn.execute(waiting.order_by(e.event_id)):
        latest[str(node_id)] = _result(str(node_id), at, False, json.loads(reason))
    if node is not None and node not in latest:
        raise UsageError(f"no reconcile recorded for node {node}")
    return [latest[k] for k in sorted(latest)]


def _result(node_id: str, at: Any, audited: bool, summary: Any) -> NodeReconcile:
    summary = summary if isinstance(summary, dict) else {}
    at_text = at.isoformat() if hasattr(at, "isoformat") else str(at)
    return NodeReconcile(node_id, at_text, audited, bool(summary.get("in_sync")), summary)
