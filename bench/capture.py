"""City write overhead of capture: updates of `customers` with and without capture triggers.

Writes go through the driver, as a CRM application would write, so the figures show the
database's cost and not syncd's. Three statement shapes (`--shapes`), each measured with and
without capture:

- `tx`:    single-row UPDATEs, `--batch` (100) of them per transaction (a CRM's usual write);
- `stmt`:  one UPDATE of `--batch` (100) rows per transaction (`WHERE customer_id IN (…)`: a
           batch job's write; PostgreSQL's statement triggers log it in one call);
- `one`:   a single-row UPDATE in a transaction of its own (a teller's write; commit-bound),
           over `--rows` / 10 rows.

The two modes alternate in rounds so that drift of the machine (checkpoints, caches, other
load) hits both alike. Prints figures; asserts nothing.

    .venv/bin/python bench/capture.py [--rows 200000] [--batch 100] [--dialect both]
                                      [--shapes tx,stmt,one]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
import yaml
from psycopg import sql

from syncd.city.capture import install_triggers
from syncd.city.crm import create_crm_schema, crm_metadata
from syncd.core.policy import Policy, parse_policy
from syncd.store.city_tables import changelog
from syncd.store.city_tables import metadata as city_metadata
from syncd.store.db import create_engine

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
NOW = dt.datetime(2026, 11, 26, 8, 0, 0)
UPDATE = (
    "UPDATE customers SET risk_level = {p}, credit_limit = {p}, updated_at = {p}"
    " WHERE customer_id = {p}"
)


def policies() -> tuple[Policy, Policy]:
    """The reference policy, and the same with every table local (no capture at all)."""
    data = yaml.safe_load((REPO / "schemas" / "crm.yaml").read_text(encoding="utf-8"))
    captured = parse_policy(data, "crm.yaml")
    for spec in data["tables"].values():
        spec["class"] = "local"
    return captured, parse_policy(data, "crm.yaml (all local)")


def seed(engine: sa.Engine, policy: Policy, customers: int) -> None:
    with engine.begin() as conn:
        create_crm_schema(conn, policy)
        city_metadata.create_all(conn)
        rows: list[dict[str, Any]] = [
            {
                "customer_id": f"C{i:08d}",
                "customer_type": "individual",
                "name": f"客户{i}",
                "id_type": "ric",
                "id_number": f"33010219800101{i % 10000:04d}",
                "phone": "13800000000",
                "address": "杭州市西湖区",
                "home_city": "3301",
                "status": "active" if i % 4 else "prospect",
                "risk_level": 1 + i % 5,
                "risk_tags": ["vip"] if i % 7 == 0 else [],
                "credit_limit": "10000.00",
                "rm_notes": "内部备注",
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(customers)
        ]
        conn.execute(sa.insert(crm_metadata(policy).tables["customers"]), rows)


SHAPES = {
    "tx": "1-row UPDATEs, {batch} per transaction",
    "stmt": "{batch}-row UPDATE, 1 per transaction",
    "one": "1-row UPDATE, 1 per transaction",
}


def run_updates(
    engine: sa.Engine, rows: int, batch: int, customers: int, run: int, shape: str = "tx"
) -> float:
    """Seconds for `rows` row updates in the statement shape `shape`, through the driver.

    Every run writes values no earlier run wrote: SQLite skips rewriting a row whose bytes do
    not change, which would flatter whichever mode repeats the other's work. A `stmt` update
    sets one value on `batch` distinct customers.
    """
    rng = random.Random(run)
    postgres = engine.dialect.name == "postgresql"
    p = "%s" if postgres else "?"
    per_tx = 1 if shape == "one" else batch
    per_stmt = batch if shape == "stmt" else 1
    statements: list[tuple[Any, ...]] = []
    for n in range(0, rows, per_stmt):
        keys = [f"C{k:08d}" for k in rng.sample(range(customers), per_stmt)]
        values = (
            1 + rng.randrange(5),
            str(Decimal(rng.randrange(1_000_000)) / 100),
            NOW + dt.timedelta(days=run, seconds=n),
        )
        statements.append((*values, *keys))
    if per_stmt == 1:
        stmt = UPDATE.format(p=p)
    else:
        # Only the WHERE clause's parameter becomes a list: the SET clause keeps its three.
        stmt = UPDATE.format(p=p).rsplit(f"= {p}", 1)[0] + (
            "IN (" + ", ".join([p] * per_stmt) + ")"
        )
    per_tx_statements = max(per_tx // per_stmt, 1)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        start = time.perf_counter()
        for i in range(0, len(statements), per_tx_statements):
            if not postgres:
                cur.execute("BEGIN IMMEDIATE")
            for params in statements[i : i + per_tx_statements]:
                cur.execute(stmt, params)
            raw.commit() if postgres else cur.execute("COMMIT")
        elapsed = time.perf_counter() - start
        cur.close()
    finally:
        raw.close()
    return elapsed


@dataclass(frozen=True)
class Result:
    without: float  # rows/s over all rounds
    with_: float
    round_ratio: float  # median over rounds of the two modes' ratio, run back to back
    logged: int  # changelog rows written


def measure(
    url: str, rows: int, batch: int, rounds: int, shape: str = "tx", verbose: bool = False
) -> Result:
    """Rates without and with capture for one statement shape, alternating the modes."""
    captured, uncaptured = policies()
    customers = min(max(rows // 10, 1000), 50_000)
    engine = create_engine(url)
    try:
        seed(engine, captured, customers)
        spent = {False: 0.0, True: 0.0}
        ratios: list[float] = []
        unit = 1 if shape == "one" else batch
        per_round = max(rows // rounds // unit * unit, unit)
        runs = 0
        for r in range(rounds):
            took_in_round: dict[bool, float] = {}
            # Alternate which mode goes first, so neither always runs on a warmer machine.
            for capture in (r % 2 == 1, r % 2 == 0):
                with engine.begin() as conn:
                    install_triggers(conn, captured if capture else uncaptured, 3000)
                runs += 1
                took = run_updates(engine, per_round, batch, customers, runs, shape)
                spent[capture] += took
                took_in_round[capture] = took
                if verbose:
                    mode = "with" if capture else "without"
                    print(f"  round {r + 1} {mode:<7} capture {per_round / took:>9,.0f} rows/s")
            ratios.append(took_in_round[True] / took_in_round[False])
        with engine.connect() as conn:
            logged = conn.execute(sa.select(sa.func.count()).select_from(changelog)).scalar_one()
        done = per_round * rounds
        return Result(
            done / spent[False], done / spent[True], statistics.median(ratios), int(logged)
        )
    finally:
        engine.dispose()


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'city.db'}"


@contextmanager
def postgres_url(admin: str) -> Iterator[str]:
    name = f"syncd_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="row updates per mode")
    parser.add_argument("--batch", type=int, default=100, help="rows per transaction")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of the two modes")
    parser.add_argument("--dialect", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument(
        "--shapes", default="tx,stmt,one", help=f"comma-separated, of {', '.join(SHAPES)}"
    )
    parser.add_argument("--verbose", action="store_true", help="print every round's rate")
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="superuser URL to create the db")
    args = parser.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    print(
        f"capture overhead: updates of customers per mode and shape ({args.rows} rows; "
        f"{args.rows // 10} for one-row transactions), {args.rounds} alternating rounds"
    )
    targets: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = []
    if args.dialect in ("both", "sqlite"):
        targets.append(("sqlite", sqlite_url))
    if args.dialect in ("both", "postgresql"):
        targets.append(("postgresql", lambda: postgres_url(args.pg_admin)))
    for label, database in targets:
        for shape in shapes:
            rows = args.rows // 10 if shape == "one" else args.rows
            with database() as url:
                res = measure(url, rows, args.batch, args.rounds, shape, args.verbose)
            what = SHAPES[shape].format(batch=args.batch)
            print(
                f"{label:<11} {what:<38} without {res.without:>9,.0f} rows/s   "
                f"with {res.with_:>9,.0f} rows/s   "
                f"ratio {res.without / res.with_:.2f}x "
                f"(median of per-round ratios {res.round_ratio:.2f}x)   "
                f"changelog rows {res.logged:,}"
            )


if __name__ == "__main__":
    main()
