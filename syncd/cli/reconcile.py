"""`syncd reconcile`: at a city, does the hub hold what this city sends; at the hub, the last
result of each city (--all-nodes). Exit 0 in sync, 1 drift remains, 2 bad input."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import typer

from syncd.cli.context import JsonOpt, settings
from syncd.cli.render import call, money, out, print_json, print_table, usage

if TYPE_CHECKING:
    from syncd.city.reconcile import ReconcileReport, TableReport
    from syncd.hub.reconcile import NodeReconcile


def reconcile(
    table: Annotated[
        list[str] | None, typer.Option("--table", "-t", help="a public table (repeatable)")
    ] = None,
    show_values: Annotated[
        bool, typer.Option("--show-values", help="print the differing rows' values")
    ] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="re-send the drifted keys through the normal path")
    ] = False,
    all_nodes: Annotated[
        bool, typer.Option("--all-nodes", help="at the hub: each city's last reconcile")
    ] = False,
    limit: Annotated[int, typer.Option(help="differing keys listed per table")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Compare what this city's policy sends with what the hub holds; list differing keys."""
    from syncd import app

    s = settings()
    if all_nodes:
        if table or show_values or repair:
            usage("--all-nodes takes no --table, --show-values or --repair")
        results = call(lambda: app.reconcile_results(s))
        _print_nodes(results, as_json)
        if not all(r.in_sync for r in results):
            raise typer.Exit(1)
        return
    report = call(lambda: app.reconcile(s, table or [], show_values, repair, limit))
    if as_json:
        print_json({"in_sync": report.in_sync, **_jsonable(report)})
    else:
        _print_report(report)
    if not report.in_sync:
        raise typer.Exit(1)


def _jsonable(report: ReconcileReport) -> dict[str, object]:
    return {
        "node_id": report.node_id,
        "repaired": report.repaired,
        "pushed_batches": report.pushed_batches,
        "tables": [
            {
                "table": t.table,
                "status": t.status,
                "city_rows": t.city_rows,
                "hub_rows": t.hub_rows,
                "city_sums": t.city_sums,
                "hub_sums": t.hub_sums,
                "truncated": t.truncated,
                "seconds": round(t.seconds, 3),
                "keys": [
                    {
                        "key": k.key,
                        "state": k.state,
                        "columns": k.columns,
                        **({"city": k.city, "hub": k.hub} if k.city or k.hub else {}),
                    }
                    for k in t.keys
                ],
            }
            for t in report.tables
        ],
        "insights": None if report.insights is None else dataclasses.asdict(report.insights),
    }


def _sums(t: TableReport, side: str) -> str:
    sums = t.city_sums if side == "city" else t.hub_sums
    return ", ".join(f"{k} {money(v)}" for k, v in sums.items())


def _print_report(report: ReconcileReport) -> None:
    print_table(
        f"reconcile {report.node_id} against its hub",
        ["table", "city rows", "hub rows", "city sums", "hub sums", "status"],
        [
            (t.table, t.city_rows, t.hub_rows, _sums(t, "city"), _sums(t, "hub"), t.status)
            for t in report.tables
        ],
    )
    for t in report.tables:
        if not t.keys:
            continue
        rows = []
        for k in t.keys:
            shown = ", ".join(f"{c}={v}" for c, v in k.key.items())
            detail = ", ".join(k.columns)
            if k.city is not None or k.hub is not None:
                detail += f" city={k.city} hub={k.hub}"
            rows.append((shown, k.state, detail))
        print_table(f"{t.table}: differing keys", ["key", "state", "columns"], rows)
        if t.truncated:
            out.print(f"  (listing stopped at --limit; more keys of {t.table} differ)")
    if report.repaired:
        out.print(
            f"repair: {report.repaired} changes queued, {report.pushed_batches} batches pushed; "
            "the hub applies them on its next cycle — run reconcile again to confirm",
            highlight=False,
        )
    down = report.insights
    if down is not None:
        out.print(
            f"province insights: {down.status} — {down.city_rows} here, {down.hub_rows} sent by "
            f"the hub, batch {down.applied_seq} of {down.built_seq} applied"
            + (f", {down.tampered} altered here" if down.tampered else ""),
            highlight=False,
        )
        if down.status == "drift":
            out.print(
                f"  (the hub sends them again with `syncd insights resend {report.node_id}`)",
                highlight=False,
            )
    out.print("in sync" if report.in_sync else "drift remains", highlight=False)


def _print_nodes(results: list[NodeReconcile], as_json: bool) -> None:
    if as_json:
        print_json(results)
        return
    print_table(
        "last reconcile per city",
        ["node", "at", "in sync", "drift keys", "held keys", "audited"],
        [
            (
                r.node_id,
                r.at,
                "yes" if r.in_sync else "no",
                _count(r, ("missing_at_hub", "extra_at_hub", "different_values")),
                _count(r, ("quarantined", "in_flight")),
                "yes" if r.audited else "not yet",
            )
            for r in results
        ],
    )


def _count(r: NodeReconcile, states: tuple[str, ...]) -> int:
    tables = r.summary.get("tables", {})
    return sum(int(t.get(s, 0)) for t in tables.values() for s in states)
