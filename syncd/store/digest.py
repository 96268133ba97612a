"""Reconcile's questions as SQL over one table: bucket digests, leaf keys, column hashes.

Used by the city on its CRM table (rows its policy sends) and by a SQLite hub on a source
table (rows of one node); a PostgreSQL hub answers the same questions with the functions in
syncd/hub/sql/postgresql/reconcile_functions.sql, which must render the same text.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from functools import reduce
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.core.reconcile import NULL, SEP, Col, Digest, Kind, Spec
from syncd.store.dialect import Dialect, dialect_for


def _text(d: Dialect, source: sa.Table, col: Col) -> sa.ColumnElement[Any]:
    expr: sa.ColumnElement[Any] = source.c[col.name]
    if col.kind is Kind.DEC:
        return d.decimal_text(expr, col.scale)
    if col.kind is Kind.DATE:
        return d.date_text(expr)
    if col.kind is Kind.TS:
        return d.timestamp_text(expr)
    if col.kind is Kind.BOOL:
        return sa.case((expr == sa.true(), "t"), (expr == sa.false(), "f"))
    if col.kind is Kind.LIST:
        elements = d.list_elements(expr)
        agg = sa.func.coalesce(sa.select(d.text_agg(elements.c.value, SEP)).scalar_subquery(), "")
        # A None list may be stored as SQL NULL or as the JSON document null: both are NULL.
        return sa.case((sa.or_(expr.is_(None), d.json_null(expr)), None), else_=agg)
    return sa.cast(expr, sa.Text())


def _joined(d: Dialect, source: sa.Table, cols: Sequence[Col]) -> sa.ColumnElement[Any]:
    parts = [sa.func.coalesce(_text(d, source, c), NULL) for c in cols]
    return reduce(lambda a, b: a.concat(SEP).concat(b), parts)


class TableDigest:
    """The questions of `syncd.core.reconcile.Side` about one table, limited by `where`."""

    def __init__(self, conn: Connection, source: sa.Table, spec: Spec, where: Any) -> None:
        self.conn = conn
        self.source = source
        self.spec = spec
        self.where = where
        self.d = dialect_for(conn)
        self.key_text = _joined(self.d, source, spec.key_cols)
        self.row_text = _joined(self.d, source, spec.columns)
        self.key32 = self.d.key32(self.key_text)

    def digests(
        self, modulus: int, parent_modulus: int, parents: Sequence[int] | None
    ) -> dict[int, Digest]:
        bucket = (self.key32 % modulus).label("b")
        sums = [self.d.exact_sum(self.source.c[m]) for m in self.spec.money]
        q = sa.select(bucket, sa.func.count(), self.d.hash_sum(self.row_text), *sums).where(
            self.where
        )
        if parents is not None:
            q = q.where((self.key32 % parent_modulus).in_(list(parents)))
        out: dict[int, Digest] = {}
        # By position: a CRM column named like the label would win over it in GROUP BY.
        for row in self.conn.execute(q.group_by(sa.text("1"))):
            sums_ = tuple(None if v is None else decimal.Decimal(str(v)) for v in row[3:])
            out[int(row[0])] = Digest(int(row[1]), sums_, int(decimal.Decimal(str(row[2] or 0))))
        return out

    def leaf(self, modulus: int, buckets: Sequence[int]) -> dict[str, str]:
        q = sa.select(self.key_text, self.d.md5_hex(self.row_text)).where(
            self.where, (self.key32 % modulus).in_(list(buckets))
        )
        return {str(k): str(h) for k, h in self.conn.execute(q)}

    def columns(self, keys: Sequence[str], values: bool) -> dict[str, dict[str, Any]]:
        exprs: list[sa.ColumnElement[Any]] = [
            sa.func.coalesce(_text(self.d, self.source, c), NULL) for c in self.spec.columns
        ]
        if not values:
            exprs = [self.d.md5_hex(e) for e in exprs]
        q = sa.select(self.key_text, *exprs).where(self.where, self.key_text.in_(list(keys)))
        out: dict[str, dict[str, Any]] = {}
        for row in self.conn.execute(q):
            cells = [None if values and v == NULL else v for v in row[1:]]
            out[str(row[0])] = {c.name: v for c, v in zip(self.spec.columns, cells, strict=True)}
        return out
