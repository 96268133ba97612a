"""`syncd demo`: run the demo (syncd.daemon.demo) and render what it reports."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from syncd.cli import present
from syncd.cli.render import call, heading, out, print_table, usage
from syncd.core.i18n import N_
from syncd.present import columns
from syncd.present.tables import Column, Kind, Table

if TYPE_CHECKING:
    from syncd.daemon.demo import DemoReport, DemoResult


DEFAULT_DIR = Path("demo-out")


def demo(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="where the demo's files are kept; a previous demo there is replaced",
        ),
    ] = DEFAULT_DIR,
    cities: Annotated[int, typer.Option("--cities", help="number of cities")] = 3,
    customers: Annotated[int, typer.Option("--customers", help="distinct customers")] = 300,
    tmp: Annotated[
        bool,
        typer.Option("--tmp", help="use a temporary directory and delete it at the end (CI)"),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="random seed of the data")] = 7,
    _keep: Annotated[bool, typer.Option("--keep", hidden=True, help="(the default now)")] = False,
    console: Annotated[
        bool,
        typer.Option(
            "--console",
            help="then serve the hub's web console on 127.0.0.1 with demo users, until Ctrl-C",
        ),
    ] = False,
    console_port: Annotated[
        int, typer.Option("--console-port", help="the console's port (with --console)")
    ] = 8080,
) -> None:
    """The whole system on embedded SQLite: hub + cities, data, sync, conflicts, reports."""
    from syncd.daemon import demo

    if console:
        _check_console_port(tmp, console_port)
    opts = demo.DemoOptions(
        directory=None if tmp else directory, cities=cities, customers=customers, seed=seed
    )
    result = call(
        lambda: demo.run_demo(opts, lambda m: out.print(m, markup=False, highlight=False), _show)
    )
    out.print()
    for c in result.checks:
        mark = Text("✓", "green") if c.ok else Text("✗", "red")
        out.print(Text.assemble(mark, f" {c.name}: {c.detail}"), highlight=False)
    if result.kept:
        _print_next_steps(result)
    if not result.ok:
        raise typer.Exit(1)
    if console:
        _serve_console(result.hub_config, console_port)


CONSOLE_HOST = "127.0.0.1"


def _check_console_port(tmp: bool, port: int) -> None:
    """Before the demo runs: --console needs the kept files and a free port."""
    import socket

    if tmp:
        usage("--console serves the demo's files: it cannot go with --tmp")
    if not 1 <= port <= 65535:
        usage(f"--console-port {port}: choose 1 to 65535")
    with socket.socket() as probe:
        try:
            probe.bind((CONSOLE_HOST, port))
        except OSError as exc:
            usage(f"--console-port {port}: cannot listen on {CONSOLE_HOST}:{port} ({exc.strerror})")


def _serve_console(hub_config: Path, port: int) -> None:
    """Add the demo's console users, say how to sign in, serve as `syncd console` does."""
    from syncd.cli.console import serve
    from syncd.core.settings import load_settings
    from syncd.daemon import demo

    password, users = call(lambda: demo.add_demo_console_users(hub_config))

    def banner(url: str) -> None:
        lines = [
            "",
            f"The hub's web console: {url}   (Ctrl-C stops it)",
            f"Demo users, one per role, password for this run only: {password}",
            *(f"  {user:<14} {role}" for user, role in users),
            "The same console later: syncd --config hub.toml console --port "
            f"{port}   (in the demo's directory)",
            "",
        ]
        # One write: nothing else's output can land between its lines.
        out.print("\n".join(lines), markup=False, highlight=False)

    # Ctrl-C (SIGINT) or SIGTERM: uvicorn finishes the requests in flight and returns.
    with contextlib.suppress(KeyboardInterrupt):
        serve(load_settings(hub_config), host=CONSOLE_HOST, port=port, banner=banner)
    out.print("console stopped", markup=False, highlight=False)


def _shown(path: Path) -> str:
    """`path` as the user can type it from here: relative to the current directory if inside."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


def _syncd_command() -> list[str]:
    """How to reach this `syncd` from a shell: the venv to activate when it is not on PATH."""
    here = Path(sys.executable).parent
    found = shutil.which("syncd")
    if found and Path(found).resolve() == (here / "syncd").resolve():
        return []
    return [f"source {_shown(here / 'activate')}      # puts syncd on PATH ({_shown(here)})"]


def _print_next_steps(result: DemoResult) -> None:
    d = _shown(result.directory)
    lines = [
        "",
        f"The demo's files are kept in {d}/ : hub.db and city-*.db (SQLite, open them with",
        "sqlite3), hub.toml and city-*.toml (the nodes' configs), *.log (the daemons' logs),",
        "crm.yaml (the policy). The next `syncd demo` replaces them; delete them with",
        f"`rm -rf {d}`. Go on with:",
        "",
        *(f"  {line}" for line in _syncd_command()),
        f"  cd {d}",
        "  syncd --config hub.toml status",
        "  syncd --config hub.toml report value --top 10",
    ]
    lines += [
        f"  syncd --config {p.name} status      # {n}" for n, p in result.city_configs.items()
    ]
    first = next(iter(result.city_configs.values())).name
    lines.append(f"  syncd --config {first} insights show --tier key   # the province's analysis")
    lines.append('The README\'s tour ("A five-minute tour") goes on from here.')
    for line in lines:
        out.print(line, markup=False, highlight=False)


def _show(report: DemoReport) -> None:
    """Print what the hub holds after the demo."""
    _show_status(report)
    _show_conflicts(report)
    _show_quarantine(report)
    _show_reports(report)
    _show_insights(report)
    heading("audit")
    res = report.audit
    out.print(
        f"audit verify: {'intact' if res.ok else 'BROKEN'} — {res.entries} "
        f"entries, head {res.head_id}:{res.head_hash}",
        highlight=False,
    )


def _show_insights(report: DemoReport) -> None:
    from syncd.cli.insights import insight_table

    heading(f"the province's analysis back at {report.rm_city} (syncd insights show)")
    out.print(
        "A relationship manager's CRM screen: the city's own customers joined to "
        "syncd_province_insight on customer_id.",
        highlight=False,
    )
    table = insight_table(report.rm_view, ("customer_id",), report.rm_city)
    present.show("demo", {}, present.output(), {}, table)


def _show_status(report: DemoReport) -> None:
    heading("node status")
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
    heading("conflicts and the rule that decided")
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
    heading("quarantine")
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


# The demo's narrower tables (`report cities` and `report value` carry every column).
_DEMO_CITY_COLUMNS = (
    *columns.pick(
        columns.CITY_COLUMNS,
        "node_id",
        "customers",
        "deposit_balance",
        "loan_balance",
        "overdue_loan_balance",
    ),
    Column("non_performing", N_("non-performing"), Kind.MONEY),
    *columns.pick(columns.CITY_COLUMNS, "fee_income"),
)
_DEMO_VALUE_COLUMNS = columns.pick(
    columns.VALUE_COLUMNS,
    "rank",
    "tier",
    "name",
    "cities",
    "deposit_balance",
    "loan_balance",
    "contribution",
)


def _show_reports(report: DemoReport) -> None:
    """The manager reports as bank staff read them: Chinese, 元, cities by name, a 全省 row."""
    from syncd.hub.analysis import PROVINCE, with_province_total
    from syncd.hub.reports import CITY_SUMS

    heading("manager reports (syncd report cities / value; views report_*)")
    fmt = present.output()
    names = {**report.names, PROVINCE: fmt.tr.gettext(N_("province"))}
    cities = with_province_total(report.city_summary, (*CITY_SUMS, "non_performing"))
    present.show(
        "demo",
        {},
        fmt,
        names,
        Table("cities", N_("cities (view report_city_summary)"), _DEMO_CITY_COLUMNS, cities),
    )
    present.show(
        "demo",
        {},
        fmt,
        names,
        Table(
            "value",
            N_("customer value (view report_customer_value_base; weights: config, report section)"),
            _DEMO_VALUE_COLUMNS,
            report.top_customers,
        ),
    )
