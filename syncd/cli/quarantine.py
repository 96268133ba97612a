"""`syncd quarantine`: rows the hub rejected, why, and their retry under the current policy."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from syncd.cli.context import JsonOpt
from syncd.cli.hub import hub_settings, on_hub, read
from syncd.cli.render import out, print_json, print_record, print_table, usage

app = typer.Typer(help="Rejected rows and why.", no_args_is_help=True)


@app.command("list")
def quarantine_list(
    status: Annotated[str, typer.Option(help="open, retried, superseded or all")] = "open",
    node: Annotated[str | None, typer.Option()] = None,
    table: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rows the hub rejected, with the reason."""
    from syncd.hub import quarantine

    rows = read(
        lambda c: quarantine.list_entries(
            c, status=None if status == "all" else status, node=node, table=table
        )
    )
    if as_json:
        print_json(rows)
        return
    print_table(
        "quarantine",
        ["id", "node", "table", "key", "seq", "status", "reason"],
        [
            (
                r["quarantine_id"],
                r["node_id"],
                r["table_name"],
                r["row_key"],
                r["seq"],
                r["status"],
                r["reason"],
            )
            for r in rows
        ],
    )


@app.command("show")
def quarantine_show(qid: int, as_json: JsonOpt = False) -> None:
    """One quarantined row in full."""
    from syncd.hub import quarantine

    print_record(read(lambda c: quarantine.show(c, qid)), as_json)


@app.command("retry")
def quarantine_retry(
    qid: Annotated[int | None, typer.Argument(help="id; omit with --all")] = None,
    all_open: Annotated[bool, typer.Option("--all", help="every open entry")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate quarantined rows again under the current policy; apply those that pass."""
    from syncd.hub import quarantine

    hub_settings()
    if (qid is None) == (not all_open):
        usage("give one quarantine id, or --all")
    try:
        who: str | None = getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        who = None
    res = on_hub(lambda n: quarantine.retry(n.engine, n.policy, qid, by=who, os_user=who))
    if as_json:
        print_json(res)
        return
    out.print(
        f"retried and applied: {len(res.retried)}, superseded by newer versions: "
        f"{len(res.superseded)}, refused by the current policy: {len(res.refused)}, "
        f"still invalid: {len(res.still_invalid)}",
        highlight=False,
    )
    for qid_, reason in res.still_invalid.items():
        out.print(f"  {qid_}: {reason}", markup=False, highlight=False)
