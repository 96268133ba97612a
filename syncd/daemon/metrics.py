"""Prometheus metrics of a node and its HTTP endpoint: /metrics, /healthz and /readyz.

Counters are kept in the process. Gauges of state — backlog, lag, per-node pending batches,
quarantine, failures — are read from the database when Prometheus scrapes (`StatusCollector`),
so they are live even while every cycle fails; a database that cannot be read shows as
`syncd_database_up 0`, never as a backlog of 0.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from syncd.city.push import PushResult
from syncd.city.status import CityStatus
from syncd.hub.apply import ApplySummary
from syncd.hub.rows import RowOutcome
from syncd.hub.status import HubStatus

# (ready, why): whether the node can do its work now, and what stops it if not.
Readiness = Callable[[], tuple[bool, str]]


class Metrics:
    """The metrics syncd exports; names follow Prometheus conventions (`_total`, `_seconds`)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.batches = Counter("syncd_batches_total", "Batches by outcome", ["outcome"], registry=r)
        self.rows = Counter(
            "syncd_rows_total", "Rows by table and outcome", ["table", "outcome"], registry=r
        )
        self.node_batches = Counter(
            "syncd_node_batches_total",
            "Hub: batches of each city node (origin) by outcome (applied, failed)",
            ["origin", "outcome"],
            registry=r,
        )
        self.node_rows = Counter(
            "syncd_node_rows_total",
            "Hub: rows of each city node (origin) by outcome (applied, stale, quarantined, ...)",
            ["origin", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "syncd_retries_total", "Retried transient failures", ["task"], registry=r
        )
        self.errors = Counter(
            "syncd_errors_total", "Failed cycles by task and kind", ["task", "kind"], registry=r
        )
        self.cycle_failing = Gauge(
            "syncd_cycle_failing", "1 while this node's last cycle failed", registry=r
        )
        self.last_success = Gauge(
            "syncd_last_success_timestamp_seconds",
            "Unix time of this node's last successful cycle",
            registry=r,
        )
        self.push_seconds = Histogram(
            "syncd_push_duration_seconds", "Push cycle duration", registry=r
        )
        self.apply_seconds = Histogram(
            "syncd_apply_duration_seconds", "Apply cycle duration", registry=r
        )
        self._server: WSGIServer | None = None

    # --- app.Observer: what each cycle of the node did -------------------------------------

    def pushed(self, result: PushResult, seconds: float) -> None:
        self.push_seconds.observe(seconds)
        self.batches.labels("submitted").inc(result.batches - result.duplicates)
        self.batches.labels("duplicate").inc(result.duplicates)
        for table, n in result.by_table.items():
            self.rows.labels(table, "sent").inc(n)

    def applied(self, part: ApplySummary) -> None:
        self.batches.labels("applied").inc(part.batches)
        for node, counts in part.by_node.items():
            self.node_batches.labels(node, "applied").inc(counts.get("batches", 0))
            for outcome in RowOutcome:
                self.rows.labels("*", outcome).inc(counts.get(outcome, 0))
                self.node_rows.labels(node, outcome).inc(counts.get(outcome, 0))
        for node in part.failed:
            self.node_batches.labels(node, "failed").inc()

    def apply_finished(self, seconds: float) -> None:
        self.apply_seconds.observe(seconds)

    def cycle_failed(self) -> None:
        self.cycle_failing.set(1)

    def cycle_succeeded(self) -> None:
        self.cycle_failing.set(0)
        self.last_success.set_to_current_time()

    # --- exposition ---------------------------------------------------------------------------

    def watch(self, read: Callable[[], CityStatus | HubStatus]) -> None:
        """Export the node's status as gauges, read at each scrape."""
        self.registry.register(StatusCollector(read))

    def serve(self, port: int, address: str, ready: Readiness) -> int:
        """Serve /metrics, /healthz and /readyz on a daemon thread; returns the bound port."""
        server = make_server(
            address,
            port,
            _app(make_wsgi_app(self.registry), ready),
            server_class=_Server,
            handler_class=_QuietHandler,
        )
        self._server = server
        threading.Thread(target=server.serve_forever, name="syncd-http", daemon=True).start()
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not worth a log line each."""


def _app(metrics: Any, ready: Readiness) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        if path == "/healthz":
            return _reply(start_response, "200 OK", {"status": "alive"})
        if path == "/readyz":
            ok, why = ready()
            status = "200 OK" if ok else "503 Service Unavailable"
            return _reply(start_response, status, {"ready": ok, "reason": why})
        return _reply(start_response, "404 Not Found", {"error": f"no such path: {path[:64]}"})

    return app


def _reply(start_response: Any, status: str, doc: dict[str, Any]) -> list[bytes]:
    body = (json.dumps(doc, ensure_ascii=False) + "\n").encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


# The gauges `StatusCollector` reads at each scrape: name → help text.
NODE_GAUGES = {
    "syncd_database_up": "1 if the node's database answered the scrape",
    "syncd_healthy": "1 if `syncd status` finds no failure",
}
CITY_GAUGES = {
    "syncd_backlog_rows": "Changelog rows not yet acknowledged",
    "syncd_lag_seconds": "Age of the oldest unsent change",
    "syncd_downlink_behind_batches": "Insight batches the hub had built for this city, not "
    "applied here yet (as of the last pull)",
}
HUB_GAUGES = {
    "syncd_conflicts_open": "Open manual conflicts",
    "syncd_quarantined_rows": "Open quarantined rows",
}
# Hub, one series per city node, labelled `origin` (as the hub's origin_node column): the
# scrape target's own labels already use `node` for the hub itself.
PER_NODE_GAUGES = {
    "syncd_node_pending_batches": "Batches received and not yet applied",
    "syncd_node_lag_seconds": "Age of the node's oldest pending batch",
    "syncd_node_quarantined_rows": "Open quarantined rows of the node",
    "syncd_node_failing": "1 while the node's batches fail to apply",
    "syncd_node_failures": "Failed apply attempts in a row",
    "syncd_node_silent": "1 if the node has not been heard from in time",
    "syncd_node_refused_rows": "Rows of the node the hub refused (a local table, a column "
    "that may not leave the city), since it was registered",
    "syncd_node_policy_mismatch": "1 while the hub refuses the node's batches because its "
    "policy differs from the hub's",
    "syncd_node_downlink_behind_batches": "Insight batches built for the node that it has "
    "not acknowledged",
    "syncd_node_downlink_lag_seconds": "Age of the oldest insight batch the node has not "
    "acknowledged",
}
STATUS_GAUGES = {**NODE_GAUGES, **CITY_GAUGES, **HUB_GAUGES, **PER_NODE_GAUGES}


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, STATUS_GAUGES[name], value)


class StatusCollector(Collector):
    """Gauges from the node's status, read from its database at each scrape."""

    def __init__(self, read: Callable[[], CityStatus | HubStatus]) -> None:
        self._read = read

    def describe(self) -> Iterable[Any]:
        # Nothing up front: registering must not query the database.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            status = self._read()
        except Exception:  # the database is unreachable: say so, and nothing stale
            yield _gauge("syncd_database_up", 0)
            return
        yield _gauge("syncd_database_up", 1)
        yield _gauge("syncd_healthy", 1 if status.healthy else 0)
        if isinstance(status, CityStatus):
            yield _gauge("syncd_backlog_rows", status.backlog_rows)
            yield _gauge("syncd_lag_seconds", status.lag_seconds or 0.0)
            yield _gauge("syncd_downlink_behind_batches", status.downlink_behind or 0)
        else:
            yield _gauge("syncd_conflicts_open", status.open_conflicts)
            yield _gauge("syncd_quarantined_rows", status.quarantined)
            yield from _per_node(status)


def _per_node(st: HubStatus) -> Iterator[GaugeMetricFamily]:
    made = {
        name: GaugeMetricFamily(name, doc, labels=["origin"])
        for name, doc in PER_NODE_GAUGES.items()
    }
    for n in st.nodes:
        for name, value in (
            ("syncd_node_pending_batches", n.pending_batches),
            ("syncd_node_lag_seconds", n.lag_seconds or 0.0),
            ("syncd_node_quarantined_rows", n.quarantined),
            ("syncd_node_failing", 1 if n.failing else 0),
            ("syncd_node_failures", n.failures),
            ("syncd_node_silent", 1 if n.silent else 0),
            ("syncd_node_refused_rows", n.refused_rows),
            ("syncd_node_policy_mismatch", 1 if n.policy_problem else 0),
            ("syncd_node_downlink_behind_batches", n.down_behind),
            ("syncd_node_downlink_lag_seconds", n.down_lag_seconds or 0.0),
        ):
            made[name].add_metric([n.node_id], value)
    yield from made.values()
