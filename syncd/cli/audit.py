"""`syncd audit`: the sync history, its hash chain, and exports for auditors."""

from __future__ import annotations

import datetime as dt
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from syncd.cli.context import JsonOpt
from syncd.cli.hub import hub_settings, read, read_node
from syncd.cli.render import call, err, out, print_json, print_table
from syncd.cli.timezones import shown, zone

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from syncd.app import Node

app = typer.Typer(help="Auditors: sync history and its proof.", no_args_is_help=True)


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


NodeOpt = Annotated[str | None, typer.Option(help="only this node")]
TableOpt = Annotated[str | None, typer.Option(help="only this table")]
KeyOpt = Annotated[str | None, typer.Option(help="only this row key (JSON)")]
IdNumberOpt = Annotated[
    str | None,
    typer.Option(
        "--id-number", help="every entry of the golden records with this ID number, all cities"
    ),
]
GoldenIdOpt = Annotated[
    int | None, typer.Option("--golden-id", help="every entry of this golden record")
]
ActionOpt = Annotated[str | None, typer.Option(help="only this action")]
BatchOpt = Annotated[int | None, typer.Option(help="only the entries of this inbox batch id")]
SinceOpt = Annotated[
    str | None, typer.Option(help="ISO date or time, inclusive (no offset: in --tz)")
]
UntilOpt = Annotated[
    str | None, typer.Option(help="ISO date or time, exclusive (no offset: in --tz)")
]
TzOpt = Annotated[
    str | None,
    typer.Option("--tz", help="IANA time zone to show and read times in (default: [audit])"),
]
BeforeOpt = Annotated[
    str | None,
    typer.Option(
        help="only lines older than this entry id, or ENTRY.ORD for a row decision (next page)"
    ),
]


def _zone(tz: str | None) -> dt.tzinfo:
    return zone(tz if tz is not None else hub_settings().audit.timezone)


def _more_notice(more: int, before: int | str | None, as_json: bool) -> None:
    """Say on stderr that older entries match too, and how to read them."""
    if not more or before is None:
        return
    if as_json:
        # stdout keeps its shape (a list of entries); a script reads the rest from here.
        sys.stderr.write(json.dumps({"more": more, "before": before}) + "\n")
        return
    err.print(
        f"{more} older matching entries not shown: add --before {before} for the next page,"
        " or raise --limit",
        markup=False,
        highlight=False,
    )


def _shown_entries(entries: list[dict[str, Any]], tz: dt.tzinfo) -> list[dict[str, Any]]:
    return [{**e, "at": shown(e["at"], tz)} for e in entries]


@app.command("log")
def audit_log(
    node: NodeOpt = None,
    table: TableOpt = None,
    key: KeyOpt = None,
    id_number: IdNumberOpt = None,
    golden_id: GoldenIdOpt = None,
    action: ActionOpt = None,
    batch: BatchOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    tz: TzOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many entries")] = 100,
    before: BeforeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sync history: every decision the hub made, newest last, times with their offset."""
    from syncd.hub import audit_query

    zone_ = _zone(tz)
    criteria = audit_query.Criteria(
        node, table, key, id_number, golden_id, action, since, until, batch
    )
    page = read_node(
        lambda n, c: audit_query.query_page(
            c, criteria.build(c, n.policy, zone_), limit=limit, before=before
        )
    )
    entries = _shown_entries(page.entries, zone_)
    if as_json:
        print_json(entries)
    else:
        print_table(
            "audit log",
            ["id", "at", "action", "node", "batch", "table", "key", "detail"],
            [
                (
                    e["entry_id"] if not e["ord"] else f"{e['entry_id']}.{e['ord']}",
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
    _more_notice(page.more, page.next_before, as_json)


def _verify_file(path: Path, against: str | None) -> Any:
    from syncd.hub.audit_file import verify_file

    return call(lambda: verify_file(path, against))


@app.command("verify")
def audit_verify(
    against: Annotated[
        str | None, typer.Option(help="an anchor printed earlier by `syncd audit head` (ID:HASH)")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="check this export (JSON Lines or CSV) offline: no config, no database"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the hash chain; exit 1 naming the first broken entry."""
    from syncd.hub import audit

    if file is not None:
        res = _verify_file(file, against)
    else:
        res = read(lambda c: audit.verify(c, against=against))
    if as_json:
        print_json(res)
    elif res.ok:
        start = f" (from entry {res.starts_after + 1})" if res.starts_after else ""
        rows = f", {res.rows} row decisions in them" if res.rows else ""
        out.print(
            f"audit chain intact: {res.entries} entries{start},"
            f" head {res.head_id}:{res.head_hash}{rows}",
            markup=False,
            highlight=False,
        )
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
    node: NodeOpt = None,
    table: TableOpt = None,
    key: KeyOpt = None,
    id_number: IdNumberOpt = None,
    golden_id: GoldenIdOpt = None,
    action: ActionOpt = None,
    batch: BatchOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    tz: TzOpt = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="only the newest this many (default: all)")
    ] = None,
    before: BeforeOpt = None,
) -> None:
    """Export the audit log (every column, hashes included, times in UTC) as CSV or JSON."""
    from syncd.hub import audit_query

    zone_ = _zone(tz)
    kind: Literal["csv", "json"] = "json" if fmt is ExportFormat.JSON else "csv"
    criteria = audit_query.Criteria(
        node, table, key, id_number, golden_id, action, since, until, batch
    )

    def go(n: Node, conn: Connection) -> tuple[int, int | str | None]:
        flt = criteria.build(conn, n.policy, zone_)
        if output is None:
            audit_query.export(conn, sys.stdout, kind, flt, limit=limit, before=before)
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                audit_query.export(conn, fh, kind, flt, limit=limit, before=before)
        return audit_query.left_out(conn, flt, limit=limit, before=before)

    more, next_before = read_node(go)
    _more_notice(more, next_before, as_json=False)
