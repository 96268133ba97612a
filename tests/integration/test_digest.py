"""Reconcile's canonical text is the same in SQLite, PostgreSQL and Python, for every kind."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import sqlalchemy as sa

from syncd.core import reconcile as r
from syncd.store.db import create_engine
from syncd.store.digest import TableDigest
from syncd.store.sqltypes import ExactDecimal, JsonDoc

SPEC = r.Spec(
    "kinds",
    (
        r.Col("k", r.Kind.TEXT),
        r.Col("n", r.Kind.INT),
        r.Col("d", r.Kind.DEC, 4),
        r.Col("b", r.Kind.BOOL),
        r.Col("day", r.Kind.DATE),
        r.Col("ts", r.Kind.TS),
        r.Col("tags", r.Kind.LIST),
    ),
    ("k",),
)

ROWS: list[dict[str, Any]] = [
    {
        "k": "全",
        "n": -5,
        "d": decimal.Decimal("12.3"),
        "b": True,
        "day": dt.date(2024, 2, 29),
        "ts": dt.datetime(2026, 1, 2, 3, 4, 5, 678),
        "tags": ["a", "乙"],
    },
    {"k": "empty", "n": 0, "d": decimal.Decimal("-0.0005"), "b": False, "tags": []},
    {"k": "nulls"},
]


def _table() -> sa.Table:
    return sa.Table(
        "kinds",
        sa.MetaData(),
        sa.Column("k", sa.String(16), primary_key=True),
        sa.Column("n", sa.BigInteger()),
        sa.Column("d", ExactDecimal(18, 4)),
        sa.Column("b", sa.Boolean()),
        sa.Column("day", sa.Date()),
        sa.Column("ts", sa.DateTime()),
        sa.Column("tags", JsonDoc),
    )


def expected(row: dict[str, Any]) -> str:
    return r.md5_hex(r.joined(r.text_of(c, row.get(c.name)) for c in SPEC.columns))


def test_rows_hash_as_python_renders_them(db_url: str) -> None:
    table = _table()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(
            table.insert(), [{c.name: row.get(c.name) for c in table.columns} for row in ROWS]
        )
    with engine.connect() as conn:
        digest = TableDigest(conn, table, SPEC, sa.true())
        everything = digest.digests(1, 1, None)[0]
        leaf = digest.leaf(1, [0])
        values = digest.columns([r.joined(["全"])], True)
    engine.dispose()
    assert leaf == {r.joined([row["k"]]): expected(row) for row in ROWS}
    assert everything.rows == 3
    assert everything.sums == (decimal.Decimal("12.2995"),)
    hashes = sum(r.row_hash60(expected(row)) for row in ROWS) % (1 << r.HASH_BITS)
    assert everything.hash % (1 << r.HASH_BITS) == hashes
    assert values[r.joined(["全"])] == {
        "k": "全",
        "n": "-5",
        "d": "12.3000",
        "b": "t",
        "day": "2024-02-29",
        "ts": "2026-01-02T03:04:05",
        "tags": "a\x1f乙",
    }
