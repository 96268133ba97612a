"""Prometheus metrics of a node: one registry per process, served on the configured port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    """The metrics syncd exports; names follow Prometheus conventions (`_total`, `_seconds`)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.backlog_rows = Gauge(
            "syncd_backlog_rows", "Changelog rows not yet acknowledged", registry=r
        )
        self.lag_seconds = Gauge("syncd_lag_seconds", "Age of the oldest unsent change", registry=r)
        self.batches = Counter("syncd_batches_total", "Batches by outcome", ["outcome"], registry=r)
        self.rows = Counter(
            "syncd_rows_total", "Rows by table and outcome", ["table", "outcome"], registry=r
        )
        self.retries = Counter(
            "syncd_retries_total", "Retried transient failures", ["task"], registry=r
        )
        self.errors = Counter(
            "syncd_errors_total", "Failed cycles by task and kind", ["task", "kind"], registry=r
        )
        self.conflicts_open = Gauge("syncd_conflicts_open", "Open manual conflicts", registry=r)
        self.quarantined = Gauge("syncd_quarantined_rows", "Open quarantined rows", registry=r)
        self.push_seconds = Histogram(
            "syncd_push_duration_seconds", "Push cycle duration", registry=r
        )
        self.apply_seconds = Histogram(
            "syncd_apply_duration_seconds", "Apply cycle duration", registry=r
        )

    def serve(self, port: int, address: str) -> None:
        start_http_server(port, addr=address, registry=self.registry)
