"""Bulk writes (COPY on PostgreSQL, executemany on SQLite) store exactly what was given."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd.hub.audit import AuditWriter, verify
from syncd.hub.audit_query import query
from syncd.store.bulk import upsert
from syncd.store.db import create_engine
from syncd.store.hub_tables import audit, audit_rows
from syncd.store.sqltypes import ExactDecimal, JsonDoc

AWKWARD = ["tab\there", "line\nbreak\r\n", "back\\slash", "\\N", "", '张三 ‘quoted’ "x"', "a,b;c|d"]

md = sa.MetaData()
things = sa.Table(
    "things",
    md,
    sa.Column(
        "thing_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("note", sa.Text()),
    sa.Column("amount", ExactDecimal(18, 2)),
    sa.Column("born", sa.Date()),
    sa.Column("seen", sa.DateTime()),
    sa.Column("flag", sa.Boolean()),
    sa.Column("tags", JsonDoc),
    sa.UniqueConstraint("name", name="uq_things_name"),
)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    md.create_all(eng)
    audit.create(eng)
    audit_rows.create(eng)
    yield eng
    eng.dispose()


def _row(i: int, note: str | None) -> dict[str, Any]:
    return {
        "name": f"n{i:02d}",
        "note": note,
        "amount": None if i % 3 == 0 else Decimal(f"{i}.{i % 10}0") * (-1 if i % 2 else 1),
        "born": dt.date(1990, 1, 1 + i % 28),
        "seen": dt.datetime(2025, 3, 1, 8, 0, i, 123456),
        "flag": [True, False, None][i % 3],
        "tags": [[], ["a", "b\\c"], None, [note or "x"]][i % 4],
    }


def _stored(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(things).order_by(things.c.name)).mappings()
        return [dict(r) for r in rows]


def test_upsert_inserts_then_updates_every_type(engine: Engine) -> None:
    notes: list[str | None] = [*AWKWARD, None]
    first = [_row(i, notes[i % len(notes)]) for i in range(12)]
    with engine.begin() as conn:
        upsert(conn, things, list(reversed(first)), ["name"], ["note", "amount"])
    stored = _stored(engine)
    assert [{k: v for k, v in r.items() if k != "thing_id"} for r in stored] == first
    # Serial ids follow the order of the rows given, as a multi-row INSERT gives them.
    assert [r["thing_id"] for r in stored] == list(range(12, 0, -1))
    # Twice in one transaction: the second call must not see the first one's rows.
    changed = [{**r, "note": f"v2 {r['note']}", "amount": Decimal("0.10")} for r in first[:5]]
    added = [_row(i, "new") for i in range(12, 14)]
    with engine.begin() as conn:
        upsert(conn, things, changed, ["name"], ["note", "amount"])
        upsert(conn, things, added, ["name"], ["note", "amount"])
    stored = _stored(engine)
    assert [{k: v for k, v in r.items() if k != "thing_id"} for r in stored] == [
        *changed,
        *first[5:],
        *added,
    ]
    # (PostgreSQL draws a sequence number for each conflicting row too, as it always did.)
    ids = [r["thing_id"] for r in stored]
    assert ids[-2] > max(ids[:-2])
    assert ids[-1] > ids[-2]


def test_audit_entries_with_awkward_text_chain_and_read_back(engine: Engine) -> None:
    with engine.begin() as conn:
        writer = AuditWriter(conn)
        for i, text in enumerate(AWKWARD):
            writer.append(
                "row_applied",
                node_id="3301",
                batch_id=i,
                table="customers",
                key={"customer_id": text},
                detail={"note": text, "amount": Decimal("1.50")},
            )
            # The same text as a version-1 entry of its own (entries' columns, not row lines).
            writer.append("stale", node_id="3301", key={"customer_id": text}, detail={"n": text})
        writer.flush()
    with engine.connect() as conn:
        assert verify(conn).ok
        lines = query(conn)
    rows = [e for e in lines if e["action"] == "row_applied"]
    assert [(e["entry_id"], e["ord"]) for e in rows] == [
        (2 * i + 1, 1) for i in range(len(AWKWARD))
    ]
    assert [e["row_key"] for e in rows] == [{"customer_id": t} for t in AWKWARD]
    assert [e["detail"]["note"] for e in rows] == AWKWARD
    entries = [e for e in lines if e["action"] == "stale"]
    assert [e["row_key"] for e in entries] == [{"customer_id": t} for t in AWKWARD]
    assert [e["detail"]["n"] for e in entries] == AWKWARD
