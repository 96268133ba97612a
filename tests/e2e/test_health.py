"""What ops see when things fail, with real daemons (issue 10, items 6 and 7).

Every failure of a cycle shows in `status` (which exits 1) until a cycle succeeds; gauges are
live while the cycles fail; /healthz and /readyz answer; `sync --once` respects a running
daemon; SIGTERM ends a daemon within seconds whatever its job waits on.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.cluster import Cluster, wait_for
from tests.helpers import run_syncd
from tests.integration.test_node_ops import free_port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def _gauge(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in the metrics"
    return float(found.group(1))


def _point_at(conf: Path, hub_url: str) -> None:
    text = conf.read_text()
    conf.write_text(re.sub(r'(\[hub\]\nurl = )"[^"]*"', rf'\1"{hub_url}"', text))


def test_an_unreachable_hub_shows_in_status_metrics_and_readyz(tmp_path: Path) -> None:
    cluster = Cluster(
        tmp_path,
        f"sqlite:///{tmp_path / 'hub.db'}",
        {"city-3301": f"sqlite:///{tmp_path / 'c1.db'}"},
    )
    cluster.setup()
    conf = cluster.city_confs["city-3301"]
    good_hub = cluster.city_hub_urls["city-3301"]
    _point_at(conf, f"postgresql+psycopg://syncd:secret-pw@127.0.0.1:{free_port()}/hub")
    writer = cluster.writer("city-3301", 7, 1.0)
    assert writer.wait(60) == 0

    once = run_syncd(conf, "sync", "--once")
    assert once.returncode == 1
    st = run_syncd(conf, "status", "--json")
    assert st.returncode == 1, st.stdout + st.stderr
    doc = json.loads(st.stdout)
    assert doc["healthy"] is False
    assert doc["last_error"]
    assert doc["last_error_kind"] == "TransientError"
    assert doc["backlog_rows"] > 0
    assert "secret-pw" not in st.stdout + st.stderr

    port = free_port()
    conf.write_text(conf.read_text() + f"\n[metrics]\nport = {port}\n")
    city = cluster.daemon("city-3301")
    city.start()
    try:
        wait_for(lambda: "metrics_listening" in city.log.read_text(), 20, "the metrics port")
        wait_for(lambda: "retrying" in city.log.read_text(), 20, "a failed push")
        code, text = _get(port, "/metrics")
        assert code == 200
        # Live: the backlog is there although no cycle has succeeded in this process.
        assert _gauge(text, "syncd_backlog_rows") == doc["backlog_rows"]
        assert _gauge(text, "syncd_lag_seconds") > 0
        assert _gauge(text, "syncd_cycle_failing") == 1
        assert _gauge(text, "syncd_healthy") == 0
        assert _gauge(text, "syncd_database_up") == 1
        assert _get(port, "/healthz")[0] == 200
        code, body = _get(port, "/readyz")
        assert code == 503
        assert "last cycle failed" in json.loads(body)["reason"]
        assert _get(port, "/anything-else")[0] == 404
        assert "secret-pw" not in city.log.read_text()
        assert city.stop() == 0
    finally:
        city.kill9()

    _point_at(conf, good_hub)
    run_syncd(conf, "sync", "--once", check=True)
    st = run_syncd(conf, "status", "--json")
    assert st.returncode == 0, st.stdout + st.stderr
    doc = json.loads(st.stdout)
    assert (doc["healthy"], doc["last_error"], doc["backlog_rows"]) == (True, None, 0)


def test_sync_once_refuses_beside_a_running_daemon(tmp_path: Path) -> None:
    cluster = Cluster(
        tmp_path,
        f"sqlite:///{tmp_path / 'hub.db'}",
        {"city-3301": f"sqlite:///{tmp_path / 'c1.db'}"},
    )
    cluster.setup()
    hub = cluster.daemon("hub")
    hub.start()
    try:
        wait_for(lambda: "daemon_started" in hub.log.read_text(), 20, "the hub daemon")
        once = run_syncd(cluster.hub_conf, "sync", "--once")
        assert once.returncode == 1
        assert "is running for node hub-33" in once.stderr
        assert hub.stop() == 0
    finally:
        hub.kill9()
    run_syncd(cluster.hub_conf, "sync", "--once", check=True)


@pytest.mark.slow
def test_sigterm_ends_a_daemon_whose_job_waits_on_a_lock(
    tmp_path: Path, pg_url_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's apply of a batch waits on a lock held elsewhere; SIGTERM ends the daemon
    within seconds, the batch rolls back whole, and the city is not marked failing for it."""
    hub_url = pg_url_factory()
    cluster = Cluster(tmp_path, hub_url, {"city-3301": f"sqlite:///{tmp_path / 'c1.db'}"})
    cluster.setup()
    writer = cluster.writer("city-3301", 11, 0.5)
    assert writer.wait(60) == 0
    run_syncd(cluster.city_confs["city-3301"], "sync", "--once", check=True)  # batches wait
    # Long enough that only cancellation can end the wait within the test's bound.
    monkeypatch.setenv("SYNCD_DATABASE__SESSION_LOCK_TIMEOUT_MS", "120000")
    admin = hub_url.replace("postgresql+psycopg://", "postgresql://", 1)
    hub = cluster.daemon("hub")
    with psycopg.connect(admin) as holder:
        holder.execute("LOCK TABLE src_customers IN ACCESS EXCLUSIVE MODE")
        hub.start()
        try:

            def blocked() -> bool:
                with psycopg.connect(admin, autocommit=True) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'syncd'"
                        " AND wait_event_type = 'Lock' AND datname = current_database()"
                    ).fetchone()
                return bool(row and row[0])

            wait_for(blocked, 30, "the hub's apply to wait on the lock")
            started = time.monotonic()
            assert hub.stop(timeout=20) == 0
            took = time.monotonic() - started
        finally:
            hub.kill9()
        holder.rollback()
    assert took < 15, f"SIGTERM took {took:.1f} s"
    assert "cancelling_job" in (tmp_path / "hub.log").read_text()
    status = json.loads(run_syncd(cluster.hub_conf, "status", "--json").stdout)
    assert [n["failures"] for n in status["nodes"]] == [0], "a cancelled batch is no failure"
    assert status["pending_batches"] > 0  # rolled back whole: applied later
    cluster.drain()
    assert cluster.expected_sources() == cluster.hub_sources()


def test_hub_read_commands_work_while_the_policy_file_is_broken(tmp_path: Path) -> None:
    """An auditor verifies the chain, and ops read quarantine and nodes, whatever the policy
    file holds; the commands that need the policy say which file is wrong."""
    cluster = Cluster(tmp_path, f"sqlite:///{tmp_path / 'hub.db'}", {})
    cluster.setup()
    broken = {"SYNCD_POLICY__PATH": str(tmp_path / "no-such-policy.yaml")}
    for args in (("audit", "verify"), ("quarantine", "list"), ("node", "list"), ("status",)):
        done = run_syncd(cluster.hub_conf, *args, env=broken)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    needs = run_syncd(cluster.hub_conf, "report", "customer", "--id-number", "1", env=broken)
    assert needs.returncode == 2
    assert "no-such-policy.yaml" in needs.stderr
