"""`syncd insights`: the province's analysis sent down to each city (the downward path).

At the hub `publish` builds the cities' insight batches now (the daemon does it after apply
cycles, every `[downlink] publish_interval_seconds`) and `resend` sends one city everything
again. At a city `pull` applies what the hub built for it (each push cycle does it too) and
`show` lists the city's customers with the province's tier and warnings, as a relationship
manager's CRM screen would, joining the CRM's customers to syncd_province_insight.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from syncd.cli import present
from syncd.cli.context import JsonOpt, settings
from syncd.cli.hub import on_hub
from syncd.cli.render import call, fail, out, print_json, print_table, usage
from syncd.core.errors import SyncdError
from syncd.core.i18n import N_
from syncd.present.tables import Column, Kind, Table

app = typer.Typer(
    help="The province's insights on each city's customers, sent down to the cities.",
    no_args_is_help=True,
)


@app.command("publish")
def publish(
    node: Annotated[
        list[str] | None, typer.Option("--node", help="only this city (repeatable)")
    ] = None,
    if_due: Annotated[
        bool,
        typer.Option("--if-due", help="only if batches were applied since the last build"),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Hub: derive every customer's insight and build each city's batches now."""
    if if_due and node:
        usage("--if-due builds for every city: give no --node")
    found = on_hub(lambda n: n.publish_if_due() if if_due else n.publish(node))
    if found is None:  # --if-due: nothing applied since the last build
        if as_json:
            print_json({"due": False})
        else:
            out.print("nothing applied since the last build: nothing to do", highlight=False)
        return
    result = found
    if as_json:
        print_json(result)
    elif "error" not in result and not _nodes(result):
        out.print(
            f"insights for {result['customers']} customers: nothing changed for any city",
            highlight=False,
        )
    elif "error" not in result:
        print_table(
            f"insights for {result['customers']} customers",
            ["node", "batches", "changes", "failed"],
            (
                (n, result["batches"].get(n, 0), result["changes"].get(n, 0), e)
                for n, e in _nodes(result)
            ),
        )
    problem = result.get("error") or result.get("skipped") or _failures(result)
    if problem:
        fail(SyncdError(problem))


def _nodes(result: dict[str, Any]) -> list[tuple[str, str]]:
    names = sorted({*result["batches"], *result["failed"]})
    return [(n, result["failed"].get(n, "")) for n in names]


def _failures(result: dict[str, Any]) -> str:
    return "; ".join(f"{n}: {e}" for n, e in sorted(result.get("failed", {}).items()))


@app.command("resend")
def resend(
    node_id: Annotated[str, typer.Argument(help="the city to send everything again")],
    after: Annotated[
        int, typer.Option("--after", help="number the fresh set after this batch (see status)")
    ] = 0,
) -> None:
    """Hub: send a city a fresh full set of insights, replacing what it holds (audited).

    For a city whose syncd_province_insight was emptied or altered, that refuses a batch, or
    that is ahead of a hub restored from a backup (`--after` its position, which its error
    names). Batches it has not acknowledged are dropped; the fresh set starts with a reset.
    """
    from syncd.hub import downlink

    def go(n: Any) -> dict[str, Any]:
        detail = downlink.forget_sent(n.engine, node_id, after)
        return {**detail, **n.publish([node_id])}

    result = on_hub(go)
    out.print(
        f"{node_id}: forgot {result['forgotten']} sent insights, dropped "
        f"{result['dropped_batches']} unacknowledged batches; built "
        f"{result.get('batches', {}).get(node_id, 0)} batches from {result['next_seq']}",
        highlight=False,
    )


@app.command("pull")
def pull(as_json: JsonOpt = False) -> None:
    """City: fetch and apply the insight batches the hub built for this city."""
    from syncd.app import Node
    from syncd.city import insights

    s = settings()
    if not s.is_city:
        usage(f"insights pull runs at a city; {s.node.id} is the hub (see insights publish)")

    def go() -> insights.PullResult:
        with Node.open(s) as node:
            assert node.pusher is not None
            try:
                return insights.pull(node.engine, node.pusher.hub, node.policy, s.node.id)
            except SyncdError as exc:  # shown by `status` too, until a pull succeeds
                insights.record_error(node.engine, str(exc))
                raise

    got = call(go)
    if as_json:
        print_json(got)
    else:
        out.print(
            f"applied {got.batches} insight batches ({got.upserts} set, {got.deletes} removed); "
            f"at {got.applied_seq} of the hub's {got.hub_seq}",
            highlight=False,
        )


_SHOW_COLUMNS = (
    Column("name", N_("name")),
    Column("tier", N_("value tier"), Kind.ENUM, enum="tier"),
    Column("contribution_rank", N_("rank"), Kind.COUNT),
    Column("contribution", N_("contribution"), Kind.MONEY),
    Column("segment", N_("segment"), export_only=True),
    Column("warnings", N_("warnings"), Kind.ENUMS, enum="warning"),
    Column("top_severity", N_("severity"), Kind.COUNT, export_only=True),
)


@app.command("show")
def show(
    tier: Annotated[
        str | None, typer.Option("--tier", help="key, high, medium or standard")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="rows shown, best first")] = 50,
    lang: present.LangOpt = None,
    unit: present.UnitOpt = None,
    as_json: present.JsonOpt = False,
    as_csv: present.CsvOpt = False,
    xlsx: present.XlsxOpt = None,
    output: present.OutputOpt = None,
) -> None:
    """City: this city's customers with the province's tier, rank and warnings."""
    from syncd.app import Node
    from syncd.city import insights
    from syncd.core.downlink import TIERS
    from syncd.store.db import translated

    fmt = present.output(lang, unit, False, as_json, as_csv, xlsx, output)
    s = settings()
    if not s.is_city:
        usage(f"insights show runs at a city; {s.node.id} is the hub (see report value)")
    if tier is not None and tier not in TIERS:
        usage(f"--tier {tier!r}: expected one of {', '.join(sorted(TIERS))}")
    if limit < 1:
        usage(f"--limit must be at least 1, not {limit}")

    def go() -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        with Node.open(s) as node, translated("reading insights"), node.engine.connect() as c:
            keys = insights.key_columns(node.policy)
            return insights.listing(c, node.policy, tier=tier, limit=limit), keys

    rows, keys = call(go)
    table = insight_table(rows, keys, s.node.id)
    present.show("insights show", {"tier": tier, "limit": limit}, fmt, {}, table)


def insight_table(rows: list[dict[str, Any]], keys: tuple[str, ...], node_id: str) -> Table:
    """`insights.listing` rows as a table (the demo shows one too): warnings as a list."""
    shown = [
        {**r, "warnings": [w for w in str(r.get("warning_reasons") or "").split(",") if w]}
        for r in rows
    ]
    return Table(
        "insights",
        N_("{node}: customers with the province's insight"),
        (*(Column(k, N_("customer")) for k in keys), *_SHOW_COLUMNS),
        shown,
        {"node": node_id},
    )
