"""Hub apply throughput on PostgreSQL: raw COPY (the limit) vs. syncd submit + apply.

In one run, on a scratch database of the shared server (created and dropped here):

1. raw COPY of N customer rows (public columns) into a plain table with the same columns and
   primary key: the physical limit of getting these rows into this server;
2. syncd: the same N rows as batches from 3 cities (30 % of identities in every city), shaped
   as the city capture produces them (strings, decimals as strings, ISO timestamps), submitted
   through `HubInbox.submit` with each city's own credentials, then `apply_pending` until
   nothing is pending: source records, golden records, audit chain;
3. `--updates` changes of existing customers (a new phone), submitted and applied the same way.

Submission and apply are timed separately; "together" is their sum (what one city-to-hub
pass costs when they do not overlap). Building batches (canonical JSON + checksum, city-side
work) is timed apart and excluded. Prints figures; asserts nothing.

    .venv/bin/python bench/apply.py [--rows 1000000] [--updates 200000] [--batch-rows 5000]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from common import (
    AS_OF,
    PG_ADMIN,
    DataSpec,
    Stopwatch,
    clean_exit_on_sigterm,
    copy_chunks,
    copy_into,
    create_tables,
    node_id,
    print_table,
    public_table,
    rate,
    scratch_databases,
    verdict,
    write_config,
)

from syncd.app import init_node
from syncd.core import logs
from syncd.core.agreement import Stamp, stamp
from syncd.core.batch import UPSERT, Batch, Change, SubmitStatus, coalesce, make_batch
from syncd.core.policy import Policy, Table
from syncd.core.settings import load_settings
from syncd.daemon.scheduler import tune_gc
from syncd.hub.apply import apply_pending
from syncd.hub.inbox import HubInbox
from syncd.hub.nodes import register_node
from syncd.store import hub_tables as h
from syncd.store.db import create_engine

GOAL = 0.15  # issue 13: initial load >= 0.15x raw COPY (stretch 0.25x)


def plain_copy(url: str, spec: DataSpec, policy: Policy) -> tuple[int, float]:
    """COPY the customers' public columns into a plain table: (rows, seconds of COPY alone)."""
    plain = public_table(policy, "customers", "bench_copy_customers")
    create_tables(url, [plain])
    columns = [c.name for c in plain.columns]
    rows = (spec.customer(c, j) for c in spec.cities for j in range(spec.per_city(c)))
    payload = list(copy_chunks(rows, columns))  # rendered beforehand: time the server only
    with psycopg.connect(url) as conn:
        watch = Stopwatch()
        with watch:
            copy_into(conn, plain.name, columns, payload)
            conn.commit()
        count = conn.execute("SELECT count(*) FROM bench_copy_customers").fetchone()
        conn.execute("DROP TABLE bench_copy_customers")
        conn.commit()
    return int(count[0]) if count else 0, watch.seconds


# What a JSON value of the payload becomes in a typed column, per policy type (PostgreSQL).
_CASTS = {
    "integer": "({v})::bigint",
    "decimal": "({v})::numeric",
    "boolean": "({v})::boolean",
    "date": "({v})::date",
    "timestamp": "(({v})::timestamptz AT TIME ZONE 'UTC')",
}
FLOOR_STEPS = ("stage", "sources", "goldens", "audit")


def _typed(table: Table, column: str) -> str:
    kind = table.columns[column].type.value
    if kind == "list":
        return f"e.r -> 'row' -> '{column}'"
    return _CASTS.get(kind, "{v}").format(v=f"e.r -> 'row' ->> '{column}'")


def sql_floor(engine: sa.Engine, policy: Policy, batch_ids: list[int]) -> list[float]:
    """Seconds for the writes of the typed design (issue 13), as bare set-based SQL.

    Per batch, in one transaction each, from the stored payloads of the same first load:
    stage the payload's rows typed, with a hash of each row, into a temporary table (stage);
    upsert the source records, newer sequences only (sources); upsert one golden record per
    identity the batch touched, newest `updated_at` wins, the cheapest rule (goldens); keep one
    row-outcome row per change and one audit row per batch committing to the ordered row hashes
    (audit). No validation, no ID-number checks, no conflict queue, no hash chain, no Python:
    a lower bound on the cost of any apply of this design, hence an upper bound on its speed.
    """
    table = policy.tables["customers"]
    cols = list(table.public_columns)
    pk = ", ".join([h.ORIGIN, *table.primary_key])
    ident = ", ".join(table.identity)
    merged = [c for c in table.data_columns if c not in table.identity]
    data = [c for c in cols if c not in table.primary_key]
    statements = [
        f"""CREATE TEMP TABLE floor_stage ON COMMIT DROP AS
            SELECT b.node_id AS {h.ORIGIN}, e.ord, (e.r ->> 'seq')::bigint AS _seq,
                   {", ".join(f"{_typed(table, c)} AS {c}" for c in cols)},
                   sha256(convert_to((e.r -> 'row')::text, 'UTF8')) AS row_hash
              FROM syncd_inbox_batch b
             CROSS JOIN LATERAL jsonb_array_elements(b.payload::jsonb) WITH ORDINALITY AS e(r, ord)
             WHERE b.batch_id = :b AND e.r ->> 'table' = 'customers'""",
        f"""INSERT INTO floor_src ({h.ORIGIN}, {", ".join(cols)}, _seq, _deleted, _batch_id,
                                  _applied_at)
            SELECT {h.ORIGIN}, {", ".join(cols)}, _seq, false, :b, now() AT TIME ZONE 'UTC'
              FROM floor_stage
            ON CONFLICT ({pk}) DO UPDATE SET
                {", ".join(f"{c} = excluded.{c}" for c in [*data, "_seq", "_batch_id"])}
             WHERE floor_src._seq < excluded._seq""",
        f"""INSERT INTO floor_golden ({ident}, {", ".join(merged)}, _sources, _deleted,
                                     _updated_at)
            SELECT DISTINCT ON ({ident}) {ident}, {", ".join(merged)}, 1, false,
                   now() AT TIME ZONE 'UTC'
              FROM floor_src s
             WHERE ({ident}) IN (SELECT {ident} FROM floor_stage)
             ORDER BY {ident}, updated_at DESC, {h.ORIGIN} DESC
            ON CONFLICT ({ident}) DO UPDATE SET
                {", ".join(f"{c} = excluded.{c}" for c in merged)}""",
        """WITH o AS (
               INSERT INTO floor_outcome (batch_id, ord, outcome, row_hash)
               SELECT :b, ord, 'applied', row_hash FROM floor_stage
               RETURNING ord, row_hash)
           INSERT INTO floor_audit (entry_id, at, action, node_id, batch_id, table_name,
                                    row_key, detail, prev_hash, entry_hash)
           SELECT :b, now() AT TIME ZONE 'UTC', 'rows_applied', NULL, :b, 'customers', NULL,
                  json_build_object('rows', count(*),
                      'rows_hash', encode(sha256(string_agg(row_hash, '' ORDER BY ord)), 'hex')
                  )::text, '', ''
             FROM o""",
    ]
    with engine.begin() as conn:
        for name, like in (
            ("floor_src", "src_customers"),
            ("floor_golden", "customers"),
            ("floor_audit", "syncd_audit"),
        ):
            conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE {like} INCLUDING ALL)")
        conn.exec_driver_sql(
            "CREATE TABLE floor_outcome (batch_id bigint, ord bigint, outcome text, "
            "row_hash bytea, PRIMARY KEY (batch_id, ord))"
        )
    watches = [Stopwatch() for _ in statements]
    for batch_id in batch_ids:
        with engine.begin() as conn:
            for stmt, watch in zip(statements, watches, strict=True):
                with watch:
                    conn.execute(sa.text(stmt), {"b": batch_id})
    with engine.begin() as conn:
        for name in ("floor_src", "floor_golden", "floor_audit", "floor_outcome"):
            conn.exec_driver_sql(f"DROP TABLE {name}")
    return [w.seconds for w in watches]


def city_changes(spec: DataSpec, table: Table, city: str) -> Iterator[Change]:
    """The first load of one city: an upsert per customer, as push would cut it."""
    public = table.public_columns
    for j in range(spec.per_city(city)):
        row = spec.customer(city, j)
        yield Change(
            j + 1,
            "customers",
            UPSERT,
            {"customer_id": row["customer_id"]},
            {c: row[c] for c in public},
        )


def update_changes(
    spec: DataSpec, table: Table, targets: list[tuple[int, int]], city: str, first_seq: int
) -> Iterator[Change]:
    """Phone changes of one city's customers (n, j), as full row images after its first load."""
    public = table.public_columns
    for seq, (n, j) in enumerate(targets, start=first_seq + 1):
        row = spec.customer(city, j)
        row["phone"] = f"U{n:010d}"
        row["updated_at"] = AS_OF.replace(year=2027).isoformat()
        yield Change(
            seq,
            "customers",
            UPSERT,
            {"customer_id": row["customer_id"]},
            {c: row[c] for c in public},
        )


def batches(
    city: str, changes: Iterator[Change], size: int, build: Stopwatch, sender: Stamp
) -> Iterator[Batch]:
    while True:
        chunk = list(itertools.islice(changes, size))
        if not chunk:
            return
        with build:
            # As push does: only the last change of a row in one batch travels.
            batch = make_batch(node_id(city), chunk[0].seq, chunk[-1].seq, coalesce(chunk), sender)
        yield batch


def submit_all(
    inboxes: dict[str, HubInbox], streams: dict[str, Iterator[Batch]], submit: Stopwatch
) -> tuple[int, int]:
    """Submit the cities' batches round-robin; (batches, rows). Only submit() is timed."""
    n_batches = n_rows = 0
    for group in itertools.zip_longest(*streams.values()):
        for city, batch in zip(streams, group, strict=True):
            if batch is None:
                continue
            with submit:
                result = inboxes[city].submit(batch)
            if result.status != SubmitStatus.ACCEPTED:
                raise RuntimeError(f"batch of {city} was {result.status}: {result.reason}")
            n_batches += 1
            n_rows += batch.row_count
    return n_batches, n_rows


def apply_all(
    engine: sa.Engine, policy: Policy, watch: Stopwatch, profile: Path | None = None
) -> dict[str, int]:
    tune_gc()  # as the hub daemon runs
    totals: dict[str, int] = {}
    profiler = cProfile.Profile() if profile is not None else None
    while True:
        with watch:
            if profiler is not None:
                profiler.enable()
            summary = apply_pending(engine, policy)
            if profiler is not None:
                profiler.disable()
        for k in ("batches", "rows", "applied", "stale", "quarantined", "refused"):
            totals[k] = totals.get(k, 0) + int(getattr(summary, k))
        if summary.batches == 0 and summary.waiting == 0:
            if profiler is not None and profile is not None:
                profiler.dump_stats(profile)
                print(f"apply profile written to {profile} (read it with python -m pstats)")
            return totals


def run(args: argparse.Namespace, url: str) -> None:
    spec = DataSpec(customers=args.rows)
    logs.configure("console", "warning")
    with tempfile.TemporaryDirectory(prefix="syncd-bench-apply-") as tmp:
        conf = write_config(Path(tmp) / "hub.toml", "hub-33", "hub", url)
        settings = load_settings(conf)
    init_node(settings)
    from syncd.core.policy import load_policy

    policy = load_policy(settings.policy.path)
    table = policy.tables["customers"]

    print(f"raw COPY of {args.rows:,} customer rows into a plain table (same columns, primary key)")
    copied, copy_s = plain_copy(url, spec, policy)
    copy_rate = rate(copied, copy_s)

    engine = create_engine(settings.database.url)
    inboxes: dict[str, HubInbox] = {}
    try:
        for city in spec.cities:
            creds = register_node(engine, settings.database.url, node_id(city), city)
            inboxes[city] = HubInbox(creds.hub_url, node_id(city))
        print(
            f"syncd: {len(spec.cities)} cities, batches of {args.batch_rows:,} rows, "
            f"{spec.shared:.0%} of identities in every city"
        )
        build, submit, apply = Stopwatch(), Stopwatch(), Stopwatch()
        streams = {
            c: batches(c, city_changes(spec, table, c), args.batch_rows, build, stamp(policy))
            for c in spec.cities
        }
        n_batches, n_rows = submit_all(inboxes, streams, submit)
        load = apply_all(engine, policy, apply, args.profile)
        with engine.connect() as conn:
            first_batches = [
                int(b) for b in conn.scalars(sa.text("SELECT batch_id FROM syncd_inbox_batch"))
            ]
        floor = sql_floor(engine, policy, sorted(first_batches))
        with engine.connect() as conn:
            sources = conn.execute(sa.text("SELECT count(*) FROM src_customers")).scalar_one()
            goldens = conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one()

        u_build, u_submit, u_apply = Stopwatch(), Stopwatch(), Stopwatch()
        targets: dict[str, list[tuple[int, int]]] = {c: [] for c in spec.cities}
        picks = itertools.islice(spec.update_targets(seed=11), args.updates)
        for n, (city, j) in enumerate(picks):
            targets[city].append((n, j))
        u_streams = {
            c: batches(
                c,
                update_changes(spec, table, targets[c], c, spec.per_city(c)),
                args.batch_rows,
                u_build,
                stamp(policy),
            )
            for c in spec.cities
        }
        u_batches, u_rows = submit_all(inboxes, u_streams, u_submit)
        updates = apply_all(engine, policy, u_apply)
    finally:
        for inbox in inboxes.values():
            inbox.close()
        engine.dispose()

    def line(label: str, rows: int, seconds: float) -> list[Any]:
        r = rate(rows, seconds)
        return [label, rows, seconds, r, r / copy_rate]

    print()
    print_table(
        ["phase", "rows", "seconds", "rows/s", "x COPY"],
        [
            line("raw COPY (the limit)", copied, copy_s),
            line("first load: submit", n_rows, submit.seconds),
            line("first load: apply", n_rows, apply.seconds),
            line("first load: submit + apply", n_rows, submit.seconds + apply.seconds),
            line("first load: set-based SQL floor", n_rows, sum(floor)),
            line("updates: submit", u_rows, u_submit.seconds),
            line("updates: apply", u_rows, u_apply.seconds),
            line("updates: submit + apply", u_rows, u_submit.seconds + u_apply.seconds),
        ],
    )
    print()
    print(
        f"first load: {n_batches:,} batches, applied {load.get('applied', 0):,}, "
        f"quarantined {load.get('quarantined', 0):,}, stale {load.get('stale', 0):,}; "
        f"hub holds {sources:,} source records and {goldens:,} golden records"
    )
    print(
        f"updates: {args.updates:,} changes, {u_rows:,} after coalescing within batches; "
        f"{u_batches:,} batches, applied {updates.get('applied', 0):,}, "
        f"stale {updates.get('stale', 0):,}"
    )
    print(
        f"city-side batch building (canonical JSON + checksum, not counted above): "
        f"{build.seconds + u_build.seconds:.1f} s"
    )
    ratio = rate(n_rows, apply.seconds) / copy_rate
    print(
        "set-based SQL floor: the same payloads written by bare SQL per batch (typed staging "
        "with row hashes, source upsert, newest-wins golden upsert, row outcomes and one audit "
        "row per batch; no validation): the most any apply of this design can reach on this "
        "server; seconds per statement: "
        + ", ".join(f"{n} {t:.2f}" for n, t in zip(FLOOR_STEPS, floor, strict=True))
    )
    print(
        f"apply / floor: {sum(floor) / apply.seconds:.3f} (goal >= 0.6); "
        f"floor {rate(n_rows, sum(floor)) / copy_rate:.3f}x COPY"
    )
    print(
        f"goal: apply >= {GOAL}x COPY on first load -> {ratio:.3f}x ({verdict(ratio >= GOAL)}); "
        f"submit + apply {rate(n_rows, submit.seconds + apply.seconds) / copy_rate:.3f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="customer rows (first load)")
    parser.add_argument("--updates", type=int, default=200_000, help="customer updates after it")
    parser.add_argument(
        "--batch-rows", type=int, default=5000, help="rows per batch (sync.batch_rows)"
    )
    parser.add_argument(
        "--profile", type=Path, help="write a cProfile of the first-load apply to this file"
    )
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="superuser URL of the server to use")
    args = parser.parse_args()
    clean_exit_on_sigterm()
    with scratch_databases(args.pg_admin, "apply") as dbs:
        run(args, dbs["apply"])


if __name__ == "__main__":
    main()
