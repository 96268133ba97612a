"""`syncd demo`: run the demo (syncd.daemon.demo) and render what it reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from syncd.cli.render import call, money, out, print_table

if TYPE_CHECKING:
    from syncd.daemon.demo import DemoReport, DemoResult


def demo(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="keep the demo's files here")
    ] = None,
    cities: Annotated[int, typer.Option("--cities", help="number of cities")] = 3,
    customers: Annotated[int, typer.Option("--customers", help="distinct customers")] = 300,
    keep: Annotated[bool, typer.Option("--keep", help="keep the files (temp dir)")] = False,
    seed: Annotated[int, typer.Option("--seed", help="random seed of the data")] = 7,
) -> None:
    """The whole system on embedded SQLite: hub + cities, data, sync, conflicts, reports."""
    from syncd.daemon import demo

    opts = demo.DemoOptions(
        directory=directory, cities=cities, customers=customers, seed=seed, keep=keep
    )
    result = call(lambda: demo.run_demo(opts, lambda m: out.print(m, highlight=False), _show))
    out.print()
    for c in result.checks:
        mark = "[green]✓[/]" if c.ok else "[red]✗[/]"
        out.print(f"{mark} {c.name}: {c.detail}", highlight=False)
    if result.kept:
        _print_next_steps(result)
    if not result.ok:
        raise typer.Exit(1)


def _print_next_steps(result: DemoResult) -> None:
    out.print(f"\nthe demo's files are kept in {result.directory}; go on with e.g.")
    out.print(f"  syncd --config {result.hub_config} status", markup=False)
    out.print(
        f"  syncd --config {result.hub_config} report customer --id-number <ID>", markup=False
    )
    for node, conf in result.city_configs.items():
        out.print(f"  syncd --config {conf} status      # {node}", markup=False)


def _show(report: DemoReport) -> None:
    """Print what the hub holds after the demo."""
    _show_status(report)
    _show_conflicts(report)
    _show_quarantine(report)
    _show_reports(report)
    out.rule("audit")
    res = report.audit
    out.print(
        f"audit verify: {'intact' if res.ok else 'BROKEN'} — {res.entries} "
        f"entries, head {res.head_id}:{res.head_hash[:16]}…",
        highlight=False,
    )


def _show_status(report: DemoReport) -> None:
    out.rule("node status")
    print_table(
        report.hub.node_id,
        ["node", "received", "applied", "pending", "quarantined", "conflicts"],
        [
            (
                n.node_id,
                n.received_seq,
                n.applied_seq,
                n.pending_batches,
                n.quarantined,
                n.open_conflicts,
            )
            for n in report.hub.nodes
        ],
    )
    print_table(
        "cities",
        ["node", "backlog rows", "last acked seq", "last error"],
        [(c.node_id, c.backlog_rows, c.last_acked_seq, c.last_error or "") for c in report.cities],
    )


def _show_conflicts(report: DemoReport) -> None:
    out.rule("conflicts and the rule that decided")
    print_table(
        "fields the cities disagree on, as last decided (audit: row_applied)",
        ["source key", "golden", "field", "rule", "taken from"],
        [(d.source_key, d.golden_id, d.field, d.rule, d.taken_from) for d in report.decisions],
    )
    print_table(
        "open conflicts (rule manual: a data steward decides)",
        ["id", "golden", "field", "golden value", "candidates"],
        [
            (
                c["conflict_id"],
                c["golden_id"],
                c["column_name"],
                c["golden_value"],
                ", ".join(f"{k}={v}" for k, v in c["candidates"].items()),
            )
            for c in report.open_conflicts
        ],
    )


def _show_quarantine(report: DemoReport) -> None:
    out.rule("quarantine")
    print_table(
        "quarantined rows",
        ["id", "node", "table", "key", "reason"],
        [
            (
                q["quarantine_id"],
                q["node_id"],
                q["table_name"],
                ", ".join(str(v) for v in q["row_key"].values()),
                q["reason"],
            )
            for q in report.quarantined
        ],
    )


def _show_reports(report: DemoReport) -> None:
    out.rule("manager report (syncd report cities / value; views report_*)")
    print_table(
        "cities",
        ["node", "customers", "deposits", "loans", "overdue loans", "non-performing", "fee income"],
        [
            (
                r["node_id"],
                r["customers"],
                money(r["deposit_balance"]),
                money(r["loan_balance"]),
                money(r["overdue_loan_balance"]),
                money(r["non_performing"]),
                money(r["fee_income"]),
            )
            for r in report.city_summary
        ],
    )
    print_table(
        "top customers by contribution (贡献度)",
        ["rank", "tier", "name", "cities", "deposits", "loans", "contribution"],
        [
            (
                r["rank"],
                r["tier"],
                r["name"],
                r["city_count"],
                money(r["deposit_balance"]),
                money(r["loan_balance"]),
                money(r["contribution"]),
            )
            for r in report.top_customers
        ],
    )
