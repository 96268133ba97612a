"""Hub inbox: idempotent submission, refusals, watermarks; on PostgreSQL, node credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from syncd.app import init_node
from syncd.core.batch import UPSERT, Change, SubmitStatus, make_batch
from syncd.core.errors import BatchRefused
from syncd.hub.apply import load_changes
from syncd.hub.inbox import HubInbox
from syncd.hub.nodes import register_node
from syncd.store import hub_tables as h
from syncd.store.db import create_engine
from tests.conftest import PG_ADMIN
from tests.helpers import run_syncd, settings_for, write_config
from tests.integration.test_apply import STAMP

ACCEPTED, DUPLICATE, REFUSED = SubmitStatus.ACCEPTED, SubmitStatus.DUPLICATE, SubmitStatus.REFUSED


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
        b1 = make_batch("city-3301", 1, 10, [loan(3), loan(9, "L2")], STAMP)
        first = inbox.submit(b1)
        assert first.status == ACCEPTED
        assert inbox.watermark() == 10
        again = inbox.submit(b1)  # the same batch again: a no-op, naming the batch it repeats
        assert (again.status, again.batch_id) == (DUPLICATE, first.batch_id)
        b2 = make_batch("city-3301", 11, 12, [], STAMP)  # everything filtered: still acknowledged
        second = inbox.submit(b2)
        assert second.status == ACCEPTED
        assert inbox.watermark() == 12
    finally:
        inbox.close()
    engine = create_engine(hub)
    with engine.connect() as conn:
        batches = conn.execute(
            sa.select(h.batches.c.last_seq, h.batches.c.row_count).order_by(h.batches.c.last_seq)
        ).all()
        ids = conn.execute(sa.select(h.batches.c.batch_id).order_by(h.batches.c.last_seq))
        assert list(ids.scalars()) == [first.batch_id, second.batch_id]
        rows = [c for b in (first, second) for _, c in load_changes(conn, b.batch_id or 0)]
    engine.dispose()
    assert [tuple(b) for b in batches] == [(10, 2), (12, 0)]
    assert sorted(c.seq for c in rows) == [3, 9]
    assert [k for k, _ in events(hub)] == ["duplicate"]


def test_checksum_clash_and_overlap_are_refused(hub: str) -> None:
    inbox = HubInbox(hub, "city-3301")
    try:
        assert inbox.submit(make_batch("city-3301", 1, 10, [loan(3)], STAMP)).status == ACCEPTED
        clash = inbox.submit(make_batch("city-3301", 1, 10, [loan(4)], STAMP))
        assert clash.status == REFUSED
        assert clash.reason is not None
        assert "already received with checksum" in clash.reason
        overlap = inbox.submit(make_batch("city-3301", 5, 20, [loan(15)], STAMP))
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
        result = inbox.submit(make_batch("city-9999", 1, 2, [loan(1)], STAMP))
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
        assert as_a.submit(make_batch("city-3301", 1, 5, [loan(2)], STAMP)).status == ACCEPTED
        assert as_a.watermark() == 5
        as_a.close()

        pretending = HubInbox(a.hub_url, "city-3302")
        with pytest.raises(BatchRefused, match="may not submit"):
            pretending.submit(make_batch("city-3302", 1, 5, [loan(2)], STAMP))
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


def _scram_accepts(verifier: str, password: str) -> bool:
    """Whether a SCRAM-SHA-256 verifier from pg_authid is the one of this password (RFC 5802).

    The test server trusts 127.0.0.1, so a login would not prove which password the role has;
    the stored verifier does.
    """
    _, salt_part, keys = verifier.split("$")
    iterations, salt = salt_part.split(":")
    stored_key = base64.b64decode(keys.split(":")[0])
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest() == stored_key


def test_pg_rotated_credentials_replace_the_old_ones(
    tmp_path: Path, pg_url: str, drop_roles: list[str]
) -> None:
    """`node rotate`: the role's password is a new one, its open sessions end, audited."""
    conf = write_config(tmp_path / "hub.toml", "hub-33", "hub", pg_url)
    run_syncd(conf, "init", check=True)
    added = json.loads(run_syncd(conf, "node", "add", "city-3301", "--json", check=True).stdout)
    old = sa.engine.make_url(added["hub_url"])
    assert old.username
    assert old.password
    drop_roles.append(old.username)
    admin = psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True)
    try:

        def verifier() -> str:
            row = admin.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (old.username,)
            ).fetchone()
            assert row is not None
            return str(row[0])

        assert _scram_accepts(verifier(), old.password)
        session = psycopg.connect(
            old.set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
        )
        session.execute("SELECT syncd_node_watermark('city-3301')")

        proc = run_syncd(conf, "node", "rotate", "city-3301", "--json", check=True)
        out = json.loads(proc.stdout)
        assert out["node_id"] == "city-3301"
        assert out["sessions_ended"] == 1
        new = sa.engine.make_url(out["hub_url"])
        assert new.username == old.username
        assert new.host == old.host
        assert new.password
        assert new.password != old.password
        assert new.password not in proc.stderr
        assert _scram_accepts(verifier(), new.password)
        assert not _scram_accepts(verifier(), old.password)
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")  # the session opened before the rotation was ended
        session.close()

        inbox = HubInbox(out["hub_url"], "city-3301")
        try:
            assert inbox.submit(make_batch("city-3301", 1, 5, [loan(2)], STAMP)).status == ACCEPTED
        finally:
            inbox.close()
        log = json.loads(run_syncd(conf, "audit", "log", "--json", check=True).stdout)
        rotated = [e for e in log if e["action"] == "node_credentials_rotated"]
        assert [(e["node_id"], e["detail"]) for e in rotated] == [
            ("city-3301", {"role": old.username})
        ]
        assert new.password not in json.dumps(log)

        unknown = run_syncd(conf, "node", "rotate", "city-9999")
        assert unknown.returncode == 2
        assert "city-9999 is not registered" in unknown.stderr
    finally:
        for role in drop_roles:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.close()


def test_sqlite_hub_has_no_credentials_to_rotate(tmp_path: Path, sqlite_url: str) -> None:
    conf = write_config(tmp_path / "hub.toml", "hub-33", "hub", sqlite_url)
    run_syncd(conf, "init", check=True)
    run_syncd(conf, "node", "add", "city-3301", check=True)
    proc = run_syncd(conf, "node", "rotate", "city-3301")
    assert proc.returncode == 2
    assert "a SQLite hub has no node credentials to rotate" in proc.stderr
