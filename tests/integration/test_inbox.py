"""Hub inbox: idempotent submission, refusals, watermarks; on PostgreSQL, node credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from syncd import schema_hub as h
from syncd.batch import UPSERT, Change, make_batch
from syncd.bootstrap import init_node
from syncd.db import create_engine
from syncd.errors import BatchRefused
from syncd.inbox import ACCEPTED, DUPLICATE, REFUSED, HubInbox, register_node
from tests.conftest import PG_ADMIN
from tests.helpers import settings_for, write_config


def loan(seq: int, loan_id: str = "L1") -> Change:
    return Change(seq, "loans", UPSERT, {"loan_id": loan_id}, {"loan_id": loan_id, "balance": 1})


@pytest.fixture
def hub(tmp_path: Path, db_url: str) -> Iterator[str]:
    init_node(settings_for(write_config(tmp_path / "hub.toml", "hub-33", "hub", db_url)))
    engine = create_engine(db_url)
    register_node(engine, db_url, "city-3301", "3301")
    engine.dispose()
    return db_url


def events(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(h.inbox_events.c.kind, h.inbox_events.c.reason).order_by(
                h.inbox_events.c.event_id
            )
        ).all()
    engine.dispose()
    return [(k, r) for k, r in rows]


def test_submit_is_idempotent_and_watermark_advances(hub: str) -> None:
    inbox = HubInbox(hub, "city-3301")
    try:
        assert inbox.watermark() == 0
        b1 = make_batch("city-3301", 1, 10, [loan(3), loan(9, "L2")])
        assert inbox.submit(b1).status == ACCEPTED
        assert inbox.watermark() == 10
        assert inbox.submit(b1).status == DUPLICATE  # the same batch again: a no-op
        b2 = make_batch("city-3301", 11, 12, [])  # everything filtered: still acknowledged
        assert inbox.submit(b2).status == ACCEPTED
        assert inbox.watermark() == 12
    finally:
        inbox.close()
    engine = create_engine(hub)
    with engine.connect() as conn:
        batches = conn.execute(
            sa.select(h.batches.c.last_seq, h.batches.c.row_count).order_by(h.batches.c.last_seq)
        ).all()
        rows = conn.execute(
            sa.select(h.batch_rows.c.seq, sa.cast(h.batch_rows.c.row_data, sa.Text))
        ).all()
    engine.dispose()
    assert [tuple(b) for b in batches] == [(10, 2), (12, 0)]
    assert sorted(r[0] for r in rows) == [3, 9]
    assert [k for k, _ in events(hub)] == ["duplicate"]


def test_checksum_clash_and_overlap_are_refused(hub: str) -> None:
    inbox = HubInbox(hub, "city-3301")
    try:
        assert inbox.submit(make_batch("city-3301", 1, 10, [loan(3)])).status == ACCEPTED
        clash = inbox.submit(make_batch("city-3301", 1, 10, [loan(4)]))
        assert clash.status == REFUSED
        assert clash.reason is not None
        assert "already received with checksum" in clash.reason
        overlap = inbox.submit(make_batch("city-3301", 5, 20, [loan(15)]))
        assert overlap.status == REFUSED
        assert overlap.reason is not None
        assert "overlaps" in overlap.reason
        assert inbox.watermark() == 10  # nothing of the refused batches was taken
    finally:
        inbox.close()
    assert [k for k, _ in events(hub)] == ["refused", "refused"]


def test_unregistered_node_is_refused(hub: str) -> None:
    inbox = HubInbox(hub, "city-9999")
    try:
        with pytest.raises(BatchRefused, match="not registered"):
            inbox.watermark()
        result = inbox.submit(make_batch("city-9999", 1, 2, [loan(1)]))
        assert result.status == REFUSED
    finally:
        inbox.close()


@pytest.fixture
def drop_roles() -> Iterator[list[str]]:
    roles: list[str] = []
    yield roles
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_pg_node_credentials_only_submit_as_themselves(
    tmp_path: Path, pg_url: str, drop_roles: list[str]
) -> None:
    init_node(settings_for(write_config(tmp_path / "hub.toml", "hub-33", "hub", pg_url)))
    engine = create_engine(pg_url)
    a = register_node(engine, pg_url, "city-3301", "3301")
    b = register_node(engine, pg_url, "city-3302", "3302")
    assert a.role_name
    assert b.role_name
    drop_roles += [a.role_name, b.role_name]
    try:
        assert a.hub_url != pg_url
        assert a.role_name in a.hub_url
        as_a = HubInbox(a.hub_url, "city-3301")
        assert as_a.submit(make_batch("city-3301", 1, 5, [loan(2)])).status == ACCEPTED
        assert as_a.watermark() == 5
        as_a.close()

        pretending = HubInbox(a.hub_url, "city-3302")
        with pytest.raises(BatchRefused, match="may not submit"):
            pretending.submit(make_batch("city-3302", 1, 5, [loan(2)]))
        with pytest.raises(BatchRefused, match="may not act"):
            pretending.watermark()
        pretending.close()

        raw = create_engine(a.hub_url)
        forbidden = [
            "INSERT INTO loans (origin_node, loan_id, _seq, _applied_at) "
            "VALUES ('city-3301', 'X', 1, now())",
            "UPDATE src_customers SET name = 'x'",
            "SELECT count(*) FROM syncd_audit",
            "UPDATE syncd_audit SET action = 'x'",
            "DELETE FROM syncd_audit",
            "SELECT count(*) FROM syncd_inbox_batch",
            "UPDATE syncd_node SET received_seq = 0",
            "INSERT INTO syncd_inbox_batch (node_id, first_seq, last_seq, row_count, checksum, "
            "received_at) VALUES ('city-3302', 1, 2, 0, 'x', now())",
        ]
        for stmt in forbidden:
            with (
                raw.connect() as conn,
                pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
            ):
                conn.execute(sa.text(stmt))
        raw.dispose()
        with engine.connect() as conn:  # B's position is untouched by A's attempts
            assert (
                conn.execute(
                    sa.text("SELECT received_seq FROM syncd_node WHERE node_id = 'city-3302'")
                ).scalar()
                == 0
            )
    finally:
        engine.dispose()
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
            for role in drop_roles:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
