"""syncd vs. PostgreSQL native logical replication, on two private PostgreSQL 15 clusters.

Two clusters of our own (initdb under a temp dir, free ports, fsync=off, removed at the end even
on failure): a city cluster (wal_level=logical) and a hub cluster. The same generated data
(N customers with children, 30 % of identities in each of 3 cities, 2 % prospects) goes to

- native: ONE city database holding the rows of all 3 cities, a publication with the policy's
  row filter on customers and column lists without the excluded columns, one subscription into
  plain tables at the hub. customers gets REPLICA IDENTITY USING INDEX on a unique
  (customer_id, status) index: PostgreSQL 15 refuses UPDATEs when a row-filter column is not in
  the replica identity, and REPLICA IDENTITY FULL is refused too, because the column list (which
  leaves out rm_notes) must cover the replica identity;
- syncd: THREE city databases (one per city node, as deployed) and a hub database, with
  `syncd run` daemons at default settings.

Measured in one run: initial load (raw COPY into the hub: the limit; native initial sync until
every table is 'r' and counts match; `syncd snapshot` + daemons until the hub applied all),
incremental (U updates in T transactions until the hub caught up), end of day (one UPDATE of
every deposit account per city, each in its own transaction: from the last commit until the
hub has every posted account), single-row latency, city write overhead (the same update
load without replication, with the native publication live, with syncd capture live, and
with capture but the syncd daemons stopped), peak RSS of syncd.
Prints a table and writes a JSON file. Prints figures; asserts nothing.

    .venv/bin/python bench/compare.py [--customers 1000000] [--quick] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from common import (
    PUBLIC_TABLES,
    DataSpec,
    PgCluster,
    Stopwatch,
    SyncdProcess,
    changelog_high,
    clean_exit_on_sigterm,
    copy_chunks,
    copy_into,
    count_rows,
    create_tables,
    fill_city,
    latency_summary,
    measure_latency,
    node_id,
    pg_clusters,
    print_table,
    public_table,
    rate,
    setup_nodes,
    wait_all,
    wait_applied,
)
from psycopg import sql

from syncd.core.policy import Condition, FilterOp, Policy, load_policy

HERE = Path(__file__).resolve().parent
COMMON_PG = {"fsync": "off", "max_wal_size": "'4GB'", "shared_buffers": "'256MB'"}
CITY_PG = {
    **COMMON_PG,
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
}
UPDATE = "UPDATE customers SET phone = %s, risk_level = %s, updated_at = %s WHERE customer_id = %s"
NATIVE_LAYOUT = (
    "one city database holding the rows of all 3 cities; one publication, one subscription"
)
SYNCD_LAYOUT = "three city databases (one per node) and one hub database; syncd run daemons"
REPLICA_IDENTITY = (
    "customers: REPLICA IDENTITY USING INDEX on a unique (customer_id, status) index "
    "(FULL is refused in PG 15: the column list must cover the replica identity)"
)
HUB_NAMES = {"customers": "src_customers"}


# --- the update workload ------------------------------------------------------------------


Plan = list[tuple[str, list[str]]]


def make_plan(spec: DataSpec, transactions: int, per_tx: int, seed: int) -> Plan:
    """Transactions of `per_tx` customer ids each, all of one city (syncd's cities are apart)."""
    rng = random.Random(seed)
    plan: Plan = []
    for t in range(transactions):
        city = spec.cities[t % len(spec.cities)]
        n = spec.per_city(city)
        ids: list[str] = []
        while len(ids) < per_tx:
            j = rng.randrange(n)
            if not spec.is_prospect(city, j):
                ids.append(spec.customer_id(city, j))
        plan.append((city, ids))
    return plan


def run_updates(
    conn_for: Callable[[str], psycopg.Connection[Any]], plan: Plan, tag: str
) -> tuple[float, dict[str, tuple[str, str]], float]:
    """Run the plan; (seconds, last (customer_id, phone) per city, monotonic start)."""
    last: dict[str, tuple[str, str]] = {}
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    started = time.monotonic()
    watch = Stopwatch()
    with watch:
        for t, (city, ids) in enumerate(plan):
            conn = conn_for(city)
            params = [(f"{tag}{t}-{k}", 1 + (t + k) % 5, now, cid) for k, cid in enumerate(ids)]
            with conn.cursor() as cur:
                cur.executemany(UPDATE, params)
            conn.commit()
            last[city] = (params[-1][3], params[-1][0])
    return watch.seconds, last, started


def wait_visible(
    check: Callable[[str, str, str], bool],
    last: dict[str, tuple[str, str]],
    timeout: float,
    interval: float = 0.02,
) -> float:
    """Wait until each city's last written value is at the hub; the monotonic time then."""
    deadline = time.monotonic() + timeout
    pending = dict(last)
    while pending:
        pending = {c: v for c, v in pending.items() if not check(c, *v)}
        if not pending:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"hub did not catch up with {pending}")
        time.sleep(interval)
    return time.monotonic()


# --- end of day ---------------------------------------------------------------------------

# The core-banking posting: every deposit account's balance changes, one statement per city.
END_OF_DAY = "UPDATE deposit_accounts SET balance = balance + 1.00, updated_at = %s"
END_OF_DAY_LIKE = END_OF_DAY + " WHERE account_id LIKE %s"


def run_end_of_day(
    conn_for: Callable[[str], psycopg.Connection[Any]],
    cities: Sequence[str],
    shared: bool,
    stamp: dt.datetime,
) -> tuple[float, int]:
    """One UPDATE of every deposit account per city, each in a transaction of its own.

    `shared`: one database holds every city (native), so each statement picks the city's
    accounts by their id prefix; a syncd city database holds only its own. Returns (seconds
    from the first statement to the last commit, rows updated).
    """
    rows = 0
    watch = Stopwatch()
    with watch:
        for city in cities:
            conn = conn_for(city)
            if shared:
                cur = conn.execute(END_OF_DAY_LIKE, (stamp, f"D{city}%"))
            else:
                cur = conn.execute(END_OF_DAY, (stamp,))
            rows += cur.rowcount
            conn.commit()
    return watch.seconds, rows


def wait_posted(
    conn: psycopg.Connection[Any], stamp: dt.datetime, rows: int, timeout: float
) -> float:
    """Wait until the hub's deposit accounts carry the posting's stamp; the monotonic time then."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM deposit_accounts WHERE updated_at = %s"
    while True:
        row = conn.execute(query, (stamp,)).fetchone()
        if row is not None and row[0] >= rows:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"hub holds {row[0] if row else 0} of {rows} posted accounts")
        time.sleep(0.05)


# --- native logical replication -----------------------------------------------------------


def _condition_sql(cond: Condition) -> sql.Composable:
    col = sql.Identifier(cond.column)
    ops = {
        FilterOp.EQ: "=", FilterOp.NE: "<>", FilterOp.LT: "<",
        FilterOp.LE: "<=", FilterOp.GT: ">", FilterOp.GE: ">=",
    }  # fmt: skip
    if cond.op in ops:
        return sql.SQL("({} {} {})").format(col, sql.SQL(ops[cond.op]), sql.Literal(cond.value))
    if cond.op is FilterOp.IS_NULL:
        return sql.SQL("({} IS NULL)").format(col)
    if cond.op is FilterOp.NOT_NULL:
        return sql.SQL("({} IS NOT NULL)").format(col)
    values = sql.SQL(", ").join(sql.Literal(v) for v in cond.values or ())
    neg = "NOT " if cond.op is FilterOp.NOT_IN else ""
    return sql.SQL("({} {}IN ({}))").format(col, sql.SQL(neg), values)


def publication_sql(policy: Policy) -> sql.Composable:
    """The policy as a PG 15 publication: column lists without excluded columns, row filters."""
    parts = []
    for name in PUBLIC_TABLES:
        table = policy.tables[name]
        part = sql.SQL("{} ({})").format(
            sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, table.public_columns))
        )
        if table.filter:
            where = sql.SQL(" AND ").join(_condition_sql(c) for c in table.filter)
            part = part + sql.SQL(" WHERE (") + where + sql.SQL(")")
        parts.append(part)
    return sql.SQL("CREATE PUBLICATION bench_pub FOR TABLE ") + sql.SQL(", ").join(parts)


def native_setup(city: PgCluster, policy: Policy) -> str:
    """Replica identity and publication on the native city database; returns the publication."""
    with psycopg.connect(city.url("native"), autocommit=True) as conn:
        conn.execute(
            "CREATE UNIQUE INDEX customers_replica_identity ON customers (customer_id, status)"
        )
        conn.execute(
            "ALTER TABLE customers REPLICA IDENTITY USING INDEX customers_replica_identity"
        )
        publication = publication_sql(policy)
        conn.execute(publication)
        return publication.as_string(conn)


def native_initial_sync(
    city: PgCluster, hub: PgCluster, policy: Policy, expected: dict[str, int], timeout: float
) -> dict[str, Any]:
    """Create the subscription; time until every table is 'r' and every count matches."""
    url = hub.create_database("native_hub")
    create_tables(url, [public_table(policy, t) for t in PUBLIC_TABLES])
    conninfo = f"host=127.0.0.1 port={city.port} dbname=native user=postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute(
            sql.SQL("CREATE SUBSCRIPTION bench_sub CONNECTION {} PUBLICATION bench_pub").format(
                sql.Literal(conninfo)
            )
        )
        deadline = started + timeout
        while True:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE srsubstate = 'r') FROM pg_subscription_rel"
            ).fetchone()
            if row and row[0] == len(PUBLIC_TABLES) and row[1] == row[0]:
                got = count_rows(url, PUBLIC_TABLES)
                if got == expected:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("native initial sync did not finish")
            time.sleep(0.1)
        seconds = time.monotonic() - started
    return {"seconds": seconds, "counts": got}


def native_check(conn: psycopg.Connection[Any]) -> Callable[[str, str, str], bool]:
    def check(_city: str, customer_id: str, phone: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM customers WHERE customer_id = %s AND phone = %s", (customer_id, phone)
        ).fetchone()
        return row is not None

    return check


def syncd_check(conn: psycopg.Connection[Any]) -> Callable[[str, str, str], bool]:
    def check(city: str, customer_id: str, phone: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM src_customers WHERE origin_node = %s AND customer_id = %s"
            " AND phone = %s",
            (node_id(city), customer_id, phone),
        ).fetchone()
        return row is not None

    return check


# --- phases -------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    spec: DataSpec
    policy: Policy
    city: PgCluster
    hub: PgCluster
    root: Path
    plan: Plan
    results: dict[str, Any]

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    @property
    def expected(self) -> dict[str, int]:
        return self.spec.counts(public=True)

    @property
    def total(self) -> int:
        return sum(self.expected.values())

    def city_url(self, city: str) -> str:
        return self.city.url(f"city_{city}")

    def fill(self) -> None:
        watch = Stopwatch()
        with watch:
            fill_city(self.city.url("native"), self.spec, self.spec.cities)
            # Before any publication: the no-replication baseline for write overhead.
            self.city.create_database("plain", template="native")
            for c in self.spec.cities:
                self.city.create_database(f"city_{c}")
                fill_city(self.city_url(c), self.spec, [c])
        self.say(f"filled the city cluster in {watch.seconds:.0f} s")

    def copy_limit(self) -> None:
        url = self.hub.create_database("copy_limit")
        tables = [public_table(self.policy, t) for t in PUBLIC_TABLES]
        create_tables(url, tables)
        watch = Stopwatch()
        rows = 0
        with psycopg.connect(url) as conn:
            for t in tables:
                columns = [c.name for c in t.columns]
                public = (
                    r
                    for c in self.spec.cities
                    for name, r in self.spec.rows(c, [t.name])
                    if name == t.name and not (t.name == "customers" and r["status"] == "prospect")
                )
                payload = list(copy_chunks(public, columns))  # rendered first: time COPY only
                with watch:
                    copy_into(conn, t.name, columns, payload)
                    conn.commit()
            rows = sum(count_rows(url, PUBLIC_TABLES).values())
        with psycopg.connect(self.hub.url(), autocommit=True) as conn:
            conn.execute("DROP DATABASE copy_limit")
        self.results["initial_load"]["copy"] = {
            "rows": rows,
            "seconds": watch.seconds,
            "rows_per_s": rate(rows, watch.seconds),
        }
        self.say(f"raw COPY: {rows:,} rows in {watch.seconds:.1f} s")

    def native(self) -> None:
        self.results["config"]["publication"] = native_setup(self.city, self.policy)
        self.say("native: initial sync")
        init = native_initial_sync(
            self.city, self.hub, self.policy, self.expected, self.args.timeout
        )
        self.results["initial_load"]["native"] = {
            "rows": self.total,
            "seconds": init["seconds"],
            "rows_per_s": rate(self.total, init["seconds"]),
        }
        self.say(f"native: initial sync {init['seconds']:.1f} s; incremental")
        with (
            psycopg.connect(self.city.url("native")) as conn,
            psycopg.connect(self.hub.url("native_hub"), autocommit=True) as hconn,
        ):
            check = native_check(hconn)
            write_s, last, started = run_updates(lambda _c: conn, self.plan, "N")
            done = wait_visible(check, last, self.args.timeout)
            self.results["incremental"]["native"] = self._incremental(write_s, started, done)
            self.results["write_overhead"]["native_publication"] = self._writes(write_s)
            self.say(f"native: latency, {self.args.samples} samples")
            self.results["latency"]["native"] = self._latency(conn, check, "3301", "NL")
            self.say("native: end of day")
            self.results["end_of_day"]["native"] = self._end_of_day(
                lambda _c: conn, True, hconn, day=1
            )
        with psycopg.connect(self.hub.url("native_hub"), autocommit=True) as conn:
            conn.execute("ALTER SUBSCRIPTION bench_sub DISABLE")  # quiet during syncd's turn

    def syncd(self) -> None:
        hub_url = self.hub.create_database("syncd_hub")
        cities = {node_id(c): self.city_url(c) for c in self.spec.cities}
        nodes = setup_nodes(self.root, hub_url, cities)  # init after the fill
        daemons: dict[str, SyncdProcess] = {}
        snapshots: dict[str, SyncdProcess] = {}
        try:
            daemons["hub"] = nodes.daemon("hub")
            for n in cities:
                daemons[n] = nodes.daemon(n)
            self.say("syncd: snapshot + apply")
            started = time.monotonic()
            snapshots = {n: nodes.command(n, "snapshot", "--json") for n in cities}
            codes = wait_all(list(snapshots.values()), self.args.timeout)
            for (n, proc), code in zip(snapshots.items(), codes, strict=True):
                if code != 0:
                    raise RuntimeError(f"syncd snapshot of {n} failed; see {proc.log}")
            targets = {n: changelog_high(url) for n, url in cities.items()}
            done = wait_applied(hub_url, targets, self.args.timeout)
            seconds = done - started
            got = count_rows(hub_url, [HUB_NAMES.get(t, t) for t in PUBLIC_TABLES], "NOT _deleted")
            self.results["initial_load"]["syncd"] = {
                "rows": self.total,
                "seconds": seconds,
                "rows_per_s": rate(self.total, seconds),
                "counts": got,
            }
            self.say(f"syncd: initial load {seconds:.1f} s; incremental")
            with contextlib.ExitStack() as stack:
                hconn = stack.enter_context(psycopg.connect(hub_url, autocommit=True))
                check = syncd_check(hconn)
                conns = {
                    c: stack.enter_context(psycopg.connect(self.city_url(c)))
                    for c in self.spec.cities
                }
                write_s, last, started = run_updates(conns.__getitem__, self.plan, "S")
                done = wait_visible(check, last, self.args.timeout)
                self.results["incremental"]["syncd"] = self._incremental(write_s, started, done)
                self.results["write_overhead"]["syncd_capture"] = self._writes(write_s)
                self.say(f"syncd: latency, {self.args.samples} samples")
                self.results["latency"]["syncd"] = self._latency(conns["3301"], check, "3301", "SL")
                self.say("syncd: end of day")
                self.results["end_of_day"]["syncd"] = self._end_of_day(
                    conns.__getitem__, False, hconn, day=2
                )
        finally:
            nodes.stop_all()
        self.results["rss_mb"] = {
            "hub_daemon": daemons["hub"].peak_rss_mb if "hub" in daemons else None,
            "city_daemons": {n: p.peak_rss_mb for n, p in daemons.items() if n != "hub"},
            "snapshot": {n: p.peak_rss_mb for n, p in snapshots.items()},
        }

    def overhead_baselines(self) -> None:
        self.say("write overhead: no replication; capture with the syncd daemons stopped")
        with psycopg.connect(self.city.url("plain")) as conn:
            write_s, _, _ = run_updates(lambda _c: conn, self.plan, "P")
        self.results["write_overhead"]["none"] = self._writes(write_s)
        with contextlib.ExitStack() as stack:
            conns = {
                c: stack.enter_context(psycopg.connect(self.city_url(c))) for c in self.spec.cities
            }
            write_s, _, _ = run_updates(conns.__getitem__, self.plan, "T")
        self.results["write_overhead"]["syncd_capture_daemons_stopped"] = self._writes(write_s)

    def _rows(self) -> int:
        return sum(len(ids) for _, ids in self.plan)

    def _incremental(self, write_s: float, started: float, done: float) -> dict[str, float]:
        total = done - started
        return {
            "rows": self._rows(),
            "transactions": len(self.plan),
            "write_seconds": write_s,
            "caught_up_seconds": total,
            "lag_after_writes_seconds": total - write_s,
            "rows_per_s": rate(self._rows(), total),
        }

    def _end_of_day(
        self,
        conn_for: Callable[[str], psycopg.Connection[Any]],
        shared: bool,
        hub: psycopg.Connection[Any],
        day: int,
    ) -> dict[str, float]:
        """The posting in every city; seconds from the last commit until the hub has it all."""
        stamp = dt.datetime(2030, 1, day, 18, 0, 0)
        write_s, rows = run_end_of_day(conn_for, self.spec.cities, shared, stamp)
        committed = time.monotonic()
        done = wait_posted(hub, stamp, rows, self.args.timeout)
        after = done - committed
        self.say(f"end of day: {rows:,} accounts, written in {write_s:.1f} s, at the hub "
                 f"{after:.1f} s after the last commit")  # fmt: skip
        return {
            "rows": rows,
            "transactions": len(self.spec.cities),
            "write_seconds": write_s,
            "after_last_commit_seconds": after,
            "rows_per_s": rate(rows, after),
        }

    def _writes(self, write_s: float) -> dict[str, float]:
        return {"rows": self._rows(), "seconds": write_s, "rows_per_s": rate(self._rows(), write_s)}

    def _latency(
        self,
        conn: psycopg.Connection[Any],
        check: Callable[[str, str, str], bool],
        city: str,
        tag: str,
    ) -> dict[str, float]:
        ids = iter_ids(self.spec, city)
        current: dict[str, str] = {}

        def write(value: str) -> None:
            current["id"] = next(ids)
            conn.execute(
                UPDATE, (value, 3, dt.datetime.now(dt.UTC).replace(tzinfo=None), current["id"])
            )
            conn.commit()

        def visible(value: str) -> bool:
            return check(city, current["id"], value)

        ms = measure_latency(write, visible, self.args.samples, tag=tag, timeout=60)
        return latency_summary(ms)


def iter_ids(spec: DataSpec, city: str) -> Iterator[str]:
    for c, j in spec.update_targets(seed=5):
        if c == city:
            yield spec.customer_id(c, j)


# --- report -------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> None:
    init = results["initial_load"]
    copy_rate = init.get("copy", {}).get("rows_per_s", float("nan"))

    def load_row(label: str, key: str) -> list[Any]:
        r = init.get(key, {})
        rps = r.get("rows_per_s", float("nan"))
        return [label, r.get("rows"), r.get("seconds"), rps, rps / copy_rate]

    print()
    print("initial load (hub rows: customers without prospects, and every child)")
    print_table(
        ["method", "rows", "seconds", "rows/s", "x COPY"],
        [
            load_row("raw COPY into the hub (limit)", "copy"),
            load_row("native logical replication", "native"),
            load_row("syncd snapshot + apply", "syncd"),
        ],
    )
    inc = results["incremental"]
    print()
    print("incremental (updates in transactions of 100 rows; replication running)")
    print_table(
        ["method", "rows", "write s", "caught up s", "lag after writes s", "rows/s"],
        [
            [
                label,
                inc.get(k, {}).get("rows"),
                inc.get(k, {}).get("write_seconds"),
                inc.get(k, {}).get("caught_up_seconds"),
                inc.get(k, {}).get("lag_after_writes_seconds"),
                inc.get(k, {}).get("rows_per_s"),
            ]
            for label, k in (("native", "native"), ("syncd", "syncd"))
        ],
    )
    eod = results["end_of_day"]
    native_eod = eod.get("native", {}).get("rows_per_s", float("nan"))
    print()
    print("end of day (one UPDATE of every deposit account per city, a transaction each)")
    print_table(
        ["method", "rows", "write s", "at hub s after last commit", "rows/s", "x native"],
        [
            [
                label,
                eod.get(k, {}).get("rows"),
                eod.get(k, {}).get("write_seconds"),
                eod.get(k, {}).get("after_last_commit_seconds"),
                eod.get(k, {}).get("rows_per_s"),
                eod.get(k, {}).get("rows_per_s", float("nan")) / native_eod,
            ]
            for label, k in (("native", "native"), ("syncd", "syncd"))
        ],
    )
    lat = results["latency"]
    print()
    print("latency: single-row commit at the city -> visible at the hub")
    print_table(
        ["method", "samples", "p50 ms", "p99 ms", "max ms"],
        [
            [k, lat.get(k, {}).get("samples"), lat.get(k, {}).get("p50_ms"),
             lat.get(k, {}).get("p99_ms"), lat.get(k, {}).get("max_ms")]
            for k in ("native", "syncd")
        ],
    )  # fmt: skip
    wo = results["write_overhead"]
    base = wo.get("none", {}).get("rows_per_s", float("nan"))
    print()
    print("city write overhead: the same update load")
    print_table(
        ["city side", "seconds", "rows/s", "x none"],
        [
            [label, wo.get(k, {}).get("seconds"), wo.get(k, {}).get("rows_per_s"),
             wo.get(k, {}).get("rows_per_s", float("nan")) / base]
            for label, k in (
                ("no replication", "none"),
                ("native publication, subscriber live", "native_publication"),
                ("syncd capture, daemons live", "syncd_capture"),
                ("syncd capture, daemons stopped", "syncd_capture_daemons_stopped"),
            )
        ],
    )  # fmt: skip
    rss = results.get("rss_mb", {})
    print()
    print("syncd peak RSS (MB): hub daemon {}, city daemons {}, snapshot {}".format(
        _mb(rss.get("hub_daemon")), _mb_map(rss.get("city_daemons")), _mb_map(rss.get("snapshot"))
    ))  # fmt: skip
    cfg = results["config"]
    print(f"native: {cfg['native_layout']}; {cfg['replica_identity']}")
    print(f"syncd: {cfg['syncd_layout']}; clusters: {cfg['clusters']}")


def _clean(obj: Any) -> Any:
    """JSON without NaN (a figure that could not be measured becomes null)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _mb_map(m: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {_mb(v)}" for k, v in (m or {}).items()) or "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, help="customers in all cities (default 1000000)")
    parser.add_argument("--transactions", type=int, help="update transactions (default 2000)")
    parser.add_argument("--tx-rows", type=int, default=100, help="updates per transaction")
    parser.add_argument("--samples", type=int, help="latency samples per method (default 200)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: small sizes (CI)")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds to wait per phase")
    parser.add_argument("--out", type=Path, default=HERE / "results.json", help="JSON results file")
    args = parser.parse_args(argv)
    clean_exit_on_sigterm()
    quick = {"customers": 6000, "transactions": 30, "samples": 8}
    full = {"customers": 1_000_000, "transactions": 2000, "samples": 200}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    spec = DataSpec(customers=args.customers, prospects=0.02)
    results: dict[str, Any] = {
        "config": {
            "customers": args.customers,
            "cities": list(spec.cities),
            "shared_identities": spec.shared,
            "prospects": spec.prospects,
            "updates": args.transactions * args.tx_rows,
            "transactions": args.transactions,
            "latency_samples": args.samples,
            "quick": args.quick,
            "clusters": "private PostgreSQL 15 clusters, fsync=off, shared_buffers=256MB",
            "native_layout": NATIVE_LAYOUT,
            "syncd_layout": SYNCD_LAYOUT,
            "replica_identity": REPLICA_IDENTITY,
        },
        "initial_load": {},
        "incremental": {},
        "end_of_day": {},
        "latency": {},
        "write_overhead": {},
        "rss_mb": {},
    }
    print(f"compare: {args.customers:,} customers in {len(spec.cities)} cities "
          f"({spec.shared:.0%} shared identities) with children; "
          f"{args.transactions * args.tx_rows:,} updates in {args.transactions:,} transactions; "
          f"{args.samples} latency samples")  # fmt: skip
    from syncd.core import logs

    logs.configure("console", "warning")
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-compare-") as tmp,
        pg_clusters({"city": CITY_PG, "hub": COMMON_PG}) as clusters,
    ):
        city = clusters["city"]
        city.create_database("native")
        run = Run(
            args, spec, load_policy(HERE.parent / "schemas" / "crm.yaml"), city, clusters["hub"],
            Path(tmp), make_plan(spec, args.transactions, args.tx_rows, seed=17), results,
        )  # fmt: skip
        run.fill()
        run.copy_limit()
        run.native()
        run.syncd()
        run.overhead_baselines()
    results["seconds"] = time.monotonic() - started
    report(results)
    args.out.write_text(json.dumps(_clean(results), indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} ({results['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
