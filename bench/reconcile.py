"""`syncd reconcile` at scale: seconds per million customers, and the process's peak memory.

A city CRM and a hub holding the same N customers of the city (filled set-based, straight
into the CRM table before capture is installed and into the hub's src_customers, so no
changelog and no apply are involved), with a few injected differences (missing, extra and
changed rows at the hub). Then `syncd.app.reconcile` on the customers table, as the CLI runs
it: digests in each database, bisection, leaf keys, quarantine/in-flight check, record.
City and hub each on SQLite (temp files) or PostgreSQL (scratch databases of the test
server; the city asks with its node's own login role). Prints figures; asserts nothing.

    .venv/bin/python bench/reconcile.py [--customers 1000000] [--city sqlite|pg] [--hub sqlite|pg]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from common import (
    PG_ADMIN,
    clean_exit_on_sigterm,
    print_table,
    sa_url,
    scratch_databases,
    write_config,
)

from syncd.app import init_node, reconcile
from syncd.city.crm import create_crm_schema
from syncd.core import logs
from syncd.core.policy import load_policy
from syncd.core.settings import load_settings
from syncd.hub.nodes import register_node
from syncd.store.db import create_engine

NODE = "city-3301"
DIFFS = 10  # of each kind

COLUMNS = (
    "customer_id, customer_type, name, id_type, id_number, phone, home_city, status, "
    "risk_level, risk_tags, credit_limit, rm_notes, created_at, updated_at"
)


def _values(pg: bool) -> str:
    """The select list of customer i, the same in both databases (values, not types)."""
    money = (
        "CAST(CAST(i % 100000 AS TEXT) || '.50' AS NUMERIC)"
        if pg
        else ("CAST(i % 100000 AS TEXT) || '.50'")
    )
    tags = 'CAST(\'["vip", "新"]\' AS JSONB)' if pg else '\'["vip", "新"]\''
    ts = "TIMESTAMP '2026-06-30 08:00:00'" if pg else "'2026-06-30 08:00:00.000000'"
    values = (
        "'C' || CAST(i AS TEXT), 'individual', '客户' || CAST(i AS TEXT), 'ric', "
        "'33010219850101' || CAST(i % 10000 AS TEXT), '138' || CAST(i AS TEXT), '3301', "
        f"'active', i % 5 + 1, {tags}, {money}, 'private', {ts}, {ts}"
    )
    # psycopg takes % for a placeholder even without parameters.
    return values.replace("%", "%%") if pg else values


def _series(pg: bool, n: int) -> str:
    if pg:
        return f"generate_series(1, {int(n)}) AS s(i)"
    return (
        f"(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < {int(n)}) "
        "SELECT i FROM r) AS s"
    )


def fill_city(url: str, n: int) -> None:
    engine = create_engine(url)
    pg = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        create_crm_schema(conn, load_policy(Path(__file__).parent.parent / "schemas/crm.yaml"))
        conn.exec_driver_sql(
            f"INSERT INTO customers ({COLUMNS}) SELECT {_values(pg)} FROM {_series(pg, n)}"
        )
    engine.dispose()


def fill_hub(url: str, n: int) -> None:
    engine = create_engine(url)
    pg = engine.dialect.name == "postgresql"
    cols = COLUMNS.replace(", rm_notes", "")
    values = _values(pg).replace(", 'private'", "")
    now = "now()" if pg else "'2026-06-30 08:00:00.000000'"
    false = "false" if pg else "0"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO src_customers (origin_node, {cols}, _seq, _deleted, _applied_at) "
            f"SELECT '{NODE}', {values}, i, {false}, {now} FROM {_series(pg, n)}"
        )
        # The differences reconcile must find: missing, changed and extra at the hub.
        conn.exec_driver_sql(
            f"DELETE FROM src_customers WHERE customer_id IN "
            f"({', '.join(repr(f'C{1000 + k}') for k in range(DIFFS))})"
        )
        conn.exec_driver_sql(
            "UPDATE src_customers SET phone = 'changed' WHERE customer_id IN "
            f"({', '.join(repr(f'C{2000 + k}') for k in range(DIFFS))})"
        )
        extra = values.replace("'C'", "'X'", 1)  # keys the city does not have
        conn.exec_driver_sql(
            f"INSERT INTO src_customers (origin_node, {cols}, _seq, _deleted, _applied_at) "
            f"SELECT '{NODE}', {extra}, i, {false}, {now} FROM {_series(pg, DIFFS)}"
        )
    engine.dispose()


def run(args: argparse.Namespace, urls: dict[str, str], tmp: Path) -> None:
    hub_url = urls.get("hub") or f"sqlite:///{tmp / 'hub.db'}"
    city_url = urls.get("city") or f"sqlite:///{tmp / 'city.db'}"
    hub = load_settings(write_config(tmp / "hub.toml", "hub-33", "hub", hub_url))
    init_node(hub)
    engine = create_engine(sa_url(hub_url))
    creds = register_node(engine, sa_url(hub_url), NODE, "3301")
    engine.dispose()
    started = time.monotonic()
    fill_city(sa_url(city_url), args.customers)
    fill_hub(sa_url(hub_url), args.customers)
    filled = time.monotonic() - started
    city = load_settings(write_config(tmp / "city.toml", NODE, "city", city_url, creds.hub_url))
    init_node(city)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    report = reconcile(city, tables=["customers"])
    seconds = time.monotonic() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (t,) = report.tables
    kinds = {s: t.count(s) for s in {k.state for k in t.keys}}
    print_table(
        ["city", "hub", "customers", "fill s", "reconcile s", "s per 1M rows", "found",
         "peak RSS MB", "RSS growth MB"],
        [(args.city, args.hub, args.customers, round(filled, 1), round(seconds, 1),
          round(seconds * 1_000_000 / args.customers, 1),
          ", ".join(f"{k.value} {v}" for k, v in sorted(kinds.items())),
          round(rss_after), round(rss_after - rss_before))],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--city", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--hub", choices=("sqlite", "pg"), default="pg")
    parser.add_argument("--pg-admin", default=PG_ADMIN)
    args = parser.parse_args()
    clean_exit_on_sigterm()
    logs.configure("json", "warning", "bench")
    labels = [label for label in ("city", "hub") if getattr(args, label) == "pg"]
    with tempfile.TemporaryDirectory() as tmp, scratch_databases(args.pg_admin, *labels) as urls:
        run(args, urls, Path(tmp))


if __name__ == "__main__":
    main()
