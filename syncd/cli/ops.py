"""The node's own commands: init, schema check, snapshot, sync, run, status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from syncd.cli.context import JsonOpt, settings
from syncd.cli.render import call, err, out, print_json, print_table, usage

if TYPE_CHECKING:
    from syncd.app import InitReport
    from syncd.city.status import CityStatus
    from syncd.core.policy import SchemaProblem
    from syncd.hub.status import HubStatus, NodeStatus

schema_app = typer.Typer(help="Check the live database against the policy.", no_args_is_help=True)


def init(as_json: JsonOpt = False) -> None:
    """Create/upgrade this node's tables and, on a city, install capture triggers."""
    from syncd.app import init_node

    report = call(lambda: init_node(settings()))
    if as_json:
        print_json(report)
        return
    out.print(f"[bold]{report.node_id}[/] ({report.role}) initialised")
    if report.role == "city":
        _print_triggers(report)
    else:
        out.print(f"  consolidated tables: {', '.join(report.hub_tables)}")
        if report.hub_columns_added:
            out.print(
                f"  columns added: {', '.join(report.hub_columns_added)} (existing rows hold "
                "NULL until cities send them; `syncd snapshot --table` at a city backfills)"
            )
    for warning in report.warnings:
        out.print(f"  warning: {warning}", highlight=False, markup=False)


def _print_triggers(report: InitReport) -> None:
    for label, names in (
        ("added", report.triggers_added),
        ("replaced", report.triggers_replaced),
        ("dropped", report.triggers_dropped),
        ("kept", report.triggers_kept),
    ):
        if names:
            out.print(f"  capture triggers {label}: {', '.join(names)}")


@schema_app.command("check")
def schema_check(as_json: JsonOpt = False) -> None:
    """Validate the policy against the live database; exit 2 listing every problem."""
    from syncd.app import check_node as check

    problems = call(lambda: check(settings()))
    if as_json:
        print_json({"ok": not problems, "problems": problems})
    elif problems:
        _print_problems(problems)
    else:
        out.print("schema ok: every declared table and column exists; capture triggers in place")
    if problems:
        raise typer.Exit(2)


def _print_problems(problems: list[SchemaProblem]) -> None:
    """The problems as a table; missing capture triggers (a city before `init`) as one line."""
    missing = [
        p
        for p in problems
        if p.problem.startswith("capture trigger") and p.problem.endswith("is missing")
    ]
    rest = [p for p in problems if p not in missing]
    if rest:
        print_table(
            "schema problems",
            ["table", "column", "problem"],
            [(p.table, p.column, p.problem) for p in rest],
        )
    if missing:
        tables = sorted({p.table for p in missing})
        out.print(
            f"{len(missing)} capture triggers are missing (on {', '.join(tables)}): "
            "run `syncd init` to install them (`--json` lists each)",
            markup=False,
            highlight=False,
        )


def snapshot(
    table: Annotated[str | None, typer.Option("--table", help="re-seed only this table")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="forget progress, load all")] = False,
    chunk: Annotated[int, typer.Option("--chunk", min=1, help="rows per transaction")] = 5000,
    as_json: JsonOpt = False,
) -> None:
    """Initial load / re-seed of public data into the changelog, resumable, with progress."""
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    from syncd.city import snapshot

    s = settings()
    if restart:
        call(lambda: snapshot.reset(s))
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def show(tp: snapshot.TableProgress) -> None:
        if tp.table not in tasks:
            tasks[tp.table] = bar.add_task(tp.table, total=tp.total)
        bar.update(tasks[tp.table], completed=tp.rows)

    with bar:
        report = call(lambda: snapshot.snapshot(s, table, chunk, show))
    if as_json:
        print_json(report)
        return
    print_table(
        "snapshot",
        ["table", "rows", "complete", "seconds"],
        [(t.table, t.rows, t.done, round(t.seconds, 1)) for t in report.tables],
    )
    out.print("the daemon (or `syncd sync --once`) ships them to the hub")


def sync(
    once: Annotated[bool, typer.Option("--once", help="one cycle, then exit")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One push (city) or apply (hub) cycle."""
    from syncd.daemon.scheduler import sync_once

    if not once:
        usage("use `syncd sync --once` for one cycle, or `syncd run` for the daemon")
    result = call(lambda: sync_once(settings()))
    if as_json:
        print_json(result)
    else:
        out.print(" ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, dict | list)))
    for node, error in (result.get("failed") or {}).items():
        err.print(f"syncd: failed: {node}: {error}", markup=False, highlight=False)
    if result.get("failed"):
        raise typer.Exit(1)


def run() -> None:
    """Run the daemon until SIGTERM/SIGINT, then stop cleanly."""
    from syncd.daemon.scheduler import Daemon

    code = call(lambda: Daemon(settings()).run())
    raise typer.Exit(code)


def status(as_json: JsonOpt = False) -> None:
    """City: backlog, lag, last acknowledgement. Hub: per node position, lag, problems.

    Exits 1 when the node is unhealthy: a failed cycle, or (hub) a node whose batches fail.
    """
    from syncd.app import node_status
    from syncd.city.status import CityStatus

    st = call(lambda: node_status(settings()))
    if as_json:
        print_json(st)
    elif isinstance(st, CityStatus):
        _print_city(st)
    else:
        _print_hub(st)
    if not as_json:
        for p in st.problems:
            err.print(f"problem: {p}", markup=False, highlight=False)
        for w in st.warnings:
            err.print(f"warning: {w}", markup=False, highlight=False)
    if not st.healthy:
        raise typer.Exit(1)


def _print_city(st: CityStatus) -> None:
    lag = "-" if st.lag_seconds is None else f"{st.lag_seconds:.1f} s"
    print_table(
        f"{st.node_id} (city)",
        [
            "backlog rows",
            "lag",
            "last acked seq",
            "acked at",
            "last push",
            "last hub batch",
            "insights (applied/hub)",
            "last error",
        ],
        [
            (
                st.backlog_rows,
                lag,
                st.last_acked_seq,
                st.last_acked_at,
                st.last_push_at,
                _last_batch(st),
                _downlink(st),
                st.last_error,
            )
        ],
    )


def _downlink(st: CityStatus) -> str:
    """Insight batches applied here against those the hub had built at the last ask."""
    hub = "?" if st.downlink_hub_seq is None else str(st.downlink_hub_seq)
    return f"{st.downlink_applied_seq}/{hub}"


def _node_state(n: NodeStatus) -> str:
    flags = (("FAILING", n.failing), ("POLICY", bool(n.policy_problem)), ("SILENT", n.silent))
    return " ".join(word for word, on in flags if on)


def _last_batch(st: CityStatus) -> str | None:
    """The egress ledger's last acknowledged batch: the hub's id and when it was acknowledged."""
    if st.last_egress_batch_id is None:
        return None
    return f"{st.last_egress_batch_id} at {st.last_egress_at}"


def _print_hub(st: HubStatus) -> None:
    print_table(
        f"{st.node_id} (hub): {st.pending_batches} pending batches, "
        f"{st.quarantined} quarantined rows, {st.open_conflicts} open conflicts",
        [
            "node",
            "city",
            "name",
            "last seen",
            "received",
            "applied",
            "pending",
            "lag s",
            "quarantined",
            "refused",
            "conflicts",
            "insights acked/built",
            "state",
        ],
        [
            (
                n.node_id,
                n.city_code,
                n.display_name,
                n.last_seen_at,
                n.received_seq,
                n.applied_seq,
                n.pending_batches,
                n.lag_seconds,
                n.quarantined,
                n.refused_rows,
                n.open_conflicts,
                f"{n.down_acked_seq}/{n.down_built_seq}",
                _node_state(n),
            )
            for n in st.nodes
        ],
    )
