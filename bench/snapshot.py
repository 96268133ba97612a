"""Initial load: `syncd snapshot` of a filled PostgreSQL city into a PostgreSQL hub, drained.

The city CRM is filled by COPY before `syncd init` (so no row is captured: they predate
capture, as at a real go-live), then the city and hub daemons start (`syncd run`, default
settings) and `syncd snapshot` runs; the clock stops when the hub has applied everything the
snapshot put in the changelog. Reports rows/s over the rows the hub receives (customers minus
prospects, plus every child) and the peak RSS of each syncd process, sampled from
/proc/<pid>/status VmHWM while it runs.
Scratch databases of the shared server, dropped at the end. Prints figures; asserts nothing.

    .venv/bin/python bench/snapshot.py [--customers 1000000] [--chunk 5000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import (
    PG_ADMIN,
    PUBLIC_TABLES,
    DataSpec,
    Stopwatch,
    changelog_high,
    clean_exit_on_sigterm,
    count_rows,
    fill_city,
    node_id,
    print_table,
    rate,
    scratch_databases,
    setup_nodes,
    verdict,
    wait_applied,
)

GOAL_ROWS_S = 20_000
GOAL_RSS_MB = 300


def run(args: argparse.Namespace, hub_url: str, city_url: str, root: Path) -> None:
    city = "3301"
    node = node_id(city)
    spec = DataSpec(customers=args.customers, cities=(city,), prospects=args.prospects)
    fill = Stopwatch()
    with fill:
        filled = fill_city(city_url, spec, [city])
    print(
        f"city filled by COPY in {fill.seconds:.1f} s: "
        + ", ".join(f"{t} {n:,}" for t, n in filled.items())
    )
    nodes = setup_nodes(root, hub_url, {node: city_url})  # init after the fill
    expected = spec.counts(public=True)
    total = sum(expected.values())
    try:
        hub = nodes.daemon("hub")
        city_daemon = nodes.daemon(node)
        started = time.monotonic()
        snap = nodes.command(node, "snapshot", "--chunk", str(args.chunk), "--json")
        code = snap.wait()
        snapped = time.monotonic()
        if code != 0:
            raise RuntimeError(f"syncd snapshot exited {code}; see {snap.log}")
        target = changelog_high(city_url)

        def tick() -> None:
            hub.sample()
            city_daemon.sample()

        done = wait_applied(hub_url, {node: target}, timeout=args.timeout, tick=tick)
    finally:
        nodes.stop_all()
    hub_names = {"customers": "src_customers"}
    got = count_rows(hub_url, [hub_names.get(t, t) for t in PUBLIC_TABLES], "NOT _deleted")
    seconds = done - started
    print()
    print_table(
        ["table", "at the city", "expected at hub", "at the hub"],
        [[t, filled.get(t, 0), expected[t], got[hub_names.get(t, t)]] for t in PUBLIC_TABLES],
    )
    print()
    print_table(
        ["phase", "rows", "seconds", "rows/s"],
        [
            [
                "snapshot (into the changelog)",
                total,
                snapped - started,
                rate(total, snapped - started),
            ],
            ["drain after the snapshot ended", None, done - snapped, None],
            ["snapshot + drain (city -> hub)", total, seconds, rate(total, seconds)],
        ],
    )
    print()
    print_table(
        ["process", "peak RSS MB"],
        [
            ["syncd snapshot", snap.peak_rss_mb],
            ["syncd run (city)", city_daemon.peak_rss_mb],
            ["syncd run (hub)", hub.peak_rss_mb],
        ],
    )
    peak = max(p.peak_rss_mb or 0.0 for p in (snap, city_daemon, hub))
    r = rate(total, seconds)
    print()
    print(
        f"goal: >= {GOAL_ROWS_S:,} rows/s -> {r:,.0f} ({verdict(r >= GOAL_ROWS_S)}); "
        f"< {GOAL_RSS_MB} MB per process -> {peak:.0f} MB ({verdict(peak < GOAL_RSS_MB)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers at the city")
    parser.add_argument("--prospects", type=float, default=0.02, help="share of prospects")
    parser.add_argument("--chunk", type=int, default=5000, help="snapshot rows per transaction")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds to wait for the hub")
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="superuser URL of the server to use")
    args = parser.parse_args()
    clean_exit_on_sigterm()
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-snapshot-") as tmp,
        scratch_databases(args.pg_admin, "hub", "city") as dbs,
    ):
        run(args, dbs["hub"], dbs["city"], Path(tmp))


if __name__ == "__main__":
    main()
