"""The console's analysis pages at N customers: background computation, and the pages from cache.

A hub filled as `reports.py` fills it (`fill_hub`), then `ANALYZE`; the real console (`syncd
console`, uvicorn, in a subprocess, `[console] report_workers = 1`) is started and a manager
signs in over HTTP:

1. the first visit of each of the three pages (segments by type and tier, key customers top
   20, risk warnings) one right after the other: each visit's time (it computes nothing, it
   starts the computation and says so), then each computation's seconds as the console
   records them and the wall time until all three are there (the cap runs them one by one);
2. `--requests` visits of each page from cache: p50 / p95 / max milliseconds (client side, one
   keep-alive connection) and the page's size; the export from cache too;
3. the console process's peak RSS (VmHWM) through all of it.

Prints figures; asserts nothing. The goal (issue 15): pages that answer in well under a
second at 1M, and a console that holds one analysis's memory at a time.

    .venv/bin/python bench/console_reports.py [--customers 1000000] [--db pg|sqlite]
        [--requests 20] [--exports 2] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import (
    PG_ADMIN,
    SyncdProcess,
    clean_exit_on_sigterm,
    free_port,
    print_table,
    sa_url,
    scratch_databases,
)
from common import write_config as node_config
from console_overview import PASSWORD, Browser, stats, timed, wait_until_up
from reports import fill_hub

from syncd.app import init_node
from syncd.core import logs
from syncd.core.settings import load_settings
from syncd.hub import console_users, report_cache
from syncd.store.db import create_engine

# page, its URL, the cache key the page computes (its hub function's arguments), table id
PAGES = (
    (
        "segments by type × tier",
        "/analysis/segments?by=type&by=tier",
        report_cache.key_for("segments", {"by": ["type", "tier"]}),
        "segments-table",
    ),
    (
        "key customers top 20",
        "/analysis/key?top=20",
        report_cache.key_for("key", {"top": 10_000}),
        "key-table",
    ),
    (
        "risk warnings (all)",
        "/analysis/warnings",
        report_cache.key_for("warnings", {"severity": 1, "reason": []}),
        "warnings-table",
    ),
)


def wait_for(
    engine: sa.Engine, keys: list[str], console: SyncdProcess, timeout: float = 3600
) -> dict[str, report_cache.State]:
    """Poll the cache rows until each key's computation has finished (a result or an error),
    sampling the console's peak RSS meanwhile."""
    deadline = time.monotonic() + timeout
    done: dict[str, report_cache.State] = {}
    while time.monotonic() < deadline:
        console.sample()
        with engine.connect() as conn:
            for key in keys:
                if key in done:
                    continue
                state = report_cache.read(conn, key)
                if not state.pending and (state.computed_at or state.error):
                    done[key] = state
        if len(done) == len(keys):
            return done
        time.sleep(0.2)
    raise TimeoutError("the analyses did not finish")


def run(args: argparse.Namespace, urls: dict[str, str], tmp: Path) -> None:
    url = urls.get("hub") or f"sqlite:///{tmp / 'hub.db'}"
    config = node_config(tmp / "hub.toml", "hub-33", "hub", url)
    port = free_port()
    with config.open("a", encoding="utf-8") as fh:
        fh.write(
            f"[console]\nport = {port}\nsecure_cookies = false\n"
            "report_max_age_seconds = 86400\nreport_workers = 1\n"
        )
    hub = load_settings(config)
    init_node(hub)
    fill_s, counts = timed(lambda: fill_hub(sa_url(url), args.customers))
    print(f"hub {args.db}: {args.customers} golden customers, {sum(counts.values())} rows, "
          f"filled in {fill_s:.1f} s", flush=True)  # fmt: skip
    engine = create_engine(sa_url(url))
    if args.db == "pg":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            seconds, _ = timed(lambda: conn.exec_driver_sql("ANALYZE"))
        print(f"ANALYZE: {seconds:.1f} s", flush=True)
    console_users.add_user(engine, "manager", ["manager"], PASSWORD)

    console = SyncdProcess(config, ("console",), tmp / "console.log").start()
    figures: list[tuple[Any, ...]] = []
    try:
        wait_until_up(port, console)
        browser = Browser(port)
        browser.sign_in("manager")
        console.sample()
        idle_rss = console.peak_rss_mb or 0
        # 1. First visits: nothing cached, each starts its computation (queued behind the cap).
        started = time.monotonic()
        for name, path, _key, _table in PAGES:
            seconds, body = browser.page(path)
            queued = b'id="analysis-queued"' in body
            assert b'id="analysis-computing"' in body, f"{name}: no computation started"
            print(f"first visit {name}: {seconds * 1000:.1f} ms"
                  f"{' (queued)' if queued else ''}", flush=True)  # fmt: skip
        states = wait_for(engine, [key for _n, _p, key, _t in PAGES], console)
        wall = time.monotonic() - started
        for name, _path, key, _table in PAGES:
            state = states[key]
            if state.error:
                raise RuntimeError(f"{name} failed: {state.error}")
            print(f"computed {name}: {state.seconds:.1f} s, {len(state.result)} rows", flush=True)
        print(f"all three there {wall:.1f} s after the first visit", flush=True)

        # 2. From cache (a new connection: the server closed the idle one meanwhile).
        browser.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for name, path, _key, table in PAGES:
            for _ in range(2):
                browser.page(path)  # warm-up
            samples, size = [], 0
            for _ in range(args.requests):
                seconds, body = browser.page(path)
                assert f'id="{table}"'.encode() in body, f"{name}: no table"
                samples.append(seconds)
                size = len(body)
            figures.append(stats(name, samples, size))
            console.sample()
            sep = "&" if "?" in path else "?"
            xlsx = []
            for _ in range(args.exports):
                seconds, body = browser.page(path + sep + "format=xlsx")
                xlsx.append(seconds)
            figures.append(stats(f"{name}, export .xlsx", xlsx, len(body)))
            console.sample()
    finally:
        console.stop()
        engine.dispose()
    print_table(["page (from cache)", "requests", "p50 ms", "p95 ms", "max ms", "bytes"], figures)
    print(f"console process RSS after sign-in: {idle_rss:.0f} MB; "
          f"peak RSS: {console.peak_rss_mb or 0:.0f} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("sqlite", "pg"), default="pg")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--exports", type=int, default=2, help="exports per page (.xlsx)")
    parser.add_argument("--quick", action="store_true", help="20,000 customers (smoke)")
    parser.add_argument("--pg-admin", default=PG_ADMIN)
    args = parser.parse_args()
    if args.quick:
        args.customers = min(args.customers, 20_000)
    clean_exit_on_sigterm()
    logs.configure("json", "warning", "bench")
    labels = ["hub"] if args.db == "pg" else []
    with tempfile.TemporaryDirectory() as tmp, scratch_databases(args.pg_admin, *labels) as urls:
        run(args, urls, Path(tmp))


if __name__ == "__main__":
    main()
