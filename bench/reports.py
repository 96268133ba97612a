"""The managers' reports at scale: seconds per report at N customers on the hub.

A hub filled set-based (INSERT … SELECT over a series, no apply involved) with N golden
customers in three cities — one in ten also a customer of a second city, one in ten corporate,
3 % of risk level 4-5, 2.5 % with a warning risk tag — and their children: a deposit account
each, a loan per third customer (about one in six of them overdue or worse than normal, one in a
hundred twice the credit limit), an intermediary business per fifth. Then, once before and once
after ANALYZE, the exposure report (the planner's statistics after a bulk load), and after it
every report as `syncd report` runs it: cities, value, exposure, segments, warnings, key,
customer_insights, the daily snapshot (a write) and the trend against it. Prints figures;
asserts nothing.

    .venv/bin/python bench/reports.py [--customers 1000000] [--db pg|sqlite] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import PG_ADMIN, clean_exit_on_sigterm, print_table, sa_url, scratch_databases
from common import write_config as node_config

from syncd.app import init_node
from syncd.core import logs
from syncd.core.policy import load_policy
from syncd.core.settings import DownlinkSection, ReportSection, load_settings
from syncd.hub import analysis, downlink, reports
from syncd.store import hub_tables as h
from syncd.store.db import create_engine, utcnow

POLICY = Path(__file__).resolve().parent.parent / "schemas" / "crm.yaml"
CITIES = ("city-3301", "city-3302", "city-3303")
TODAY = dt.date(2026, 11, 30)


def _series(pg: bool, n: int) -> str:
    if pg:
        return f"generate_series(1, {int(n)}) AS s(i)"
    return (
        f"(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < {int(n)}) "
        "SELECT i FROM r) AS s"
    )


class Sql:
    """The few expressions that differ between the dialects, as SQL text."""

    def __init__(self, pg: bool) -> None:
        self.pg = pg
        self.false = "false" if pg else "0"
        self.ts = "TIMESTAMP '2026-06-30 08:00:00'" if pg else "'2026-06-30 08:00:00.000000'"
        self.day = "DATE '2024-01-01'" if pg else "'2024-01-01'"

    def money(self, expr: str) -> str:
        text = f"CAST({expr} AS TEXT) || '.50'"
        return f"CAST({text} AS NUMERIC)" if self.pg else text

    def tags(self) -> str:
        tags = (
            "CASE WHEN i % 200 = 0 THEN '[\"fraud_alert\"]' "
            "WHEN i % 50 = 0 THEN '[\"watchlist\"]' ELSE '[]' END"
        )
        return f"CAST({tags} AS JSONB)" if self.pg else tags

    def birth(self) -> str:
        """YYYYMMDD, 1950-01-01 plus i % 20000 days."""
        if self.pg:
            return "to_char(DATE '1950-01-01' + (i % 20000), 'YYYYMMDD')"
        return "replace(date('1950-01-01', '+' || (i % 20000) || ' days'), '-', '')"

    def pad(self, expr: str, width: int) -> str:
        if self.pg:
            return f"lpad(CAST({expr} AS TEXT), {width}, '0')"
        return f"substr('{'0' * width}' || CAST({expr} AS TEXT), -{width}, {width})"


def fill_hub(url: str, n: int) -> dict[str, int]:
    """N golden customers and their cities' rows, straight into the hub's tables."""
    engine = create_engine(url)
    q = Sql(engine.dialect.name == "postgresql")
    city = "'city-330' || CAST(i % 3 + 1 AS TEXT)"
    second = "'city-330' || CAST((i + 1) % 3 + 1 AS TEXT)"
    corporate = "i % 10 = 5"
    id_number = (
        f"CASE WHEN {corporate} THEN '91330102' || {q.pad('i', 10)} "
        f"ELSE '3301' || {q.pad('i % 6 + 1', 2)} || {q.birth()} || {q.pad('i / 20000', 4)} END"
    )
    person = (
        f"CASE WHEN {corporate} THEN 'corporate' ELSE 'individual' END, '客户' || CAST(i AS TEXT), "
        f"CASE WHEN {corporate} THEN 'uscc' ELSE 'ric' END, {id_number}, NULL, NULL, "
        f"'330' || CAST(i % 3 + 1 AS TEXT), 'active', "
        f"CASE WHEN i % 100 < 3 THEN 4 + i % 2 ELSE 1 + i % 3 END, {q.tags()}, "
        f"{q.money('(i % 10 + 3) * 100000')}, {q.ts}, {q.ts}"
    )
    head = (
        "customer_type, name, id_type, id_number, phone, address, home_city, status, "
        "risk_level, risk_tags, credit_limit, created_at, updated_at"
    )
    meta = f"i, {q.false}, NULL, {q.ts}"
    meta_cols = "_seq, _deleted, _batch_id, _applied_at"
    five = (
        "CASE WHEN i % 50 = 0 THEN 'loss' WHEN i % 50 = 3 THEN 'doubtful' "
        "WHEN i % 50 IN (6, 9) THEN 'substandard' WHEN i % 50 < 24 AND i % 50 % 3 = 0 "
        "THEN 'special_mention' ELSE 'normal' END"
    )
    # One loan in a hundred twice its customer's credit limit; the others within it.
    loan = "CASE WHEN i % 100 = 3 THEN (i % 10 + 3) * 200000 ELSE i % 250000 END"
    series = _series(q.pg, n)
    statements = {
        "customers": (
            f"INSERT INTO customers (golden_id, {head}, _sources, _deleted, _updated_at) "
            f"SELECT i, {person}, 1, {q.false}, {q.ts} FROM {series}"
        ),
        "src_customers": (
            f"INSERT INTO src_customers (origin_node, customer_id, {head}, {meta_cols}) "
            f"SELECT {city}, 'C' || CAST(i AS TEXT), {person}, {meta} FROM {series}"
        ),
        "src_customers (second city)": (
            f"INSERT INTO src_customers (origin_node, customer_id, {head}, {meta_cols}) "
            f"SELECT {second}, 'S' || CAST(i AS TEXT), {person}, {meta} FROM {series} "
            "WHERE i % 10 = 1"
        ),
        "deposit_accounts": (
            "INSERT INTO deposit_accounts (origin_node, account_id, customer_id, product, "
            f"currency, balance, interest_rate, opened_on, maturity_on, status, updated_at, "
            f"{meta_cols}) SELECT {city}, 'A' || CAST(i AS TEXT), 'C' || CAST(i AS TEXT), "
            f"'current', 'CNY', {q.money('i % 100000')}, NULL, {q.day}, NULL, 'open', {q.ts}, "
            f"{meta} FROM {series}"
        ),
        "loans": (
            "INSERT INTO loans (origin_node, loan_id, customer_id, product, principal, balance, "
            "interest_rate, five_class, overdue_days, issued_on, maturity_on, collateral, "
            f"updated_at, {meta_cols}) SELECT {city}, 'L' || CAST(i AS TEXT), "
            f"'C' || CAST(i AS TEXT), 'consumer', {q.money(loan)}, "
            f"{q.money(loan)}, NULL, {five}, CASE WHEN i % 50 < 8 THEN i % 400 ELSE 0 END, "
            f"{q.day}, {q.day}, NULL, {q.ts}, {meta} FROM {series} WHERE i % 3 = 0"
        ),
        "intermediary_business": (
            "INSERT INTO intermediary_business (origin_node, business_id, customer_id, "
            "product_type, product_name, amount, fee_income, trade_date, updated_at, "
            f"{meta_cols}) SELECT {city}, 'F' || CAST(i AS TEXT), 'C' || CAST(i AS TEXT), "
            f"'wealth', NULL, {q.money('i % 100000')}, {q.money('i % 1000')}, {q.day}, "
            f"{q.ts}, {meta} FROM {series} WHERE i % 5 = 0"
        ),
    }
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for name, sql in statements.items():
            text = sql.replace("%", "%%") if q.pg else sql
            counts[name] = conn.exec_driver_sql(text).rowcount
    engine.dispose()
    return counts


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result


def run(args: argparse.Namespace, urls: dict[str, str], tmp: Path) -> None:
    url = urls.get("hub") or f"sqlite:///{tmp / 'hub.db'}"
    hub = load_settings(node_config(tmp / "hub.toml", "hub-33", "hub", url))
    init_node(hub)
    fill_s, counts = timed(lambda: fill_hub(sa_url(url), args.customers))
    print(f"hub {args.db}: {args.customers} golden customers, rows {counts}, filled in "
          f"{fill_s:.1f} s", flush=True)  # fmt: skip
    policy = load_policy(POLICY)
    section = ReportSection()
    engine = create_engine(sa_url(url))
    figures: list[tuple[str, float, int]] = []

    def measure(name: str, fn: Callable[[Any], Any], write: bool = False) -> None:
        with engine.begin() if write else engine.connect() as conn:
            seconds, result = timed(lambda: fn(conn))
        rows = len(result) if isinstance(result, list) else 1
        figures.append((name, seconds, rows))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  {name}: {seconds:.2f} s, {rows} rows, peak RSS so far {peak:.0f} MB", flush=True)

    if args.db == "pg":
        # Plans on a fresh load's missing statistics can be quadratic: cut off, and say so.
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET statement_timeout = '{int(args.cutoff)}s'")
            try:
                seconds, result = timed(lambda: reports.credit_exposure(conn))
                figures.append(("exposure, before ANALYZE", seconds, len(result)))
            except sa.exc.OperationalError:
                print(f"exposure, before ANALYZE: cancelled after {args.cutoff:.0f} s")
                figures.append((f"exposure, before ANALYZE (cut at {args.cutoff:.0f} s)",
                                args.cutoff, 0))  # fmt: skip
            conn.rollback()
    if args.db == "pg":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            seconds, _ = timed(lambda: conn.exec_driver_sql("ANALYZE"))
        figures.append(("ANALYZE (all tables)", seconds, 0))
    # The floor under every analysis: the profile view read whole by SQL alone (no Python
    # per customer). A report reading it cannot be faster than this.
    measure("floor: report_customer_profile scanned in SQL", lambda c: c.execute(sa.text(
        "SELECT count(*), sum(loan_count), max(fee_income) FROM report_customer_profile"
    )).all())  # fmt: skip
    measure("floor: value ranked in SQL", lambda c: c.execute(sa.text(
        "SELECT count(*) FROM (SELECT golden_id, rank() OVER (ORDER BY deposit_balance"
        " + loan_balance * 0.5 + fee_income * 20 DESC) FROM report_customer_value_base) t"
    )).all())  # fmt: skip
    if args.downlink_only:
        publish_downlink(engine, policy, section, figures)
        engine.dispose()
        print_table(["step", "seconds", "rows"], [(n, round(s, 2), r) for n, s, r in figures])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process: {peak:.0f} MB")
        return
    measure("cities", reports.city_summary)
    measure("value", lambda c: reports.customer_value(c, section, None))
    measure("exposure", reports.credit_exposure)
    measure("segments --by type --by tier", lambda c: analysis.segments(
        c, policy, section, ["type", "tier"], as_of=TODAY))  # fmt: skip
    measure("segments --by district --by age", lambda c: analysis.segments(
        c, policy, section, ["district", "age"], as_of=TODAY))  # fmt: skip
    measure("warnings", lambda c: analysis.risk_warnings(c, policy, section, as_of=TODAY))
    measure("key --top 20", lambda c: analysis.key_customers(c, policy, section, as_of=TODAY))
    measure("customer_insights", lambda c: analysis.customer_insights(
        c, policy, section, as_of=TODAY))  # fmt: skip
    yesterday = TODAY - dt.timedelta(days=1)
    measure("snapshot (write)", lambda c: analysis.take_snapshot(
        c, policy, section, as_of=yesterday), write=True)  # fmt: skip
    measure("trend --since yesterday", lambda c: analysis.trend(
        c, policy, section, "yesterday", as_of=TODAY))  # fmt: skip
    measure("warnings, with a snapshot", lambda c: analysis.risk_warnings(
        c, policy, section, as_of=TODAY))  # fmt: skip
    publish_downlink(engine, policy, section, figures)
    engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print_table(
        ["report", "seconds", "rows", "s per 1M customers"],
        [(name, round(s, 2), rows, round(s * 1_000_000 / args.customers, 2))
         for name, s, rows in figures],
    )  # fmt: skip
    print(f"peak RSS of this process: {peak:.0f} MB")


def publish_downlink(
    engine: sa.Engine, policy: Any, section: ReportSection, figures: list[tuple[str, float, int]]
) -> None:
    """The downward path's build (`syncd insights publish`): the first sends every city all of
    its customers' insights, the second finds nothing changed. Rows: changes built."""
    with engine.begin() as conn:
        known = set(conn.execute(sa.select(h.nodes.c.node_id)).scalars())
        for code in ("3301", "3302", "3303"):
            if f"city-{code}" not in known:
                conn.execute(
                    h.nodes.insert().values(
                        node_id=f"city-{code}", city_code=code, registered_at=utcnow()
                    )
                )
    down = DownlinkSection()
    for name in ("insights publish, first (all)", "insights publish, nothing changed"):
        seconds, result = timed(lambda: downlink.publish(engine, policy, section, down))
        changes = sum(result.changes.values())
        figures.append((name, seconds, changes))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  {name}: {seconds:.2f} s, {changes} changes, {sum(result.batches.values())} "
              f"batches, peak RSS so far {peak:.0f} MB", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("sqlite", "pg"), default="pg")
    parser.add_argument("--quick", action="store_true", help="20,000 customers (smoke)")
    parser.add_argument(
        "--cutoff", type=float, default=120, help="seconds before the pre-ANALYZE run is cancelled"
    )
    parser.add_argument("--pg-admin", default=PG_ADMIN)
    parser.add_argument(
        "--downlink-only",
        action="store_true",
        help="only the SQL floors and the downward build (its own peak RSS)",
    )
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
