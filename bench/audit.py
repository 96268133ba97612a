"""The hub's audit writes: one chained entry per row decision (version 1) vs. one entry per
batch, table and outcome committing to its row decisions (version 2).

Writes N row decisions in B batches (a transaction and an `AuditWriter.flush` each, as the
hub's apply does), with details shaped like the hub's `row_applied` (op, seq, columns,
golden_id, disputed) over two tables, plus a `batch_applied` entry per batch; then runs
`audit verify` over the result. Each format gets a fresh log in a scratch database of the test
server (or a temp SQLite file). Prints rows/s of append, flush and verify; asserts nothing.

    .venv/bin/python bench/audit.py [--rows 60000] [--batches 12] [--db pg|sqlite]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import (
    PG_ADMIN,
    Stopwatch,
    clean_exit_on_sigterm,
    print_table,
    rate,
    sa_url,
    scratch_databases,
)

from syncd.hub.audit import Action, AuditWriter, install_append_only, verify
from syncd.store.db import create_engine
from syncd.store.hub_tables import audit, audit_rows

COLUMNS = ["name", "phone", "address", "balance", "updated_at", "risk_tags"]


def run(url: str, rows: int, batches: int, group_rows: bool) -> dict[str, float]:
    engine = create_engine(url)
    audit.create(engine)
    audit_rows.create(engine)
    with engine.begin() as conn:
        install_append_only(conn)
    append, flush, verify_watch = Stopwatch(), Stopwatch(), Stopwatch()
    per_batch = rows // batches
    try:
        for b in range(1, batches + 1):
            with engine.begin() as conn:
                writer = AuditWriter(conn, group_rows=group_rows)
                with append:
                    for i in range(per_batch):
                        table = "customers" if i % 2 else "deposits"
                        detail = {"op": "upsert", "seq": b * per_batch + i, "columns": COLUMNS}
                        if table == "customers":
                            detail |= {"golden_id": i, "disputed": []}
                        writer.append(
                            Action.ROW_APPLIED,
                            node_id=f"city-330{b % 3 + 1}",
                            batch_id=b,
                            table=table,
                            key={"customer_id": f"C{b:02d}{i:08d}"},
                            detail=detail,
                        )
                    writer.append(Action.BATCH_APPLIED, node_id="city-3301", batch_id=b)
                with flush:
                    writer.flush()
        with engine.connect() as conn, verify_watch:
            result = verify(conn)
        assert result.ok, result.reason
    finally:
        engine.dispose()
    total = per_batch * batches
    return {
        "append": rate(total, append.seconds),
        "flush": rate(total, flush.seconds),
        "flush_s": flush.seconds,
        "verify": rate(total, verify_watch.seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000, help="row decisions in all")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--db", choices=["pg", "sqlite"], default="pg")
    parser.add_argument("--pg-admin", default=PG_ADMIN)
    args = parser.parse_args()
    clean_exit_on_sigterm()
    results: dict[str, dict[str, float]] = {}
    for label, group_rows in (("v1", False), ("v2", True)):
        if args.db == "pg":
            with scratch_databases(args.pg_admin, f"audit_{label}") as dbs:
                results[label] = run(
                    sa_url(dbs[f"audit_{label}"]), args.rows, args.batches, group_rows
                )
        else:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{Path(tmp) / 'hub.db'}"
                results[label] = run(url, args.rows, args.batches, group_rows)
    names = {"v1": "one entry per row decision (v1)", "v2": "entry per batch/table/outcome (v2)"}
    print(f"{args.rows:,} row decisions in {args.batches} batches, {args.db}")
    print_table(
        ["format", "append rows/s", "flush rows/s", "flush s", "verify rows/s"],
        [
            (names[k], r["append"], r["flush"], r["flush_s"], r["verify"])
            for k, r in results.items()
        ],
    )
    print(f"flush speed-up: {results['v2']['flush'] / results['v1']['flush']:.1f}x")


if __name__ == "__main__":
    main()
