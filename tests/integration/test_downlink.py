"""The downward path: the province's insights sent to each city, on its own customers only.

A hub on each dialect (real SQLite file, real PostgreSQL), two cities as real SQLite files;
customers and loans go up through the inbox and apply, then `publish` builds the batches and
each city `pull`s them. Expected figures are computed by hand from the data below.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from syncd.city import crm, insights
from syncd.core import downlink as wire
from syncd.core.canonical import canonical, loads
from syncd.core.errors import BatchRefused
from syncd.core.settings import DownlinkSection, ReportSection
from syncd.hub import downlink, inbox, reports
from syncd.hub.apply import apply_pending
from syncd.hub.audit import Action, verify
from syncd.hub.audit_query import query
from syncd.hub.inbox import HubInbox
from syncd.store import hub_tables as h
from syncd.store import migrate
from syncd.store.db import create_engine
from tests.integration.test_apply import (
    LI,
    POLICY,
    WANG,
    ZHANG,
    add_node,
    customer,
    id_number,
    loan,
    make_hub,
    rm,
    submit,
    up,
)

HZ, NB = "city-3301", "city-3302"
REPORT = ReportSection()
DOWN = DownlinkSection(batch_rows=2)


@pytest.fixture
def hub(db_url: str) -> Iterator[Engine]:
    engine = make_hub(db_url)
    with engine.begin() as conn:
        reports.install_views(conn, POLICY)
        inbox.install_functions(conn)
    add_node(engine, HZ, "3301")
    add_node(engine, NB, "3302")
    # 张三 (ZHANG) is held by both cities; 李四 (LI) only by Hangzhou; 王五 (WANG) only by Ningbo.
    submit(
        engine,
        HZ,
        [
            up(1, "customers", customer("C1", ZHANG)),
            up(2, "customers", customer("C2", LI, name="李四")),
            up(3, "loans", loan("L1", "C1", balance="100000.00")),
            up(4, "loans", loan("L2", "C2", balance="30000.00")),
        ],
    )
    submit(
        engine,
        NB,
        [
            up(1, "customers", customer("D7", ZHANG, home_city="3302")),
            up(2, "customers", customer("D8", WANG, name="王五", home_city="3302")),
        ],
    )
    apply_pending(engine, POLICY)
    yield engine
    engine.dispose()


def city(tmp_path: Path, node: str, customers: dict[str, str], url: str | None = None) -> Engine:
    """A city database: the CRM's customers (id → name) and the insight table, as init makes."""
    engine = create_engine(url or f"sqlite:///{tmp_path / f'{node}.db'}")
    with engine.begin() as conn:
        migrate.upgrade(conn, "city")
        crm.create_crm_schema(conn, POLICY)
        insights.install(conn, POLICY)
        for cid, name in customers.items():
            conn.execute(
                sa.text(
                    "INSERT INTO customers (customer_id, customer_type, name, id_type, id_number,"
                    " status, created_at, updated_at) VALUES (:c, 'individual', :n, 'ric', :c,"
                    " 'active', '2020-01-01', '2020-01-01')"
                ),
                {"c": cid, "n": name},
            )
    return engine


def held(engine: Engine) -> dict[str, dict[str, Any]]:
    table = insights.insight_table(POLICY)
    with engine.connect() as conn:
        return {r["customer_id"]: dict(r) for r in conn.execute(sa.select(table)).mappings()}


def pull(city_engine: Engine, hub_url: str, node: str) -> insights.PullResult:
    source = HubInbox(hub_url, node)
    try:
        return insights.pull(city_engine, source, POLICY, node)
    finally:
        source.close()


def batch_rows(engine: Engine, node: str) -> list[dict[str, Any]]:
    b = h.downlink_batches
    with engine.connect() as conn:
        query = sa.select(b).where(b.c.node_id == node).order_by(b.c.seq)
        return [dict(r) for r in conn.execute(query).mappings()]


def test_each_city_gets_its_own_customers_exactly_once(
    hub: Engine, db_url: str, tmp_path: Path
) -> None:
    built = downlink.publish(hub, POLICY, REPORT, DOWN)
    assert built.failed == {}
    assert built.customers == 3
    # Hangzhou holds C1 and C2 (2 changes: 1 batch of 2), Ningbo D7 and D8 (1 batch).
    assert built.changes == {HZ: 2, NB: 2}
    assert built.batches == {HZ: 1, NB: 1}

    # Contributions by hand (weights 1 / 0.5 / 20): ZHANG 100,000 × 0.5 = 50,000 (rank 1,
    # the one key customer of 3: ceil(3 × 5 %) = 1); LI 30,000 × 0.5 = 15,000 (rank 2, high:
    # ceil(3 × 20 %) = 1 < 2 ≤ ceil(3 × 50 %) = 2 → medium); WANG nothing → standard.
    hz = city(tmp_path, HZ, {"C1": "张三", "C2": "李四", "C9": "only local"})
    nb = city(tmp_path, NB, {"D7": "张三", "D8": "王五"})
    got = pull(hz, db_url, HZ)
    assert (got.batches, got.upserts, got.deletes, got.applied_seq, got.hub_seq) == (1, 2, 0, 1, 1)
    assert pull(nb, db_url, NB).applied_seq == 1

    hz_rows, nb_rows = held(hz), held(nb)
    assert set(hz_rows) == {"C1", "C2"}
    assert set(nb_rows) == {"D7", "D8"}
    assert (hz_rows["C1"]["tier"], hz_rows["C1"]["contribution_rank"]) == ("key", 1)
    assert hz_rows["C1"]["contribution"] == Decimal("50000.00")
    assert (hz_rows["C2"]["tier"], hz_rows["C2"]["contribution_rank"]) == ("medium", 2)
    assert (nb_rows["D8"]["tier"], nb_rows["D8"]["contribution"]) == ("standard", Decimal("0"))
    # The shared customer: same golden record and insight in both cities.
    shared = ("golden_id", "tier", "contribution_rank", "contribution", "digest")
    assert [hz_rows["C1"][k] for k in shared] == [nb_rows["D7"][k] for k in shared]

    # Exactly once: nothing new to build, nothing new to apply.
    assert downlink.publish(hub, POLICY, REPORT, DOWN).batches == {}
    assert pull(hz, db_url, HZ).batches == 0
    # The relationship manager's join: CRM customers with the province's tier, best first.
    with hz.connect() as conn:
        listing = insights.listing(conn, POLICY)
    assert [(r["customer_id"], r["name"], r["tier"]) for r in listing] == [
        ("C1", "张三", "key"),
        ("C2", "李四", "medium"),
    ]
    with hub.connect() as conn:
        lag = downlink.lag(conn)
        sent = conn.execute(sa.select(sa.func.count()).select_from(h.insight_sent)).scalar()
        entries = query(conn, action=Action.INSIGHTS_SENT)
        assert verify(conn).ok
    assert lag[HZ]["acked_seq"] == lag[HZ]["built_seq"] == 1
    assert sent == 4
    assert sorted((e["node_id"], e["detail"]["rows"]) for e in entries) == [(HZ, 2), (NB, 2)]


def test_changes_send_only_what_moved_and_deletes_reach_the_holder(
    hub: Engine, db_url: str, tmp_path: Path
) -> None:
    with hub.connect() as conn:
        assert downlink.due(conn)  # never built
    downlink.publish(hub, POLICY, REPORT, DOWN)
    with hub.connect() as conn:
        assert not downlink.due(conn)  # nothing applied since
    hz = city(tmp_path, HZ, {"C1": "张三", "C2": "李四"})
    nb = city(tmp_path, NB, {"D7": "张三", "D8": "王五"})
    pull(hz, db_url, HZ)
    pull(nb, db_url, NB)
    # LI's loan becomes substandard and overdue: only Hangzhou holds LI; Ningbo forgets WANG.
    submit(
        hub,
        HZ,
        [
            up(
                5,
                "loans",
                loan("L2", "C2", balance="30000.00", five_class="substandard", overdue_days=40),
            )
        ],
    )
    submit(hub, NB, [rm(3, "customers", {"customer_id": "D8"})])
    apply_pending(hub, POLICY)
    with hub.connect() as conn:
        assert downlink.due(conn)  # batches applied since the last build
    built = downlink.publish(hub, POLICY, REPORT, DOWN)
    assert built.changes == {HZ: 1, NB: 1}
    assert pull(hz, db_url, HZ).upserts == 1
    got = pull(nb, db_url, NB)
    assert (got.upserts, got.deletes) == (0, 1)
    assert set(held(nb)) == {"D7"}
    li = held(hz)["C2"]
    # Substandard is non-performing (high); 40 days overdue is the 31-90 band (medium).
    assert li["warning_reasons"] == "non_performing,overdue_31_90"
    assert (li["warning_count"], li["top_severity"]) == (2, 3)
    # <customer type>.<tier>.<age band>: 李四 was born on 1990-03-07.
    assert li["segment"] == f"individual.{li['tier']}.30-39"


def test_a_city_refuses_an_altered_or_missing_batch_and_keeps_its_position(
    hub: Engine, db_url: str, tmp_path: Path
) -> None:
    downlink.publish(hub, POLICY, ReportSection(), DownlinkSection(batch_rows=1))
    (first, second) = batch_rows(hub, HZ)
    hz = city(tmp_path, HZ, {"C1": "张三", "C2": "李四"})
    b = h.downlink_batches
    with hub.begin() as conn:  # someone with the hub's rights edits the second batch
        conn.execute(
            b.update()
            .where(b.c.node_id == HZ, b.c.seq == 2)
            .values(payload=second["payload"].replace('"medium"', '"key"'))
        )
    with pytest.raises(BatchRefused, match="batch 2 for city-3301: checksum does not match"):
        pull(hz, db_url, HZ)
    assert set(held(hz)) == {first_key(first)}  # batch 1 applied, batch 2 not
    with hz.connect() as conn:
        assert insights.status(conn)["applied_seq"] == 1
    with hub.begin() as conn:  # the batch is gone instead (trimmed too early)
        conn.execute(b.delete().where(b.c.node_id == HZ, b.c.seq == 2))
        conn.execute(
            b.insert().values(
                **{**second, "seq": 3, "checksum": wire.batch_checksum(HZ, 3, second["payload"])}
            )
        )
    with pytest.raises(BatchRefused, match="batch 3 for city-3301 arrived after 1"):
        pull(hz, db_url, HZ)


def test_resend_replaces_a_refused_batch_and_a_city_ahead_of_a_restored_hub(
    hub: Engine, db_url: str, tmp_path: Path
) -> None:
    """A batch a city refuses never blocks it: `insights resend` drops the unapplied batches
    and sends a fresh full set that starts with a reset. A hub whose batches are not the ones
    the city applied (restored from a backup) is refused, and resend --after recovers."""
    downlink.publish(hub, POLICY, REPORT, DOWN)  # seq 1: C1 and C2
    hz = city(tmp_path, HZ, {"C1": "张三", "C2": "李四"})
    pull(hz, db_url, HZ)
    table = insights.insight_table(POLICY)
    stray = {**held(hz)["C1"], "customer_id": "X9"}
    with hz.begin() as conn:  # a stray row the hub never sent
        conn.execute(table.insert().values(**stray))
    b = h.downlink_batches
    submit(hub, HZ, [up(5, "loans", loan("L2", "C2", balance="30000.00", overdue_days=3))])
    apply_pending(hub, POLICY)
    downlink.publish(hub, POLICY, REPORT, DOWN)  # seq 2: C2's new warning
    with hub.begin() as conn:
        conn.execute(b.update().where(b.c.node_id == HZ, b.c.seq == 2).values(checksum="0" * 64))
    for _ in range(2):  # refused, and again: the position stays
        with pytest.raises(BatchRefused, match="checksum does not match"):
            pull(hz, db_url, HZ)
    detail = downlink.forget_sent(hub, HZ)
    assert (detail["dropped_batches"], detail["next_seq"]) == (1, 3)
    downlink.publish(hub, POLICY, REPORT, DOWN)
    got = pull(hz, db_url, HZ)  # seq 3 skips the dropped 2: it begins with a reset
    # Reset, C1, C2 in batches of two: seqs 3 and 4.
    assert (got.batches, got.applied_seq, got.upserts) == (2, 4, 2)
    assert set(held(hz)) == {"C1", "C2"}  # the stray row is gone
    assert held(hz)["C2"]["warning_reasons"] == "overdue_1_30"
    # The hub is restored from a backup: its batch 4 is not the one the city applied.
    with hub.begin() as conn:
        conn.execute(b.update().where(b.c.node_id == HZ, b.c.seq == 4).values(checksum="1" * 64))
    with pytest.raises(BatchRefused, match=r"restored from a backup.*resend city-3301 --after 4"):
        pull(hz, db_url, HZ)
    assert downlink.forget_sent(hub, HZ, after=4)["next_seq"] == 5
    downlink.publish(hub, POLICY, REPORT, DOWN)
    assert pull(hz, db_url, HZ).applied_seq == 6
    assert set(held(hz)) == {"C1", "C2"}
    with hub.connect() as conn:
        resends = query(conn, action=Action.INSIGHTS_RESEND)
        assert verify(conn).ok
    assert len(resends) == 2


def test_a_city_refuses_values_its_table_cannot_hold() -> None:
    """NaN, infinities and a rank past bigint are refused by name, before any write."""
    fields = {
        "golden_id": "1",
        "tier": "key",
        "rank": 1,
        "contribution": "1.00",
        "segment": "",
        "warnings": [],
    }
    for bad, problem in (
        ({"contribution": "NaN"}, "finite amount"),
        ({"contribution": "Infinity"}, "finite amount"),
        ({"rank": 2**70}, "within bigint"),
        ({"segment": "x" * 201}, "too long"),
    ):
        payload = canonical([wire.upsert({"customer_id": "C1"}, {**fields, **bad})])
        batch = wire.DownBatch(HZ, 1, wire.batch_checksum(HZ, 1, payload), payload, 1)
        with pytest.raises(BatchRefused, match=problem):
            wire.parse(batch, HZ, ("customer_id",))


def first_key(batch: dict[str, Any]) -> str:
    (change,) = loads(batch["payload"])
    return str(change["key"]["customer_id"])


def test_the_insight_table_is_read_only_outside_syncd(tmp_path: Path) -> None:
    hz = city(tmp_path, HZ, {})
    path = tmp_path / f"{HZ}.db"
    other = sqlite3.connect(path)  # the CRM's own connection: not syncd's
    try:
        with pytest.raises(sqlite3.OperationalError):
            other.execute(
                "INSERT INTO syncd_province_insight (customer_id, golden_id, tier,"
                " contribution_rank, contribution, segment, warning_count, warning_reasons,"
                " warnings, digest, hub_seq, received_at) VALUES ('C1', '1', 'key', 1, '1', '',"
                " 0, '', '[]', 'x', 1, '2026-01-01')"
            )
        assert other.execute("SELECT count(*) FROM syncd_province_insight").fetchone() == (0,)
    finally:
        other.close()
    hz.dispose()


def reconciled(city_engine: Engine, hub_url: str, node: str) -> insights.InsightReconcile:
    source = HubInbox(hub_url, node)
    try:
        return insights.reconcile(city_engine, source, POLICY)
    finally:
        source.close()


def test_reconcile_finds_insights_altered_missing_or_not_yet_applied(
    hub: Engine, db_url: str, tmp_path: Path
) -> None:
    """The hub's sum (syncd_insight_summary on PostgreSQL, Python on SQLite) meets the city's."""
    downlink.publish(hub, POLICY, REPORT, DOWN)
    hz = city(tmp_path, HZ, {"C1": "张三", "C2": "李四"})
    pull(hz, db_url, HZ)
    found = reconciled(hz, db_url, HZ)
    assert (found.status, found.city_rows, found.hub_rows, found.tampered) == ("in_sync", 2, 2, 0)
    table = insights.insight_table(POLICY)
    with hz.begin() as conn:  # syncd's own connection may write: a careless script did
        conn.execute(table.update().where(table.c.customer_id == "C2").values(tier="key"))
    assert (reconciled(hz, db_url, HZ).status, reconciled(hz, db_url, HZ).tampered) == (
        "drift",
        1,
    )
    with hz.begin() as conn:  # the row gone altogether: counts and sums differ
        conn.execute(table.delete().where(table.c.customer_id == "C2"))
    assert (reconciled(hz, db_url, HZ).status, reconciled(hz, db_url, HZ).city_rows) == ("drift", 1)
    assert downlink.forget_sent(hub, HZ)["forgotten"] == 2  # the operator's `insights resend`
    downlink.publish(hub, POLICY, REPORT, DOWN)
    assert reconciled(hz, db_url, HZ).status == "behind"  # built, not applied yet: not drift
    pull(hz, db_url, HZ)
    assert reconciled(hz, db_url, HZ).status == "in_sync"


# --- property: whatever the cities hold, each receives exactly its own live customers -------

CITIES = (HZ, NB, "city-3303")


@st.composite
def holdings(draw: st.DrawFn) -> dict[str, dict[int, bool]]:
    """Per city: which of 6 identities it holds, and whether it deleted that customer since."""
    out: dict[str, dict[int, bool]] = {}
    for node in CITIES:
        held = draw(st.sets(st.integers(0, 5), max_size=6))
        out[node] = {n: draw(st.booleans()) for n in sorted(held)}
    return out


IDENTITIES = [id_number(f"3301021980011{n}123") for n in range(6)]  # born 1980-01-1n


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holdings())
def test_each_city_receives_exactly_the_live_customers_it_holds(
    held_by: dict[str, dict[int, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/hub.db"
        engine = make_hub(url)
        with engine.begin() as conn:
            reports.install_views(conn, POLICY)
        for node in CITIES:
            add_node(engine, node, node[-4:])
            changes = [
                up(n + 1, "customers", customer(f"{node[-4:]}-{n}", IDENTITIES[n]))
                for n in held_by[node]
            ]
            changes += [
                rm(10 + n, "customers", {"customer_id": f"{node[-4:]}-{n}"})
                for n, deleted in held_by[node].items()
                if deleted
            ]
            if changes:
                submit(engine, node, changes)
        apply_pending(engine, POLICY)
        built = downlink.publish(engine, POLICY, REPORT, DownlinkSection())
        assert built.failed == {}
        seen: dict[int, set[tuple[str, str]]] = {}
        for node in CITIES:
            city_engine = city(Path(tmp), node, {})
            pull(city_engine, url, node)
            expected = {f"{node[-4:]}-{n}" for n, deleted in held_by[node].items() if not deleted}
            got = held(city_engine)
            city_engine.dispose()
            assert set(got) == expected, node
            for cid, row in got.items():
                seen.setdefault(int(cid.rsplit("-", 1)[1]), set()).add(
                    (row["golden_id"], row["digest"])
                )
        # One identity, one golden record: the same insight in every city that holds it.
        assert all(len(insight) == 1 for insight in seen.values()), seen
        engine.dispose()


def test_a_postgresql_city_applies_insights_and_refuses_other_writers(
    tmp_path: Path, pg_url: str
) -> None:
    """On a PostgreSQL city the insight table is written only inside syncd's pull (a statement
    trigger checks the transaction's syncd.insight_writer); any other session is refused."""
    hub_url = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = make_hub(hub_url)
    with engine.begin() as conn:
        reports.install_views(conn, POLICY)
    add_node(engine, HZ, "3301")
    submit(engine, HZ, [up(1, "customers", customer("C1", ZHANG))])
    apply_pending(engine, POLICY)
    downlink.publish(engine, POLICY, REPORT, DOWN)
    pg_city = city(tmp_path, HZ, {"C1": "张三"}, pg_url)
    try:
        assert pull(pg_city, hub_url, HZ).upserts == 1
        assert set(held(pg_city)) == {"C1"}
        for statement in (
            "UPDATE syncd_province_insight SET tier = 'key'",
            "DELETE FROM syncd_province_insight",
            "TRUNCATE syncd_province_insight",
        ):
            with pg_city.connect() as conn, pytest.raises(sa.exc.DBAPIError) as refused:
                conn.exec_driver_sql(statement)
            assert "read-only" in str(refused.value)
            assert getattr(refused.value.orig, "sqlstate", None) == "42501"
        assert set(held(pg_city)) == {"C1"}
        with pg_city.connect() as conn:  # init again: the guard is replaced, not doubled
            insights.install(conn, POLICY)
            conn.commit()
    finally:
        pg_city.dispose()
        engine.dispose()
