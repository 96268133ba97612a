"""`syncd node`: the hub admin registers city nodes, names them and rotates their credentials."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from syncd.cli.context import JsonOpt
from syncd.cli.hub import on_hub, read
from syncd.cli.render import out, print_json, print_table, usage

app = typer.Typer(help="Hub admin: register and name city nodes.", no_args_is_help=True)

HubUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--hub-url", help="the hub's database URL as cities reach it (default: this config's)"
    ),
]


@app.command("add")
def node_add(
    node_id: Annotated[str, typer.Argument(help="e.g. city-3301")],
    city_code: Annotated[str | None, typer.Option("--city-code", help="e.g. 3301")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="what reports show for the city, e.g. 杭州")
    ] = None,
    hub_url: HubUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a city node; on PostgreSQL create its credentials (shown once)."""
    from syncd.hub.nodes import register_node

    code = city_code or (re.findall(r"\d+", node_id) or [None])[-1]
    creds = on_hub(
        lambda n: register_node(n.engine, hub_url or n.settings.database.url, node_id, code, name)
    )
    if as_json:
        print_json({"node_id": creds.node_id, "hub_url": creds.hub_url})
        return
    out.print(f"registered {creds.node_id}")
    if creds.role_name:
        out.print("hub.url for the city's config (shown once, keep it secret):")
    out.print(creds.hub_url, markup=False, highlight=False)


@app.command("rename")
def node_rename(
    node_id: Annotated[str, typer.Argument(help="a registered node, e.g. city-3301")],
    name: Annotated[
        str | None, typer.Option("--name", help="what reports show for the city, e.g. 杭州")
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="remove the name: reports show the node id")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set the name reports show for a node (audited as node_renamed)."""
    from syncd.hub.nodes import rename_node

    if (name is None) == (not clear):
        usage("node rename: give exactly one of --name NAME and --clear")
    previous = on_hub(lambda n: rename_node(n.engine, node_id, None if clear else name))
    if as_json:
        print_json({"node_id": node_id, "display_name": name, "previous": previous})
        return
    shown = "no name (reports show its id)" if clear else name
    out.print(f"{node_id}: {shown} (was {previous or 'unnamed'})", markup=False, highlight=False)


@app.command("rotate")
def node_rotate(
    node_id: Annotated[str, typer.Argument(help="a registered node, e.g. city-3301")],
    hub_url: HubUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a node new credentials (shown once); the old password and its sessions end now."""
    from syncd.hub.nodes import rotate_credentials

    creds = on_hub(
        lambda n: rotate_credentials(n.engine, hub_url or n.settings.database.url, node_id)
    )
    if as_json:
        print_json(
            {
                "node_id": creds.node_id,
                "hub_url": creds.hub_url,
                "sessions_ended": creds.sessions_ended,
            }
        )
        return
    out.print(f"{creds.sessions_ended} session(s) of {creds.node_id} ended")
    out.print(f"new credentials for {creds.node_id}; put this in its hub.url (shown once):")
    out.print(creds.hub_url, markup=False, highlight=False)


@app.command("list")
def node_list(as_json: JsonOpt = False) -> None:
    """Registered nodes and their positions."""
    from syncd.hub.nodes import list_nodes

    nodes = read(list_nodes)
    if as_json:
        print_json(nodes)
        return
    print_table(
        "nodes",
        ["node", "name", "city", "role", "registered", "received", "applied"],
        [
            (
                n["node_id"],
                n["display_name"],
                n["city_code"],
                n["role_name"],
                n["registered_at"],
                n["received_seq"],
                n["applied_seq"],
            )
            for n in nodes
        ],
    )
