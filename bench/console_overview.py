"""The console's province overview at N customers: the background refresh, and the page over HTTP.

A hub filled as `reports.py` fills it (its `fill_hub`: N golden customers of three cities and
their children, set-based), then `ANALYZE`, then `HISTORY_DAYS` days of daily snapshot rows (a
few per day, as `report snapshot` writes them; made from the city summary, not by taking 92
snapshots of a minute each) so the trend and the lines have their full length. Then the real
console (`syncd console`, uvicorn, in a subprocess) is started and a manager signs in over HTTP:

1. the first visit, with nothing cached: its time, and the background refresh it starts (the
   seconds the console records for it, and the wall time until the figures are there);
2. `--requests` visits of the page with fresh figures: p50 / p95 / max milliseconds (client
   side, one keep-alive connection) and the page's size;
3. the same while a refresh runs (the figures made stale on purpose), as a manager sees it
   every `[console] overview_max_age_seconds`.

Prints figures; asserts nothing. The goal (issue 15): the page under 300 ms at 1M customers.

    .venv/bin/python bench/console_overview.py [--customers 1000000] [--db pg|sqlite]
        [--requests 30] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import re
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from common import (
    PG_ADMIN,
    SyncdProcess,
    clean_exit_on_sigterm,
    free_port,
    percentile,
    print_table,
    sa_url,
    scratch_databases,
)
from common import write_config as node_config
from reports import fill_hub

from syncd.app import init_node
from syncd.core import logs
from syncd.core.settings import load_settings
from syncd.hub import analysis, console_users, reports
from syncd.hub import overview as cache
from syncd.store import hub_tables as h
from syncd.store.db import create_engine, utcnow

PASSWORD = "bench-password-overview"
HISTORY_DAYS = cache.HISTORY_DAYS


def timed(fn: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result


def add_history(engine: sa.Engine, days: int) -> int:
    """Daily snapshot rows for the last `days` days, two segments per city, from today's city
    summary (each day a little lower than the next)."""
    today = analysis.today()
    with engine.connect() as conn:
        cities = reports.city_summary(conn)
    rows = []
    for d in range(1, days + 1):
        day = today - dt.timedelta(days=d)
        scale = Decimal(1) - Decimal(d) / Decimal(1000)
        for c in cities:
            npl = c["loan_substandard"] + c["loan_doubtful"] + c["loan_loss"]
            for segment, share in (("individual", Decimal("0.9")), ("corporate", Decimal("0.1"))):

                def part(v: Decimal, s: Decimal = scale * share) -> Decimal:
                    return (v * s).quantize(Decimal("0.01"))

                rows.append(
                    {
                        "snapshot_date": day,
                        "node_id": c["node_id"],
                        "segment": segment,
                        "customers": int(c["customers"] * scale * share),
                        "deposit_balance": part(c["deposit_balance"]),
                        "loan_balance": part(c["loan_balance"]),
                        "npl_balance": part(npl),
                        "fee_income": part(c["fee_income"]),
                        "key_customers": 0,
                        "high_customers": 0,
                        "medium_customers": 0,
                        "standard_customers": 0,
                        "taken_at": utcnow(),
                    }
                )
    with engine.begin() as conn:
        conn.execute(h.report_daily.insert(), rows)
    return len(rows)


class Browser:
    """One keep-alive HTTP connection with the session cookie, as a manager's browser."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        answer = self.conn.getresponse()
        data = answer.read()
        for value in answer.headers.get_all("set-cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return answer.status, data

    def sign_in(self, username: str) -> None:
        status, page = self.request("GET", "/signin")
        match = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        assert status == 200, f"the sign-in form answered {status}"
        assert match, "no CSRF token in the sign-in form"
        form = {"username": username, "password": PASSWORD, "csrf_token": match[1].decode()}
        status, _ = self.request("POST", "/signin", form)
        assert status == 303, f"sign-in answered {status}"

    def page(self, path: str = "/overview") -> tuple[float, bytes]:
        started = time.perf_counter()
        status, body = self.request("GET", path)
        seconds = time.perf_counter() - started
        assert status == 200, f"{path} answered {status}"
        return seconds, body


def wait_until_up(port: int, console: SyncdProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if console.poll() is not None:
            raise RuntimeError(f"the console exited ({console.exit_code}); see {console.log}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the console did not answer /healthz")


def wait_for_figures(engine: sa.Engine, timeout: float = 3600) -> cache.Overview:
    """Poll the cache row until its refresh has finished (figures or an error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            state = cache.read(conn)
        if state.refreshing_since is None and (state.computed_at or state.error):
            return state
        time.sleep(0.05)
    raise TimeoutError("the overview refresh did not finish")


def stats(name: str, samples: list[float], size: int) -> tuple[Any, ...]:
    ms = [s * 1000 for s in samples]
    return (
        name,
        len(ms),
        round(percentile(ms, 50), 1),
        round(percentile(ms, 95), 1),
        round(max(ms), 1),
        size,
    )


def run(args: argparse.Namespace, urls: dict[str, str], tmp: Path) -> None:
    url = urls.get("hub") or f"sqlite:///{tmp / 'hub.db'}"
    config = node_config(tmp / "hub.toml", "hub-33", "hub", url)
    port = free_port()
    with config.open("a", encoding="utf-8") as fh:
        fh.write(
            f"[console]\nport = {port}\nsecure_cookies = false\n"
            f"overview_max_age_seconds = {args.max_age}\n"
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
    history_s, history = timed(lambda: add_history(engine, HISTORY_DAYS))
    print(f"{history} daily snapshot rows ({HISTORY_DAYS} days) in {history_s:.1f} s", flush=True)
    console_users.add_user(engine, "manager", ["manager"], PASSWORD)

    console = SyncdProcess(config, ("console",), tmp / "console.log").start()
    figures: list[tuple[Any, ...]] = []
    try:
        wait_until_up(port, console)
        browser = Browser(port)
        browser.sign_in("manager")
        # 1. The first visit: nothing cached, so it starts the refresh and says so.
        first_s, first = browser.page()
        assert b'id="overview-computing"' in first, "the first visit did not start a refresh"
        started = time.monotonic()
        state = wait_for_figures(engine)
        wall = time.monotonic() - started
        if state.error:
            raise RuntimeError(f"the refresh failed: {state.error}")
        print(f"first visit (nothing cached): {first_s * 1000:.1f} ms, {len(first)} bytes; "
              f"background refresh {state.seconds:.2f} s (the console's own measure), "
              f"figures there {wall:.2f} s after the visit", flush=True)  # fmt: skip

        # 2. Fresh figures: the page as a manager sees it most of the time.
        for _ in range(3):
            browser.page()  # warm-up (templates compiled, connections pooled)
        samples, size = [], 0
        for _ in range(args.requests):
            seconds, body = browser.page()
            assert b'id="overview-table"' in body
            assert b'id="overview-computing"' not in body
            samples.append(seconds)
            size = len(body)
        figures.append(stats("overview, fresh figures", samples, size))
        wan = [browser.page("/overview?unit=wan")[0] for _ in range(args.requests)]
        figures.append(stats("overview ?unit=wan", wan, len(browser.page("/overview?unit=wan")[1])))
        console.sample()

        # 3. While a refresh runs: make the figures stale, the next visit starts one.
        with engine.begin() as conn:
            conn.execute(
                h.console_cache.update().values(
                    computed_at=utcnow() - dt.timedelta(seconds=args.max_age + 60)
                )
            )
        during, overlapped = [], 0
        started = time.monotonic()
        for _ in range(args.requests):
            seconds, body = browser.page()
            during.append(seconds)
            overlapped += b'id="overview-computing"' in body
        state = wait_for_figures(engine)
        figures.append(stats(f"overview during a refresh ({overlapped} overlapped it)",
                             during, len(body)))  # fmt: skip
        print(f"second refresh (stale figures): {state.seconds:.2f} s", flush=True)
        console.sample()
    finally:
        console.stop()
        engine.dispose()
    print_table(["page", "requests", "p50 ms", "p95 ms", "max ms", "bytes"], figures)
    print(f"console process peak RSS: {console.peak_rss_mb or 0:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("sqlite", "pg"), default="pg")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--max-age", type=float, default=3600, help="[console] overview_max_age_seconds"
    )
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
