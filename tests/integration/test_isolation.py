"""Fault isolation at the hub, on real SQLite and PostgreSQL (issue 10, items 2, 4 and 6).

A row the hub's database refuses is that row's problem: it is quarantined and its batch goes
on. A failure that is not one row's is that node's: it is recorded, shown and retried with a
backoff while every other node applies. The refusals are made by the real database (a
constraint, a trigger naming a missing table), never by patching syncd.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from sqlalchemy.engine import Engine

from syncd.core.settings import Settings
from syncd.daemon.metrics import Metrics
from syncd.hub.apply import apply_pending
from syncd.hub.audit import verify
from syncd.hub.quarantine import list_entries
from syncd.hub.status import hub_status
from syncd.store import hub_tables as h
from syncd.store.bulk import source_table
from syncd.store.db import create_engine, describe_failure, is_transient
from syncd.store.dialect import is_postgres
from tests.integration.test_apply import (
    LI,
    POLICY,
    WANG,
    ZHANG,
    customer,
    id_number,
    make_hub,
    sources,
    submit,
    two_cities,
    up,
)

SRC = source_table(POLICY, POLICY.table("customers")).name


def hub_settings(url: str) -> Settings:
    return Settings(node={"id": "hub-33", "role": "hub"}, database={"url": url})


def refuse_poison_rows(engine: Engine) -> None:
    """The hub database refuses a customer named 'poison', as validation never foresaw."""
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.exec_driver_sql(
                f"ALTER TABLE {SRC} ADD CONSTRAINT rule_7 CHECK (name <> 'poison')"
            )
            return
        for event in ("INSERT", "UPDATE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER rule_7_{event.lower()} BEFORE {event} ON {SRC} "
                "WHEN NEW.name = 'poison' BEGIN SELECT RAISE(ABORT, 'rule 7'); END"
            )


def break_node(engine: Engine, node: str) -> None:
    """Every write of `node`'s customers fails for a reason that is not the row's values."""
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.exec_driver_sql(
                "CREATE FUNCTION broken() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "INSERT INTO table_that_is_not_there VALUES (1); RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER broken BEFORE INSERT OR UPDATE ON {SRC} FOR EACH ROW "
                f"WHEN (NEW.origin_node = '{node}') EXECUTE FUNCTION broken()"
            )
            return
        # SQLite resolves tables when it prepares the trigger, for every row: malformed JSON
        # is an error of the statement (SQLITE_ERROR) only where the WHEN clause holds.
        conn.exec_driver_sql(
            f"CREATE TRIGGER broken BEFORE INSERT ON {SRC} WHEN NEW.origin_node = '{node}' "
            "BEGIN SELECT json('{not json'); END"
        )


def mend_node(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"DROP TRIGGER broken ON {SRC}" if is_postgres(conn) else "DROP TRIGGER broken"
        )


@pytest.fixture
def hub(db_url: str) -> Iterator[Engine]:
    engine = make_hub(db_url)
    two_cities(engine)
    yield engine
    engine.dispose()


def test_a_row_the_database_refuses_is_quarantined_and_the_rest_applies(hub: Engine) -> None:
    refuse_poison_rows(hub)
    submit(
        hub,
        "hz",
        [
            up(1, "customers", customer("c1", ZHANG)),
            up(2, "customers", customer("c2", LI, name="poison")),
            up(3, "customers", customer("c3", WANG)),
        ],
    )
    submit(hub, "nb", [up(1, "customers", customer("n1", id_number("33020319700101003")))])
    summary = apply_pending(hub, POLICY)
    assert summary.failed == {}
    assert (summary.batches, summary.applied, summary.quarantined) == (2, 3, 1)
    assert sorted(s["customer_id"] for s in sources(hub)) == ["c1", "c3", "n1"]
    with hub.connect() as conn:
        (entry,) = list_entries(conn)
        assert entry["row_key"] == {"customer_id": "c2"}
        assert entry["reason"].startswith("the hub database refused this row: ")
        assert "rule" in entry["reason"]
        assert "poison" not in entry["reason"]
        assert verify(conn).ok


def test_a_failing_node_waits_while_the_others_apply(hub: Engine) -> None:
    break_node(hub, "hz")
    submit(hub, "hz", [up(1, "customers", customer("c1", ZHANG, phone="13900000001"))])
    submit(hub, "hz", [up(2, "customers", customer("c2", LI))])
    submit(hub, "nb", [up(1, "customers", customer("n1", WANG))])

    # A backoff long enough that a loaded machine cannot outlast it between the two calls.
    first = apply_pending(hub, POLICY, max_backoff=5)
    assert list(first.failed) == ["hz"]
    assert "OperationalError" in first.failed["hz"] or "42P01" in first.failed["hz"]
    assert "13900000001" not in first.failed["hz"]
    assert first.by_node == {"nb": first.by_node["nb"]}
    assert first.by_node["nb"]["applied"] == 1

    status = hub_status(hub_settings(str(hub.url)), hub)
    assert not status.healthy
    hz = next(n for n in status.nodes if n.node_id == "hz")
    nb = next(n for n in status.nodes if n.node_id == "nb")
    assert (hz.failing, hz.failures, nb.failing) == (True, 1, False)
    assert hz.last_error is not None
    assert hz.retry_at is not None
    assert any(p.startswith("hz failing since") for p in status.problems)

    metrics = Metrics()
    metrics.watch(lambda: hub_status(hub_settings(str(hub.url)), hub))
    text = generate_latest(metrics.registry).decode()
    assert 'syncd_node_failing{origin="hz"} 1.0' in text
    assert 'syncd_node_failing{origin="nb"} 0.0' in text
    assert 'syncd_node_pending_batches{origin="hz"} 2.0' in text
    assert "syncd_healthy 0.0" in text

    # Within its backoff the node is left alone: nothing is tried, nothing counted again.
    more = apply_pending(hub, POLICY, max_backoff=5)
    assert more.resting == ("hz",)
    assert more.failed == {}
    with hub.connect() as conn:
        tries = conn.execute(sa.select(h.nodes.c.failures).where(h.nodes.c.node_id == "hz"))
        assert tries.scalar_one() == 1

    mend_node(hub)
    # An operator's `sync --once` retries it now; the daemon would wait out the backoff.
    done = apply_pending(hub, POLICY, max_backoff=30, retry_resting=True)
    assert done.failed == {}
    assert done.by_node["hz"]["batches"] == 2
    assert sorted(s["customer_id"] for s in sources(hub)) == ["c1", "c2", "n1"]
    status = hub_status(hub_settings(str(hub.url)), hub)
    assert status.healthy
    assert all(not n.failing and n.last_error is None for n in status.nodes)


def test_failure_descriptions_never_carry_row_values(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with pytest.raises(sa.exc.DataError) as caught, engine.connect() as conn:
            conn.execute(sa.text("SELECT CAST(:v AS integer)"), {"v": "secret-4417"})
        text = describe_failure(caught.value)
        assert "InvalidTextRepresentation" in text
        assert "22P02" in text
        assert "secret-4417" not in text
    finally:
        engine.dispose()


def test_a_pool_timeout_is_transient(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}", pool_size=1, max_overflow=0)
    engine.pool._timeout = 0.1  # type: ignore[attr-defined]  # a short wait for the test
    try:
        with engine.connect(), pytest.raises(sa.exc.TimeoutError) as caught, engine.connect():
            pass
        assert is_transient(caught.value)
    finally:
        engine.dispose()


# --- connection state (item 4) ------------------------------------------------------------


def test_a_connection_in_autocommit_goes_back_to_the_pool_transactional(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        raw = engine.raw_connection()
        raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        raw.close()
        with engine.begin() as conn:
            assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
            conn.exec_driver_sql("CREATE TEMP TABLE staged (x int) ON COMMIT DROP")
            conn.exec_driver_sql("INSERT INTO staged VALUES (1)")
            # In autocommit the table would be gone after its own statement.
            assert conn.exec_driver_sql("SELECT count(*) FROM staged").scalar_one() == 1
    finally:
        engine.dispose()


def test_the_listen_connection_never_returns_to_the_pool(tmp_path: Path, pg_url: str) -> None:
    from syncd.daemon.scheduler import Daemon
    from tests.helpers import run_syncd, write_config

    conf = write_config(tmp_path / "hub.toml", "hub-33", "hub", pg_url)
    run_syncd(conf, "init", check=True)
    daemon = Daemon(hub_settings(pg_url).model_copy(update={"config_path": conf}))
    listener = threading.Thread(target=daemon._listen, args=("syncd_inbox",))
    listener.start()
    admin = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        deadline = time.monotonic() + 20
        while daemon.wakes == 0 and time.monotonic() < deadline:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("NOTIFY syncd_inbox")
            time.sleep(0.1)
        assert daemon.wakes > 0, "the listener never heard a NOTIFY"
        with psycopg.connect(admin) as conn:
            listening = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN syncd_inbox' "
                "AND datname = current_database()"
            ).fetchall()
        assert len(listening) == 1
    finally:
        daemon.stop.set()
        listener.join(10)
    engine = daemon.node.engine
    try:
        for _ in range(3):
            with engine.connect() as conn:
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                assert pid != listening[0][0], "the LISTEN connection went back to the pool"
                assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
    finally:
        daemon.node.close()


def test_an_undecodable_stored_batch_is_refused_and_the_node_goes_on(hub: Engine) -> None:
    """An integer of 5,000 digits: valid JSON to the database, beyond what Python decodes
    by default (and beyond what any syncd city can encode). Such a batch cannot be checked
    against its checksum: it is refused and audited, and the node's next batch applies."""
    huge = "9" * 5000
    row = f'{{"customer_id": "c1", "risk_level": {huge}}}'
    with hub.begin() as conn:
        batch_id = conn.execute(
            h.batches.insert()
            .values(
                node_id="hz",
                first_seq=1,
                last_seq=1,
                row_count=1,
                checksum="0" * 64,
                received_at=dt.datetime(2026, 3, 1),
                status="pending",
            )
            .returning(h.batches.c.batch_id)
        ).scalar_one()
        cast = "CAST(:d AS jsonb)" if is_postgres(conn) else ":d"
        conn.execute(
            sa.text(
                "INSERT INTO syncd_inbox_row (batch_id, ord, seq, table_name, op, row_key,"
                f" row_data) VALUES (:b, 0, 1, 'customers', 'upsert', {cast.replace(':d', ':k')},"
                f" {cast})"
            ),
            {"b": batch_id, "k": '{"customer_id": "c1"}', "d": row},
        )
        conn.execute(h.nodes.update().where(h.nodes.c.node_id == "hz").values(received_seq=1))
    submit(hub, "hz", [up(2, "customers", customer("c2", ZHANG))])
    summary = apply_pending(hub, POLICY)
    assert summary.failed == {}
    assert (summary.batches_refused, summary.batches) == (1, 1)
    assert [s["customer_id"] for s in sources(hub)] == ["c2"]
    with hub.connect() as conn:
        refused = conn.execute(
            sa.select(h.batches.c.stats).where(h.batches.c.batch_id == batch_id)
        ).scalar_one()
        assert "cannot be decoded" in refused["reason"]
        assert huge[:20] not in refused["reason"]
        assert verify(conn).ok
