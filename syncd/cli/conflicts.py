"""`syncd conflicts`: the data stewards' queue of fields decided by rule `manual`."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from syncd.cli.context import JsonOpt
from syncd.cli.hub import hub_settings, on_hub, read
from syncd.cli.render import out, print_json, print_record, print_table

app = typer.Typer(help="Data stewards: the manual conflict queue.", no_args_is_help=True)


@app.command("list")
def conflicts_list(
    status: Annotated[str, typer.Option(help="open, resolved, superseded or all")] = "open",
    as_json: JsonOpt = False,
) -> None:
    """Fields whose sources disagree under rule `manual`."""
    from syncd.hub import conflicts

    rows = read(lambda c: conflicts.list_conflicts(c, status=None if status == "all" else status))
    if as_json:
        print_json(rows)
        return
    print_table(
        "conflicts",
        ["id", "table", "golden", "identity", "column", "golden value", "candidates", "status"],
        [
            (
                r["conflict_id"],
                r["table_name"],
                r["golden_id"],
                r["identity"],
                r["column_name"],
                r["golden_value"],
                r["candidates"],
                r["status"],
            )
            for r in rows
        ],
    )


@app.command("show")
def conflicts_show(cid: int, as_json: JsonOpt = False) -> None:
    """One conflict with every source's value."""
    from syncd.hub import conflicts

    print_record(read(lambda c: conflicts.show(c, cid)), as_json)


@app.command("resolve")
def conflicts_resolve(
    cid: int,
    take: Annotated[str | None, typer.Option("--take", help="take this node's value")] = None,
    value: Annotated[str | None, typer.Option("--value", help="set this value")] = None,
    by: Annotated[str | None, typer.Option("--by", help="who resolves (default: OS user)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Close a conflict with one source's value or an explicit value (audited)."""
    from syncd.hub import conflicts

    hub_settings()
    who = by or getpass.getuser()
    res = on_hub(
        lambda n: conflicts.resolve(n.engine, n.policy, cid, take_node=take, value=value, by=who)
    )
    if as_json:
        print_json(res)
    else:
        out.print(
            f"conflict {cid} resolved by {who}: {res.get('column')} = {res.get('value')!r}",
            markup=False,
            highlight=False,
        )
