"""`syncd audit`: the sync history, its hash chain, and exports for auditors."""

from __future__ import annotations

import datetime as dt
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from syncd.cli.context import JsonOpt
from syncd.cli.hub import hub_settings, read
from syncd.cli.render import err, out, print_json, print_table, usage

if TYPE_CHECKING:
    from sqlalchemy import Connection

app = typer.Typer(help="Auditors: sync history and its proof.", no_args_is_help=True)


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


def since_option(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        usage(f"--since {value!r}: expected an ISO date or time, e.g. 2026-11-26T08:00")


@app.command("log")
def audit_log(
    node: Annotated[str | None, typer.Option(help="only this node")] = None,
    table: Annotated[str | None, typer.Option(help="only this table")] = None,
    key: Annotated[str | None, typer.Option(help="only this row key (canonical JSON)")] = None,
    action: Annotated[str | None, typer.Option(help="only this action")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many entries")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Sync history: every decision the hub made."""
    from syncd.hub import audit

    entries = read(
        lambda c: audit.query(
            c,
            node=node,
            table=table,
            key=key,
            action=action,
            since=since_option(since),
            limit=limit,
        )
    )
    if as_json:
        print_json(entries)
        return
    print_table(
        "audit log",
        ["id", "at", "action", "node", "batch", "table", "key", "detail"],
        [
            (
                e["entry_id"],
                e["at"],
                e["action"],
                e["node_id"],
                e["batch_id"],
                e["table_name"],
                e["row_key"],
                e["detail"],
            )
            for e in entries
        ],
    )


@app.command("verify")
def audit_verify(
    against: Annotated[
        str | None, typer.Option(help="an anchor printed earlier by `syncd audit head` (ID:HASH)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the hash chain; exit 1 naming the first broken entry."""
    from syncd.hub import audit

    res = read(lambda c: audit.verify(c, against=against))
    if as_json:
        print_json(res)
    elif res.ok:
        out.print(f"audit chain intact: {res.entries} entries, head {res.head_id}:{res.head_hash}")
    else:
        err.print(f"audit chain BROKEN at entry {res.broken_id}: {res.reason}", markup=False)
    if not res.ok:
        raise typer.Exit(1)


@app.command("head")
def audit_head(as_json: JsonOpt = False) -> None:
    """Print the chain head: keep it outside the database, verify --against it later."""
    from syncd.hub import audit

    entry_id, digest = read(audit.head)
    anchor = audit.format_anchor(entry_id, digest)
    if as_json:
        print_json({"entry_id": entry_id, "hash": digest, "anchor": anchor})
    else:
        out.print(anchor, markup=False, highlight=False)


@app.command("export")
def audit_export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or json")] = ExportFormat.CSV,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default stdout)")
    ] = None,
    node: Annotated[str | None, typer.Option()] = None,
    table: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Export the audit log (every column, hashes included) as CSV or JSON."""
    from syncd.hub import audit

    hub_settings()
    kind: Literal["csv", "json"] = "json" if fmt is ExportFormat.JSON else "csv"
    when = since_option(since)

    def go(conn: Connection) -> None:
        if output is None:
            audit.export(conn, sys.stdout, kind, node=node, table=table, action=action, since=when)
            return
        with output.open("w", encoding="utf-8", newline="") as fh:
            audit.export(conn, fh, kind, node=node, table=table, action=action, since=when)

    read(go)
