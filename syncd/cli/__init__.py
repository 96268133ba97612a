"""The `syncd` command line: parse, call a command function, render (rich table or --json).

The root app and its global options live here; each sub-app is one module (`ops` for the
node's own commands, `node`, `audit`, `quarantine`, `conflicts`, `reconcile`, `report`,
`demo`), sharing `render` (output and exit codes) and `context` (the settings the root
options load).
"""

from __future__ import annotations

from typing import Annotated

import typer

from syncd import __version__
from syncd.cli import (
    analysis,  # noqa: F401  (registers its commands on report.app)
    audit,
    conflicts,
    console,
    demo,
    egress,
    insights,
    node,
    ops,
    quarantine,
    reconcile,
    report,
)
from syncd.cli.context import ConfigOpt, accept_config_everywhere, escape_help, state
from syncd.cli.render import fail, out

app = typer.Typer(
    name="syncd",
    help="Province/city data synchronization for a bank's CRM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"syncd {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="tracebacks on errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print version")
    ] = False,
) -> None:
    state.config = config
    state.verbose = verbose


# Registration order is the order of `syncd --help`.
app.command("init")(ops.init)
app.command("snapshot")(ops.snapshot)
app.command("demo")(demo.demo)
app.command("sync")(ops.sync)
app.command("run")(ops.run)
app.command("status")(ops.status)
app.command("reconcile")(reconcile.reconcile)
app.add_typer(ops.schema_app, name="schema")
app.add_typer(node.app, name="node")
# `audit egress` runs at a city; its module is its own (cli/audit.py is the hub's commands).
audit.app.command("egress")(egress.egress)
app.add_typer(audit.app, name="audit")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(conflicts.app, name="conflicts")
app.add_typer(report.app, name="report")  # with the commands of cli/analysis.py
app.add_typer(insights.app, name="insights")
app.add_typer(console.app, name="console")


def command() -> typer.core.TyperGroup:
    """The click command tree of `app`, with `--config` on every command and plain help."""
    root = typer.main.get_command(app)
    accept_config_everywhere(root)
    escape_help(root)
    return root  # type: ignore[return-value]


def main() -> None:
    """Console-script entry point."""
    try:
        command()(prog_name="syncd")
    except SystemExit:
        raise
    except Exception as exc:
        try:
            fail(exc)
        except typer.Exit as stop:
            raise SystemExit(stop.exit_code) from None


if __name__ == "__main__":  # pragma: no cover
    main()
