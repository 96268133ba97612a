"""The egress ledger's pure side: what a batch carried, and the summary an auditor signs.

A ledger entry names the tables and columns a batch carried and how many rows of each
operation — never a value. The summary of a period is the union of what left, checked against
the public shape of the policy in force (`syncd.core.agreement.public_shape`): a table that is
not public, or a column that is not a public column of its table, is a violation named with its
batch. Every entry counts, acknowledged or not: a batch whose answer never came may still have
reached the hub, so the statement covers everything that was put on the wire.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from syncd.core.batch import DELETE, UPSERT, Change
from syncd.core.canonical import canonical

# {table: {"columns": [sorted names], "upsert": n, "delete": n}}
Carried = dict[str, dict[str, Any]]


class EgressStatus(StrEnum):
    """`syncd_egress.status`: a batch is recorded as sent before it goes, then answered."""

    SENT = "sent"  # on its way, or the process stopped before the answer was recorded
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the hub already held it: acknowledged all the same
    REFUSED = "refused"  # the hub refused it (and audited and wiped what it received)
    UNACKNOWLEDGED = "unacknowledged"  # no answer will come: the hub did not keep it

    @property
    def acknowledged(self) -> bool:
        return self in (EgressStatus.ACCEPTED, EgressStatus.DUPLICATE)


def carried(changes: Iterable[Change]) -> Carried:
    """The tables, column names and per-operation row counts of a batch's changes."""
    found: dict[str, tuple[set[str], dict[str, int]]] = {}
    for ch in changes:
        columns, counts = found.setdefault(ch.table, (set(), {UPSERT: 0, DELETE: 0}))
        columns.update(ch.key)
        columns.update(ch.row or {})
        counts[ch.op] = counts.get(ch.op, 0) + 1
    return {
        table: {"columns": sorted(columns), **counts}
        for table, (columns, counts) in sorted(found.items())
    }


@dataclass(frozen=True)
class EgressEntry:
    """One ledger row: one batch put on the wire (no row values)."""

    first_seq: int
    last_seq: int
    checksum: str
    covered: int  # changelog rows the batch covers, filtered-out ones included
    row_count: int
    carried: Carried
    policy_fingerprint: str
    status: EgressStatus
    hub_batch_id: int | None
    sent_at: dt.datetime
    acknowledged_at: dt.datetime | None

    def record(self) -> dict[str, Any]:
        """The entry as JSON-ready data: what `--json` prints and the period digest hashes."""
        return {
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checksum": self.checksum,
            "covered": self.covered,
            "row_count": self.row_count,
            "carried": self.carried,
            "policy_fingerprint": self.policy_fingerprint,
            "status": self.status.value,
            "hub_batch_id": self.hub_batch_id,
            "sent_at": _iso(self.sent_at),
            "acknowledged_at": _iso(self.acknowledged_at),
        }


@dataclass(frozen=True)
class Violation:
    """A table or column that left the city although the policy in force keeps it local."""

    first_seq: int
    last_seq: int
    hub_batch_id: int | None
    table: str
    column: str | None  # None: the whole table is not public

    def describe(self) -> str:
        batch = f"batch {self.first_seq}-{self.last_seq} (hub batch {self.hub_batch_id or '-'})"
        if self.column is None:
            return f"{batch} carried table {self.table}, which is not public"
        return f"{batch} carried column {self.table}.{self.column}, which is not public"


@dataclass(frozen=True)
class EgressSummary:
    batches: int
    rows: int
    acknowledged: int
    tables: dict[str, list[str]]  # the union of what left: table → sorted columns
    rows_by_table: dict[str, dict[str, int]]  # table → {"upsert": n, "delete": n}
    violations: tuple[Violation, ...]
    # Batches sent under another policy shape than the one in force: (first, last, fingerprint).
    other_policies: tuple[tuple[int, int, str], ...]
    unacknowledged: tuple[tuple[int, int, str], ...]  # (first, last, status) not acknowledged
    digest: str

    @property
    def ok(self) -> bool:
        return not self.violations


def violations(entry: EgressEntry, shape: Mapping[str, Sequence[str]]) -> list[Violation]:
    """Every table and column of one entry that the public shape does not allow."""
    found = []
    for table, what in sorted(entry.carried.items()):
        allowed = shape.get(table)
        ident = (entry.first_seq, entry.last_seq, entry.hub_batch_id, table)
        if allowed is None:
            found.append(Violation(*ident, None))
            continue
        found += [Violation(*ident, c) for c in sorted(set(what["columns"]) - set(allowed))]
    return found


def summarise(
    entries: Sequence[EgressEntry], shape: Mapping[str, Sequence[str]], fingerprint: str
) -> EgressSummary:
    """The period's summary, checked against a policy's public shape and fingerprint."""
    tables: dict[str, set[str]] = {}
    rows: dict[str, dict[str, int]] = {}
    found: list[Violation] = []
    for entry in entries:
        for table, what in entry.carried.items():
            tables.setdefault(table, set()).update(what["columns"])
            counts = rows.setdefault(table, {UPSERT: 0, DELETE: 0})
            for op in (UPSERT, DELETE):
                counts[op] += int(what.get(op, 0))
        found += violations(entry, shape)
    return EgressSummary(
        batches=len(entries),
        rows=sum(e.row_count for e in entries),
        acknowledged=sum(e.status.acknowledged for e in entries),
        tables={t: sorted(cols) for t, cols in sorted(tables.items())},
        rows_by_table=dict(sorted(rows.items())),
        violations=tuple(found),
        other_policies=tuple(
            (e.first_seq, e.last_seq, e.policy_fingerprint)
            for e in entries
            if e.policy_fingerprint != fingerprint
        ),
        unacknowledged=tuple(
            (e.first_seq, e.last_seq, e.status.value) for e in entries if not e.status.acknowledged
        ),
        digest=digest(entries),
    )


def digest(entries: Sequence[EgressEntry]) -> str:
    """SHA-256 over the canonical JSON of the entries' records, in ledger order."""
    text = canonical([e.record() for e in entries])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def statement(
    summary: EgressSummary,
    node_id: str,
    since: dt.datetime | None,
    until: dt.datetime,
    policy_path: str,
    fingerprint: str,
) -> str:
    """The sentence an auditor signs (or, with violations, the one that says it cannot be)."""
    start = _when(since) if since is not None else "the start of the ledger"
    period = f"Between {start} and {_when(until)} (UTC+00:00)"
    checked = f"checked against policy {policy_path}, fingerprint {fingerprint}"
    if summary.batches == 0:
        return f"{period}, no batch left city {node_id} ({checked})."
    what = "; ".join(f"{t} ({', '.join(cols)})" for t, cols in summary.tables.items()) or "none"
    head = (
        f"{period}, {summary.batches} batches ({summary.rows} rows) left city {node_id}; "
        f"only these tables and columns: {what}"
    )
    if summary.violations:
        return (
            f"{head}. NOT COMPLIANT: {len(summary.violations)} table(s) or column(s) "
            f"that the policy keeps local were sent ({checked})."
        )
    return f"{head}; no row of a local table and no excluded column was sent ({checked})."


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(value: dt.datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds")
