"""The audit entries of one golden record: `audit log --golden-id` and `--id-number`.

A golden record's history is spread over entries of its table: each city's source row is
logged under that city's node and row key, conflicts under the record's identity, and every
entry apply or a steward wrote about the record carries its golden_id in the detail (which
also finds a source row that has since moved to another identity). `GoldenScope` is found
with two small reads (the golden rows, their source rows' keys); the log itself is filtered
in SQL, never scanned here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.core.canonical import canonical
from syncd.core.checks import check_value, normalise
from syncd.core.errors import UsageError
from syncd.core.merge import encode_value
from syncd.core.policy import Policy, Table
from syncd.store import hub_tables as h
from syncd.store.bulk import golden_table, source_table
from syncd.store.db import translated

ID_NUMBER = "id_number"


@dataclasses.dataclass(frozen=True)
class GoldenScope:
    """The lines of some golden records of one table, as a SQL condition on the log's lines
    (`syncd.hub.audit_query.lines`: entries and row decisions)."""

    table: str
    golden_ids: tuple[int, ...]
    identity_keys: tuple[str, ...]  # canonical JSON of each identity (conflict entries)
    source_keys: tuple[tuple[str, str], ...]  # (node_id, canonical row key) of source rows

    def condition(self, c: Any) -> sa.ColumnElement[bool]:
        """table_name is the table and the line is about one of the records (`c`: columns
        with table_name, node_id, row_key and detail)."""
        about: list[sa.ColumnElement[bool]] = [
            sa.and_(c.node_id == node, c.row_key == key) for node, key in self.source_keys
        ]
        if self.identity_keys:
            about.append(c.row_key.in_(self.identity_keys))
        for gid in self.golden_ids:
            # Detail is canonical JSON (sorted keys, no spaces): the id ends at "," or "}".
            about.append(c.detail.like(f'%"golden_id":{gid},%'))
            about.append(c.detail.like(f'%"golden_id":{gid}}}%'))
        return sa.and_(c.table_name == self.table, sa.or_(sa.false(), *about))


def _identity_table(policy: Policy, name: str | None, column: str | None) -> Table:
    merged = [
        t for t in policy.public_tables if t.identity and (column is None or column in t.identity)
    ]
    if name is not None:
        table = policy.tables.get(name)
        if table is None or table not in merged:
            what = "merged into golden records" if column is None else f"identified by {column}"
            raise UsageError(f"--table {name}: not a table {what} in the policy")
        return table
    if len(merged) != 1:
        names = ", ".join(t.name for t in merged) or "none"
        raise UsageError(f"give --table: golden records are kept for {names}")
    return merged[0]


def id_number_forms(table: Table, number: str) -> set[str]:
    """The forms the hub may store a number in: normalised, and canonical by each check."""
    forms = {normalise(number)}
    for check in table.checks:
        if check.column == ID_NUMBER:
            canonical_form, problem = check_value(check.check, number)
            if problem is None and isinstance(canonical_form, str):
                forms.add(canonical_form)
    return forms


def _scope(
    conn: Connection, policy: Policy, table: Table, where: sa.ColumnElement[bool]
) -> GoldenScope:
    golden = golden_table(policy, table)
    ident_cols = [golden.c[c] for c in table.identity]
    found = conn.execute(sa.select(golden.c[h.GOLDEN_ID], *ident_cols).where(where)).all()
    identities = [tuple(r[1:]) for r in found]
    src = source_table(policy, table)
    source_keys: list[tuple[str, str]] = []
    if identities:
        matches = sa.or_(
            *(
                sa.and_(*(src.c[c] == v for c, v in zip(table.identity, ident, strict=True)))
                for ident in identities
            )
        )
        pk = [src.c[c] for c in table.primary_key]
        for r in conn.execute(sa.select(src.c[h.ORIGIN], *pk).where(matches)):
            key = {c: encode_value(v) for c, v in zip(table.primary_key, r[1:], strict=True)}
            source_keys.append((r[0], canonical(key)))
    return GoldenScope(
        table=table.name,
        golden_ids=tuple(int(r[0]) for r in found),
        identity_keys=tuple(canonical(_identity_doc(table, i)) for i in identities),
        source_keys=tuple(sorted(set(source_keys))),
    )


def _identity_doc(table: Table, identity: tuple[Any, ...]) -> dict[str, Any]:
    return {c: encode_value(v) for c, v in zip(table.identity, identity, strict=True)}


def golden_scope(
    conn: Connection,
    policy: Policy,
    *,
    table: str | None = None,
    golden_id: int | None = None,
    id_number: str | None = None,
) -> GoldenScope:
    """The scope of one golden record by id (`table` needed if several tables merge), or of
    every golden record whose identity holds that id number (normalised as the hub does)."""
    if (golden_id is None) == (id_number is None):
        raise UsageError("give one of --golden-id or --id-number")
    merged = _identity_table(policy, table, None if id_number is None else ID_NUMBER)
    golden = golden_table(policy, merged)
    where: sa.ColumnElement[bool]
    if id_number is not None:
        where = golden.c[ID_NUMBER].in_(sorted(id_number_forms(merged, id_number)))
    else:
        where = golden.c[h.GOLDEN_ID] == golden_id
    with translated("finding a golden record's audit entries"):
        scope = _scope(conn, policy, merged, where)
    if golden_id is not None and golden_id not in scope.golden_ids:
        # No such golden row (any more): its id may still be in the log's details.
        scope = dataclasses.replace(scope, golden_ids=(*scope.golden_ids, golden_id))
    return scope
