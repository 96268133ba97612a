"""Daemons as real processes: kill -9 at random moments, a hub outage, SIGTERM, one per node."""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.store.db import create_engine
from tests.e2e.cluster import Cluster, wait_for
from tests.e2e.proxy import Proxy
from tests.helpers import run_syncd
from tests.integration.test_node_ops import free_port

SEED = int(os.environ.get("SYNCD_E2E_SEED", "20261126"))


@pytest.mark.slow
def test_kill9_anywhere_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, pg_url_factory: Any
) -> None:
    """Writers never stop; daemons die by SIGKILL at random moments; then a drain must equal."""
    rng = random.Random(SEED)
    cluster = Cluster(
        tmp_path,
        pg_url_factory(),
        {
            "city-3301": pg_url_factory(),  # PostgreSQL city: gap safety
            "city-3302": f"sqlite:///{tmp_path / 'city-3302.db'}",
        },
        sync={"interval_seconds": 0.1, "batch_rows": 7},
        # Insights go down while daemons die too: small batches, built every half second.
        extra="[downlink]\npublish_interval_seconds = 0.5\nbatch_rows = 5\n",
    )
    cluster.setup()
    writers = [cluster.writer(node, SEED + i, 12.0) for i, node in enumerate(cluster.city_urls)]
    writers.append(cluster.writer("city-3301", SEED + 99, 12.0, "D"))  # concurrent PG writers
    daemons = {n: cluster.daemon(n) for n in ["hub", *cluster.city_urls]}
    try:
        deadline = time.monotonic() + 12.0
        kills = 0
        while time.monotonic() < deadline:
            for d in daemons.values():
                if not d.running:
                    d.start()
            time.sleep(rng.uniform(0.2, 1.2))
            victim = rng.choice(list(daemons.values()))
            victim.kill9()
            kills += 1
        for w in writers:
            assert w.wait(60) == 0
    finally:
        for d in daemons.values():
            d.kill9()
        for w in writers:
            if w.poll() is None:
                w.kill()
    assert kills >= 5
    cluster.drain()
    expected = cluster.expected_sources()
    got = cluster.hub_sources()
    assert len(expected) > 20
    missing = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    assert not missing, f"lost at the hub: {sorted(missing)[:5]} (seed {SEED})"
    assert not extra, f"at the hub but not in any city: {sorted(extra)[:5]} (seed {SEED})"
    diff = [k for k in expected if expected[k] != got[k]]
    assert not diff, f"differ: {diff[:3]} (seed {SEED})"
    # The downward path, killed as often: each city holds its own customers' insights only,
    # each batch applied once, and a new build finds nothing left to send.
    assert cluster.check_downlink() > 0
    published = run_syncd(cluster.hub_conf, "insights", "publish", "--json", check=True)
    assert json.loads(published.stdout)["batches"] == {}
    verify = run_syncd(cluster.hub_conf, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_hub_outage_backlog_grows_then_drains(tmp_path: Path, pg_url_factory: Any) -> None:
    hub_url = pg_url_factory()
    proxy = Proxy(5432)
    proxy.start()
    cluster = Cluster(
        tmp_path,
        hub_url,
        {"city-3301": f"sqlite:///{tmp_path / 'c1.db'}"},
        sync={"interval_seconds": 0.2, "retry_max_wait_seconds": 1.0},
    )
    cluster.setup()
    # The city reaches the hub only through the proxy, with its own credentials.
    city_conf = cluster.city_confs["city-3301"]
    creds = cluster.city_hub_urls["city-3301"]
    city_conf.write_text(
        city_conf.read_text().replace(
            creds, creds.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        )
    )
    city, hub = cluster.daemon("city-3301"), cluster.daemon("hub")
    hub.start()
    city.start()
    try:
        writer = cluster.writer("city-3301", SEED, 2.0)
        assert writer.wait(60) == 0
        proxy.cut()  # the network to the hub goes away
        writer = cluster.writer("city-3301", SEED + 1, 3.0)
        assert writer.wait(60) == 0

        def status() -> tuple[int, dict[str, Any]]:
            out = run_syncd(city_conf, "status", "--json")
            return out.returncode, json.loads(out.stdout)

        def backlog() -> int:
            return int(status()[1]["backlog_rows"])

        wait_for(lambda: backlog() > 0, 20, "a backlog during the outage")
        time.sleep(3)  # several retry rounds: the daemon must stay up and keep retrying
        assert city.running
        code, during = status()  # the outage shows, and status says the node is unhealthy
        assert code == 1
        assert during["healthy"] is False
        assert "Connection refused" in during["last_error"]
        proxy.restore()
        wait_for(lambda: backlog() == 0, 60, "the backlog to drain after the outage")
        wait_for(lambda: status()[0] == 0, 20, "status to clear after the outage")
        assert status()[1]["last_error"] is None
        assert city.stop() == 0
        assert hub.stop() == 0
        cluster.drain()
        assert cluster.expected_sources() == cluster.hub_sources()
    finally:
        city.kill9()
        hub.kill9()
        proxy.cut()
    log = (tmp_path / "city-3301.log").read_text()
    retries = [json.loads(line) for line in log.splitlines() if '"retrying"' in line]
    assert retries, "retries must be logged"
    assert all("attempt" in r and "next_wait_s" in r for r in retries)
    assert max(r["next_wait_s"] for r in retries) <= 1.0 + 1.0  # capped (max + jitter)
    assert "cycle_crashed" not in log


def test_sigterm_stops_cleanly_and_one_daemon_per_node(tmp_path: Path) -> None:
    cluster = Cluster(
        tmp_path,
        f"sqlite:///{tmp_path / 'hub.db'}",
        {"city-3301": f"sqlite:///{tmp_path / 'c1.db'}"},
    )
    cluster.setup()
    first = cluster.daemon("city-3301")
    first.start()
    try:
        wait_for(lambda: "daemon_started" in first.log.read_text(), 20, "the daemon to start")
        second = run_syncd(cluster.city_confs["city-3301"], "run", timeout=30)
        assert second.returncode == 1
        assert "is running for node city-3301" in second.stderr
        assert first.stop() == 0
    finally:
        first.kill9()
    assert "daemon_stopped" in first.log.read_text()
    # A kill -9 leaves no stale lock behind: the next daemon starts.
    again = cluster.daemon("city-3301")
    again.start()
    try:
        wait_for(lambda: again.log.read_text().count("daemon_started") >= 2, 20, "restart")
        again.kill9()
        third = cluster.daemon("city-3301")
        third.start()
        wait_for(
            lambda: third.log.read_text().count("daemon_started") >= 3, 20, "start after kill -9"
        )
        assert third.stop() == 0
    finally:
        again.kill9()


def test_metrics_endpoint_serves_prometheus_names(tmp_path: Path) -> None:
    cluster = Cluster(
        tmp_path,
        f"sqlite:///{tmp_path / 'hub.db'}",
        {"city-3301": f"sqlite:///{tmp_path / 'c1.db'}"},
    )
    cluster.setup()
    port = free_port()
    conf = cluster.city_confs["city-3301"]
    conf.write_text(conf.read_text() + f"\n[metrics]\nport = {port}\n")
    city = cluster.daemon("city-3301")
    city.start()
    try:
        wait_for(lambda: "metrics_listening" in city.log.read_text(), 20, "the metrics port")
        writer = cluster.writer("city-3301", SEED, 1.0)
        assert writer.wait(60) == 0

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        wait_for(
            lambda: 'syncd_batches_total{outcome="submitted"}' in scrape(),
            20,
            "a submitted batch in the metrics",
        )
        text = scrape()
        for name in (
            "syncd_backlog_rows",
            "syncd_lag_seconds",
            "syncd_rows_total",
            "syncd_retries_total",
            "syncd_push_duration_seconds_bucket",
        ):
            assert name in text
        assert city.stop() == 0
    finally:
        city.kill9()


def test_pg_hub_is_woken_by_notify_not_by_polling(tmp_path: Path, pg_url_factory: Any) -> None:
    """The hub polls once a minute here; a batch must still be applied within seconds."""
    cluster = Cluster(
        tmp_path,
        pg_url_factory(),
        {"city-3301": f"sqlite:///{tmp_path / 'c1.db'}"},
        sync={"interval_seconds": 0.2},
    )
    cluster.setup()
    conf = cluster.hub_conf
    conf.write_text(
        conf.read_text()
        .replace("interval_seconds = 0.2", "interval_seconds = 60.0")
        .replace('format = "json"', 'format = "json"\nlevel = "debug"')
    )
    hub, city = cluster.daemon("hub"), cluster.daemon("city-3301")
    hub.start()
    try:
        wait_for(lambda: "daemon_started" in hub.log.read_text(), 20, "the hub")
        time.sleep(1.0)  # past the hub's first (immediate) cycle
        city.start()
        writer = cluster.writer("city-3301", SEED, 0.5)
        assert writer.wait(60) == 0

        last: list[str] = []

        def applied() -> bool:
            out = run_syncd(conf, "status", "--json", check=True)
            last[:] = [out.stdout]
            node = json.loads(out.stdout)["nodes"][0]
            return bool(node["applied_seq"] > 0 and node["pending_batches"] == 0)

        started = time.monotonic()
        try:
            wait_for(applied, 30, "the hub to apply without polling")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last}") from None
        assert time.monotonic() - started < 30  # well before the next poll at 60 s
        assert city.stop() == 0
        assert hub.stop() == 0
    finally:
        city.kill9()
        hub.kill9()


def test_pg_city_is_woken_by_its_own_capture(tmp_path: Path, pg_url_factory: Any) -> None:
    """City and hub poll once a minute here; committed writes still reach the hub in seconds."""
    cluster = Cluster(
        tmp_path,
        pg_url_factory(),
        {"city-3301": pg_url_factory()},
        sync={"interval_seconds": 60.0},
    )
    cluster.setup()
    hub, city = cluster.daemon("hub"), cluster.daemon("city-3301")
    hub.start()
    city.start()
    try:
        for daemon in (hub, city):
            wait_for(lambda d=daemon: "daemon_started" in d.log.read_text(), 20, daemon.name)
        time.sleep(1.0)  # past both daemons' first (immediate) cycle
        writer = cluster.writer("city-3301", SEED, 0.5)
        assert writer.wait(60) == 0
        engine = create_engine(cluster.city_urls["city-3301"])
        with engine.connect() as conn:
            written = conn.execute(
                sa.text(
                    "SELECT pg_sequence_last_value("
                    "pg_get_serial_sequence('syncd_changelog', 'seq')::regclass)"
                )
            ).scalar_one()
        engine.dispose()
        assert written > 0

        def applied() -> bool:
            out = run_syncd(cluster.hub_conf, "status", "--json", check=True)
            return bool(json.loads(out.stdout)["nodes"][0]["applied_seq"] >= written)

        started = time.monotonic()
        wait_for(applied, 30, "the city's writes to reach the hub without polling")
        assert time.monotonic() - started < 30  # well before either daemon's next poll at 60 s
        assert city.stop() == 0
        assert hub.stop() == 0
    finally:
        city.kill9()
        hub.kill9()
