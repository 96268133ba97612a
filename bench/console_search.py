"""The console's Customer 360 at scale: the search page and a customer's 360 over HTTP.

A hub filled as `reports.py` fills it (its `fill_hub`: N golden customers named 客户<i>, ric
numbers 3301… with a birth date, one in ten corporate with a uscc), the search indexes made
on the filled table as `syncd init` makes them on an upgraded hub (timed), ANALYZE, then the
real console app (`create_app`) through Starlette's TestClient, signed in as a manager: p50,
p95 and max milliseconds over `--samples` searches each for part of a name (户<6 digits>), a
full ID number and a masked one (330102********0019), and the 360 page of as many customers.
Prints the PostgreSQL plans of the three searches first. Asserts nothing.

    .venv/bin/python bench/console_search.py [--customers 1000000] [--samples 30] [--db pg|sqlite]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from common import PG_ADMIN, clean_exit_on_sigterm, print_table, sa_url, scratch_databases
from common import write_config as node_config
from reports import fill_hub, timed

from syncd.app import init_node
from syncd.console.app import create_app
from syncd.core import logs
from syncd.core.i18n import mask_id
from syncd.core.policy import Policy, load_policy
from syncd.core.settings import load_settings
from syncd.hub import console_users, search
from syncd.store.db import create_engine
from syncd.store.dialect import dialect_for

PASSWORD = "bench-password-1"


def id_number(i: int) -> str:
    """The number `fill_hub` gives customer i."""
    if i % 10 == 5:
        return "91330102" + str(i).zfill(10)
    birth = (dt.date(1950, 1, 1) + dt.timedelta(days=i % 20000)).strftime("%Y%m%d")
    return "3301" + str(i % 6 + 1).zfill(2) + birth + str(i // 20000).zfill(4)


def ms(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--db", choices=("sqlite", "pg"), default="pg")
    parser.add_argument("--pg-admin", default=PG_ADMIN)
    args = parser.parse_args()
    clean_exit_on_sigterm()
    logs.configure("json", "warning", "bench")
    labels = ["hub"] if args.db == "pg" else []
    with tempfile.TemporaryDirectory() as tmp, scratch_databases(args.pg_admin, *labels) as urls:
        run(args, urls, Path(tmp))


def run(args: argparse.Namespace, urls: dict[str, str], tmp: Path) -> None:
    from fastapi.testclient import TestClient

    url = urls.get("hub") or f"sqlite:///{tmp / 'hub.db'}"
    config = node_config(tmp / "hub.toml", "hub-33", "hub", url)
    config.write_text(config.read_text() + "[console]\nsecure_cookies = false\n")
    settings = load_settings(config)
    init_node(settings)
    engine = create_engine(sa_url(url))
    pg = engine.dialect.name == "postgresql"
    with engine.begin() as conn:  # made again on the filled table below, as on an upgraded hub
        for name in (*search.TRIGRAM_INDEXES, search.ID_INDEX, search.CHARS_INDEX):
            conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
    fill_s, _ = timed(lambda: fill_hub(sa_url(url), args.customers))
    print(f"hub {args.db}: {args.customers} customers filled in {fill_s:.1f} s", flush=True)
    policy = load_policy(settings.policy.path)
    # A daily snapshot as the hub daemon's job leaves it (the tiers the pages show): written
    # set-based here, `report snapshot` itself takes over a minute at 1M (bench/reports.py).
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO syncd_report_customer_day (snapshot_date, golden_id, loan_balance, "
                "worst_class, contribution, tier) SELECT :day, golden_id, 0, 1, 100, CASE "
                "WHEN golden_id % 100 = 0 THEN 'key' WHEN golden_id % 10 = 0 THEN 'high' "
                "WHEN golden_id % 3 = 0 THEN 'medium' ELSE 'standard' END FROM customers"
            ),
            {"day": dt.date.today()},
        )

    def indexes() -> str | None:
        with engine.begin() as conn:
            return search.install_indexes(conn, policy)

    index_s, warning = timed(indexes)
    print(f"search indexes made in {index_s:.1f} s; warning: {warning}", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        analyze_s, _ = timed(lambda: conn.exec_driver_sql("ANALYZE"))
    print(f"ANALYZE {analyze_s:.1f} s", flush=True)
    console_users.add_user(engine, "manager", ["manager"], PASSWORD)
    rng = random.Random(15)
    picks = [rng.randrange(1, args.customers + 1) for _ in range(args.samples)]
    queries = {
        "partial name (户 + 6 digits)": [f"户{str(i)[:6]}" for i in picks],
        "partial name, 1-3 digits (many match)": [
            f"户{str(i)[: 1 + n % 3]}" for n, i in enumerate(picks)
        ],
        "one character, no match (张)": ["张"] * len(picks),
        "two characters, no match (张三)": ["张三"] * len(picks),
        "full ID number": [id_number(i) for i in picks],
        "masked ID number": [mask_id(id_number(i)) for i in picks],
    }
    if pg:
        explain(engine, policy, {k: v[0] for k, v in queries.items()})
        explain(engine, policy, {"partial name, 3 digits": "户123", "common character": "户"})
    rows: list[tuple[str, float, float, float, str]] = []
    with TestClient(create_app(settings)) as client:
        page = client.get("/signin")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        client.post(
            "/signin",
            data={"username": "manager", "password": PASSWORD, "csrf_token": token[1]},
            follow_redirects=False,
        )
        client.get("/customers", params={"q": "户1"})  # warm up
        for label, texts in queries.items():
            times, found = [], 0
            for q in texts:
                started = time.perf_counter()
                answer = client.get("/customers", params={"q": q})
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text[:500]
                found += answer.text.count('href="/customers/') // 2  # 2 links a row
            rows.append((label, *ms(times), f"{found / len(texts):.1f} rows"))
            print(f"  {label}: p50 {rows[-1][1]:.1f} ms", flush=True)
        times = []
        for i in picks:
            started = time.perf_counter()
            answer = client.get(f"/customers/{i}")
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text[:500]
        rows.append(("customer 360 page", *ms(times), "1 customer"))
    print(f"\n{args.customers} customers, {args.db}, {args.samples} requests each (ms):")
    print_table(
        ["page", "p50 ms", "p95 ms", "max ms", "found"],
        [(r[0], round(r[1], 1), round(r[2], 1), round(r[3], 1), r[4]) for r in rows],
    )
    engine.dispose()


def explain(engine: sa.Engine, policy: Policy, texts: dict[str, str]) -> None:
    """The plan of each search's query as PostgreSQL runs it (EXPLAIN ANALYZE)."""
    for label, text in texts.items():
        query = search.search_query(policy, text, dialect=dialect_for(engine)).compile(
            dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        with engine.connect() as conn:
            explained = "EXPLAIN ANALYZE " + query.string
            plan = conn.exec_driver_sql(explained, query.params).scalars().all()
        print(f"\nEXPLAIN ANALYZE, {label} ({text!r}):")
        print("\n".join(f"  {line}" for line in plan), flush=True)


if __name__ == "__main__":
    main()
