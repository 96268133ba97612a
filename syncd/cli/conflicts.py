"""`syncd conflicts`: the data stewards' queue of fields decided by rule `manual`."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from syncd.cli.context import JsonOpt
from syncd.cli.hub import hub_settings, on_hub, read
from syncd.cli.render import out, print_json, print_record, print_table

if TYPE_CHECKING:
    from syncd.hub.conflicts import Steward

app = typer.Typer(help="Data stewards: the manual conflict queue.", no_args_is_help=True)


@app.command("list")
def conflicts_list(
    status: Annotated[
        str, typer.Option(help="open, proposed, resolved, superseded or all")
    ] = "open",
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


def _steward(by: str | None) -> Steward:
    """The name given with --by (default: the OS user), and the OS user, both recorded."""
    from syncd.hub.conflicts import Steward

    os_user = getpass.getuser()
    return Steward(by or os_user, os_user)


def _done(res: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(res)
        return
    who = f"{res['by']} (OS user {res['os_user']})"
    what = f"{res.get('column')} = {res.get('value')!r}"
    if res["status"] == "proposed":
        text = f"conflict {res['conflict_id']} proposed by {who}: {what}; another steward must"
        text += f" approve it: syncd conflicts approve {res['conflict_id']} --by NAME"
    else:
        text = f"conflict {res['conflict_id']} resolved by {who}: {what}"
    out.print(text, markup=False, highlight=False)


ByOpt = Annotated[
    str | None, typer.Option("--by", help="your name, recorded with your OS user (default: it)")
]


@app.command("resolve")
def conflicts_resolve(
    cid: int,
    take: Annotated[str | None, typer.Option("--take", help="take this node's value")] = None,
    value: Annotated[str | None, typer.Option("--value", help="set this value")] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Close a conflict with one source's value or an explicit value (audited); under the
    four-eyes rule, propose it for another steward to approve."""
    from syncd.hub import conflicts

    four_eyes = hub_settings().conflicts.four_eyes
    steward = _steward(by)
    res = on_hub(
        lambda n: conflicts.resolve(
            n.engine, n.policy, cid, take_node=take, value=value, by=steward, four_eyes=four_eyes
        )
    )
    _done(res, as_json)


@app.command("approve")
def conflicts_approve(cid: int, by: ByOpt = None, as_json: JsonOpt = False) -> None:
    """Apply a proposed resolution (four eyes): another steward than the one who proposed it."""
    from syncd.hub import conflicts

    hub_settings()
    steward = _steward(by)
    res = on_hub(lambda n: conflicts.approve(n.engine, n.policy, cid, by=steward))
    _done(res, as_json)
