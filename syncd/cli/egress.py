"""`syncd audit egress` at a city: what left it, batch by batch, and the statement to sign."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from syncd.cli.context import CsvOpt, JsonOpt, settings
from syncd.cli.render import call, err, usage
from syncd.cli.timezones import naive_utc, parse_time, zone
from syncd.core.canonical import canonical
from syncd.present.tables import to_jsonable

if TYPE_CHECKING:
    from syncd.city.egress import EgressReport

CSV_COLUMNS = (
    "first_seq",
    "last_seq",
    "hub_batch_id",
    "status",
    "sent_at",
    "acknowledged_at",
    "row_count",
    "covered",
    "checksum",
    "policy_fingerprint",
    "carried",
)


def egress(
    since: Annotated[
        str | None,
        typer.Option(help="ISO time, from (inclusive); no offset: [audit] timezone"),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="ISO time, until (exclusive); default now")
    ] = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file (default stdout)")
    ] = None,
) -> None:
    """City: the egress ledger and a summary to sign; exit 1 if anything local ever left."""
    from syncd.app import read_egress

    if as_json and as_csv:
        usage("--json and --csv: choose one")
    conf = settings()
    tz = zone(conf.audit.timezone)
    start = naive_utc(parse_time("--since", since, tz))
    end = naive_utc(parse_time("--until", until, tz))
    if start is not None and end is not None and end <= start:
        usage(f"--until {until!r} is not after --since {since!r}")
    report = call(lambda: read_egress(conf, start, end))
    with _opened(output) as fh:
        if as_json:
            _write_json(report, fh)
        elif as_csv:
            _write_csv(report, fh)
        else:
            _write_text(report, fh)
    for v in report.summary.violations:
        err.print(f"violation: {v.describe()}", markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@contextmanager
def _opened(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        return
    with output.open("w", encoding="utf-8", newline="") as fh:
        yield fh


def _write_json(report: EgressReport, fh: TextIO) -> None:
    s = report.summary
    doc = {
        "node_id": report.node_id,
        "since": report.since,
        "until": report.until,
        "policy": report.policy_path,
        "policy_fingerprint": report.policy_fingerprint,
        "ok": report.ok,
        "statement": report.statement,
        "digest": s.digest,
        "summary": {
            "batches": s.batches,
            "rows": s.rows,
            "acknowledged": s.acknowledged,
            "tables": s.tables,
            "rows_by_table": s.rows_by_table,
            "other_policies": [
                {"first_seq": a, "last_seq": b, "policy_fingerprint": fp}
                for a, b, fp in s.other_policies
            ],
            "unacknowledged": [
                {"first_seq": a, "last_seq": b, "status": st} for a, b, st in s.unacknowledged
            ],
        },
        "violations": [{**to_jsonable(v), "problem": v.describe()} for v in s.violations],
        # Exactly what `digest` hashes: SHA-256 of this list's canonical JSON.
        "batches": [e.record() for e in report.entries],
    }
    fh.write(json.dumps(to_jsonable(doc), ensure_ascii=False, indent=2) + "\n")


def _write_csv(report: EgressReport, fh: TextIO) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in report.entries:
        rec = e.record()
        writer.writerow(
            [canonical(rec[c]) if c == "carried" else _cell(rec[c]) for c in CSV_COLUMNS]
        )


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _write_text(report: EgressReport, fh: TextIO) -> None:
    s = report.summary
    lines = [f"egress ledger of {report.node_id}: {s.batches} batches, {s.rows} rows"]
    for e in report.entries:
        tables = ", ".join(
            f"{t} +{c['upsert']}/-{c['delete']}" for t, c in sorted(e.carried.items())
        )
        lines.append(
            f"  {e.sent_at.isoformat(sep=' ', timespec='seconds')}  seq {e.first_seq}-{e.last_seq}"
            f"  hub batch {e.hub_batch_id or '-'}  {e.status.value}  {e.row_count} rows"
            f"  {tables or '(no public change)'}"
        )
    lines.append("")
    for table, columns in s.tables.items():
        counts = s.rows_by_table[table]
        lines.append(
            f"{table}: {counts['upsert']} upserts, {counts['delete']} deletes; "
            f"columns: {', '.join(columns)}"
        )
    for a, b, fp in s.other_policies:
        lines.append(f"note: batch {a}-{b} was sent under another policy (fingerprint {fp})")
    for a, b, st in s.unacknowledged:
        lines.append(f"note: batch {a}-{b} is {st}: the hub did not acknowledge it")
    lines += ["", report.statement, f"ledger digest (SHA-256 of the period's rows): {s.digest}"]
    fh.write("\n".join(lines) + "\n")
