"""End-to-end latency: a commit at a PostgreSQL city until it is visible at a PostgreSQL hub.

A city and a hub run as real `syncd run` daemons with default settings (the keys of
config/*.example.toml at their example values: 1 s polling, 0.5 s gap wait, the hub woken by
NOTIFY). Each sample updates one customer's phone at the city with a unique value, commits,
and polls the hub's `src_customers` (every 1 ms) until that value is there. Random pauses
between samples spread them over the daemons' polling phase. Databases are scratch databases
of the shared server, dropped at the end. Prints figures; asserts nothing.

    .venv/bin/python bench/latency.py [--samples 200] [--customers 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import tempfile
import time
from pathlib import Path

import psycopg
from common import (
    PG_ADMIN,
    DataSpec,
    changelog_high,
    clean_exit_on_sigterm,
    fill_city,
    latency_summary,
    measure_latency,
    node_id,
    print_table,
    scratch_databases,
    setup_nodes,
    verdict,
    wait_applied,
)

GOAL_P99_MS = 2000.0


def run(args: argparse.Namespace, hub_url: str, city_url: str, root: Path) -> None:
    city = "3301"
    node = node_id(city)
    spec = DataSpec(customers=args.customers, cities=(city,))
    nodes = setup_nodes(root, hub_url, {node: city_url}, create_schema=True)
    fill_city(city_url, spec, [city])  # after init: captured like any CRM write
    try:
        hub = nodes.daemon("hub")
        city_daemon = nodes.daemon(node)
        wait_applied(hub_url, {node: changelog_high(city_url)}, timeout=600)
        print(f"{args.customers:,} customers at {node} are at the hub; sampling")
        targets = itertools.cycle(
            [spec.customer_id(city, j) for _, j in itertools.islice(spec.update_targets(3), 500)]
        )
        with (
            psycopg.connect(city_url, autocommit=True) as cconn,
            psycopg.connect(hub_url, autocommit=True) as hconn,
        ):
            current: dict[str, str] = {}

            def write(value: str) -> None:
                current["id"] = next(targets)
                cconn.execute(
                    "UPDATE customers SET phone = %s, updated_at = %s WHERE customer_id = %s",
                    (value, dt.datetime.now(dt.UTC).replace(tzinfo=None), current["id"]),
                )

            def visible(value: str) -> bool:
                row = hconn.execute(
                    "SELECT 1 FROM src_customers"
                    " WHERE origin_node = %s AND customer_id = %s AND phone = %s",
                    (node, current["id"], value),
                ).fetchone()
                return row is not None

            started = time.monotonic()
            ms = measure_latency(write, visible, args.samples, gap=(0.0, args.max_gap))
            elapsed = time.monotonic() - started
        hub.sample()
        city_daemon.sample()
    finally:
        nodes.stop_all()
    s = latency_summary(ms)
    print()
    print_table(
        ["commit at city -> visible at hub", "samples", "p50 ms", "p99 ms", "max ms"],
        [
            [
                "syncd (daemons, default settings)",
                s["samples"],
                s["p50_ms"],
                s["p99_ms"],
                s["max_ms"],
            ]
        ],
    )
    print()
    print(
        f"{args.samples} samples in {elapsed:.0f} s; peak RSS hub daemon "
        f"{hub.peak_rss_mb or 0:.0f} MB, city daemon {city_daemon.peak_rss_mb or 0:.0f} MB"
    )
    ok = verdict(s["p99_ms"] < GOAL_P99_MS)
    print(f"goal: p99 < {GOAL_P99_MS / 1000:.0f} s -> {s['p99_ms'] / 1000:.2f} s ({ok})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--customers", type=int, default=2000, help="customers at the city")
    parser.add_argument("--max-gap", type=float, default=0.3, help="max random pause, seconds")
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="superuser URL of the server to use")
    args = parser.parse_args()
    clean_exit_on_sigterm()
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-latency-") as tmp,
        scratch_databases(args.pg_admin, "hub", "city") as dbs,
    ):
        run(args, dbs["hub"], dbs["city"], Path(tmp))


if __name__ == "__main__":
    main()
