"""The `syncd` command line: parse, call a command function, render (rich table or --json).

Exit codes are part of the contract: 0 success, 1 runtime failure, 2 bad input (config, policy,
arguments). Tracebacks only with -v.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table as RichTable

from syncd import __version__
from syncd.errors import SyncdError, UsageError
from syncd.redact import redact_url
from syncd.settings import Settings, load_settings

T = TypeVar("T")

app = typer.Typer(
    name="syncd",
    help="Province/city data synchronization for a bank's CRM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schema_app = typer.Typer(help="Check the live database against the policy.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@dataclasses.dataclass
class _State:
    config: Path | None = None
    verbose: bool = False
    settings: Settings | None = None


_state = _State()

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="SYNCD_CONFIG", help="node config file (TOML)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


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
    _state.config = config
    _state.verbose = verbose


def settings() -> Settings:
    """The node's settings, loaded once per process; logging is configured from them."""
    if _state.settings is None:
        from syncd import logs

        s = load_settings(_state.config)
        logs.configure(s.log.format, "debug" if _state.verbose else s.log.level, s.node.id)
        _state.settings = s
    return _state.settings


def fail(exc: BaseException) -> NoReturn:
    """Print one line naming what went wrong and exit with the contract's code."""
    if _state.verbose:
        err.print_exception()
    code = exc.exit_code if isinstance(exc, SyncdError) else 1
    label = "error" if code == 2 else "failed"
    err.print(f"syncd: {label}: {redact_url(str(exc))}", markup=False, highlight=False)
    raise typer.Exit(code)


def call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except typer.Exit:
        raise
    except SyncdError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:
        fail(exc)


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    return obj


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(data), ensure_ascii=False, indent=2) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = RichTable(title=title, show_lines=False)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*("" if v is None else str(to_jsonable(v)) for v in row))
    out.print(table)


@app.command()
def init(as_json: JsonOpt = False) -> None:
    """Create/upgrade this node's tables and, on a city, install capture triggers."""
    from syncd.bootstrap import init_node

    report = call(lambda: init_node(settings()))
    if as_json:
        print_json(report)
        return
    out.print(f"[bold]{report.node_id}[/] ({report.role}) initialised")
    if report.role == "city":
        for label, names in (
            ("added", report.triggers_added),
            ("replaced", report.triggers_replaced),
            ("dropped", report.triggers_dropped),
            ("kept", report.triggers_kept),
        ):
            if names:
                out.print(f"  capture triggers {label}: {', '.join(names)}")
    else:
        out.print(f"  consolidated tables: {', '.join(report.hub_tables)}")


@schema_app.command("check")
def schema_check(as_json: JsonOpt = False) -> None:
    """Validate the policy against the live database; exit 2 listing every problem."""
    from syncd.bootstrap import check_node as check

    problems = call(lambda: check(settings()))
    if as_json:
        print_json({"ok": not problems, "problems": problems})
    elif problems:
        print_table(
            "schema problems",
            ["table", "column", "problem"],
            [(p.table, p.column, p.problem) for p in problems],
        )
    else:
        out.print("schema ok: every declared table and column exists; capture triggers in place")
    if problems:
        raise typer.Exit(2)


node_app = typer.Typer(help="Hub admin: register city nodes.", no_args_is_help=True)
audit_app = typer.Typer(help="Auditors: sync history and its proof.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Rejected rows and why.", no_args_is_help=True)
conflicts_app = typer.Typer(help="Data stewards: the manual conflict queue.", no_args_is_help=True)
app.add_typer(node_app, name="node")
app.add_typer(audit_app, name="audit")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(conflicts_app, name="conflicts")


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


def hub_settings() -> Settings:
    s = settings()
    if not s.is_hub:
        usage(f"this command runs on the hub; {s.node.id} is a {s.node.role.value} node")
    return s


def _engine() -> Any:
    from syncd.db import create_engine

    return create_engine(settings().database.url)


def _read(fn: Callable[[Any], T]) -> T:
    """Run fn on a connection to this node's database; driver errors become syncd errors."""
    from syncd.db import translated

    def go() -> T:
        engine = _engine()
        try:
            with translated("reading"), engine.connect() as conn:
                return fn(conn)
        finally:
            engine.dispose()

    return call(go)


@app.command("sync")
def sync_cmd(
    once: Annotated[bool, typer.Option("--once", help="one cycle, then exit")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One push (city) or apply (hub) cycle."""
    from syncd.scheduler import sync_once

    if not once:
        usage("use `syncd sync --once` for one cycle, or `syncd run` for the daemon")
    result = call(lambda: sync_once(settings()))
    if as_json:
        print_json(result)
    else:
        out.print(" ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, dict)))


@app.command("run")
def run_cmd() -> None:
    """Run the daemon until SIGTERM/SIGINT, then stop cleanly."""
    from syncd.scheduler import Daemon

    code = call(lambda: Daemon(settings()).run())
    raise typer.Exit(code)


@app.command("status")
def status_cmd(as_json: JsonOpt = False) -> None:
    """City: backlog, lag, last acknowledgement. Hub: per node position, lag, problems."""
    from syncd.status import CityStatus, node_status

    st = call(lambda: node_status(settings()))
    if as_json:
        print_json(st)
        return
    if isinstance(st, CityStatus):
        lag = "-" if st.lag_seconds is None else f"{st.lag_seconds:.1f} s"
        print_table(
            f"{st.node_id} (city)",
            ["backlog rows", "lag", "last acked seq", "acked at", "last push", "last error"],
            [
                (
                    st.backlog_rows,
                    lag,
                    st.last_acked_seq,
                    st.last_acked_at,
                    st.last_push_at,
                    st.last_error,
                )
            ],
        )
    else:
        print_table(
            f"{st.node_id} (hub): {st.pending_batches} pending batches, "
            f"{st.quarantined} quarantined rows, {st.open_conflicts} open conflicts",
            [
                "node",
                "city",
                "last seen",
                "received",
                "applied",
                "pending",
                "lag s",
                "quarantined",
                "conflicts",
                "silent",
            ],
            [
                (
                    n.node_id,
                    n.city_code,
                    n.last_seen_at,
                    n.received_seq,
                    n.applied_seq,
                    n.pending_batches,
                    n.lag_seconds,
                    n.quarantined,
                    n.open_conflicts,
                    "SILENT" if n.silent else "",
                )
                for n in st.nodes
            ],
        )
    for w in st.warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)


@node_app.command("add")
def node_add(
    node_id: Annotated[str, typer.Argument(help="e.g. city-3301")],
    city_code: Annotated[str | None, typer.Option("--city-code", help="e.g. 3301")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a city node; on PostgreSQL create its credentials (shown once)."""
    import re

    from syncd.db import create_engine
    from syncd.inbox import register_node

    s = hub_settings()
    code = city_code or (re.findall(r"\d+", node_id) or [None])[-1]

    def go() -> Any:
        engine = create_engine(s.database.url)
        try:
            return register_node(engine, s.database.url, node_id, code)
        finally:
            engine.dispose()

    creds = call(go)
    if as_json:
        print_json({"node_id": creds.node_id, "hub_url": creds.hub_url})
        return
    out.print(f"registered {creds.node_id}")
    if creds.role_name:
        out.print("hub.url for the city's config (shown once, keep it secret):")
    out.print(creds.hub_url, markup=False, highlight=False)


@node_app.command("list")
def node_list(as_json: JsonOpt = False) -> None:
    """Registered nodes and their positions."""
    from syncd.inbox import list_nodes

    hub_settings()
    nodes = _read(list_nodes)
    if as_json:
        print_json(nodes)
        return
    print_table(
        "nodes",
        ["node", "city", "role", "registered", "received", "applied"],
        [
            (
                n["node_id"],
                n["city_code"],
                n["role_name"],
                n["registered_at"],
                n["received_seq"],
                n["applied_seq"],
            )
            for n in nodes
        ],
    )


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        usage(f"--since {value!r}: expected an ISO date or time, e.g. 2026-11-26T08:00")


@audit_app.command("log")
def audit_log(
    node: Annotated[str | None, typer.Option(help="only this node")] = None,
    table: Annotated[str | None, typer.Option(help="only this table")] = None,
    key: Annotated[str | None, typer.Option(help="only this row key (canonical JSON)")] = None,
    action: Annotated[str | None, typer.Option(help="only this action")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many entries")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Sync history: every decision the hub made."""
    from syncd import audit

    hub_settings()
    entries = _read(
        lambda c: audit.query(
            c, node=node, table=table, key=key, action=action, since=_since(since), limit=limit
        )
    )
    if as_json:
        print_json(entries)
        return
    print_table(
        "audit log",
        ["id", "at", "action", "node", "batch", "table", "key", "detail"],
        [
            (
                e["entry_id"],
                e["at"],
                e["action"],
                e["node_id"],
                e["batch_id"],
                e["table_name"],
                e["row_key"],
                e["detail"],
            )
            for e in entries
        ],
    )


@audit_app.command("verify")
def audit_verify(
    against: Annotated[
        str | None, typer.Option(help="an anchor printed earlier by `syncd audit head` (ID:HASH)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the hash chain; exit 1 naming the first broken entry."""
    from syncd import audit

    hub_settings()
    res = _read(lambda c: audit.verify(c, against=against))
    if as_json:
        print_json(res)
    elif res.ok:
        out.print(f"audit chain intact: {res.entries} entries, head {res.head_id}:{res.head_hash}")
    else:
        err.print(f"audit chain BROKEN at entry {res.broken_id}: {res.reason}", markup=False)
    if not res.ok:
        raise typer.Exit(1)


@audit_app.command("head")
def audit_head(as_json: JsonOpt = False) -> None:
    """Print the chain head: keep it outside the database, verify --against it later."""
    from syncd import audit

    hub_settings()
    entry_id, digest = _read(audit.head)
    anchor = audit.format_anchor(entry_id, digest)
    if as_json:
        print_json({"entry_id": entry_id, "hash": digest, "anchor": anchor})
    else:
        out.print(anchor, markup=False, highlight=False)


@audit_app.command("export")
def audit_export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or json")] = ExportFormat.CSV,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default stdout)")
    ] = None,
    node: Annotated[str | None, typer.Option()] = None,
    table: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Export the audit log (every column, hashes included) as CSV or JSON."""
    from syncd import audit

    hub_settings()

    kind: Literal["csv", "json"] = "json" if fmt is ExportFormat.JSON else "csv"

    def go(conn: Any) -> None:
        filters = {"node": node, "table": table, "action": action, "since": _since(since)}
        if output is None:
            audit.export(conn, sys.stdout, kind, **filters)
            return
        with output.open("w", encoding="utf-8", newline="") as fh:
            audit.export(conn, fh, kind, **filters)

    _read(go)


@quarantine_app.command("list")
def quarantine_list(
    status: Annotated[str, typer.Option(help="open, retried, superseded or all")] = "open",
    node: Annotated[str | None, typer.Option()] = None,
    table: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rows the hub rejected, with the reason."""
    from syncd import quarantine

    hub_settings()
    rows = _read(
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


@quarantine_app.command("show")
def quarantine_show(qid: int, as_json: JsonOpt = False) -> None:
    """One quarantined row in full."""
    from syncd import quarantine

    hub_settings()
    row = _read(lambda c: quarantine.show(c, qid))
    if as_json:
        print_json(row)
        return
    for k, v in row.items():
        out.print(f"[bold]{k}[/]: {to_jsonable(v)}")


@quarantine_app.command("retry")
def quarantine_retry(
    qid: Annotated[int | None, typer.Argument(help="id; omit with --all")] = None,
    all_open: Annotated[bool, typer.Option("--all", help="every open entry")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate quarantined rows again under the current policy; apply those that pass."""
    from syncd import quarantine
    from syncd.policy import load_policy

    s = hub_settings()
    if (qid is None) == (not all_open):
        usage("give one quarantine id, or --all")

    def go() -> Any:
        engine = _engine()
        try:
            return quarantine.retry(engine, load_policy(s.policy.path), qid)
        finally:
            engine.dispose()

    res = call(go)
    if as_json:
        print_json(res)
    else:
        out.print(to_jsonable(res))


@conflicts_app.command("list")
def conflicts_list(
    status: Annotated[str, typer.Option(help="open, resolved, superseded or all")] = "open",
    as_json: JsonOpt = False,
) -> None:
    """Fields whose sources disagree under rule `manual`."""
    from syncd import conflicts

    hub_settings()
    rows = _read(lambda c: conflicts.list_conflicts(c, status=None if status == "all" else status))
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


@conflicts_app.command("show")
def conflicts_show(cid: int, as_json: JsonOpt = False) -> None:
    """One conflict with every source's value."""
    from syncd import conflicts

    hub_settings()
    row = _read(lambda c: conflicts.show(c, cid))
    if as_json:
        print_json(row)
        return
    for k, v in row.items():
        out.print(f"[bold]{k}[/]: {to_jsonable(v)}")


@conflicts_app.command("resolve")
def conflicts_resolve(
    cid: int,
    take: Annotated[str | None, typer.Option("--take", help="take this node's value")] = None,
    value: Annotated[str | None, typer.Option("--value", help="set this value")] = None,
    by: Annotated[str | None, typer.Option("--by", help="who resolves (default: OS user)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Close a conflict with one source's value or an explicit value (audited)."""
    import getpass

    from syncd import conflicts
    from syncd.policy import load_policy

    s = hub_settings()
    who = by or getpass.getuser()

    def go() -> Any:
        engine = _engine()
        try:
            return conflicts.resolve(
                engine, load_policy(s.policy.path), cid, take_node=take, value=value, by=who
            )
        finally:
            engine.dispose()

    res = call(go)
    if as_json:
        print_json(res)
    else:
        out.print(f"conflict {cid} resolved by {who}: {to_jsonable(res)}")


def usage(message: str) -> NoReturn:
    fail(UsageError(message))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. an import-time failure: one line, exit 1
        try:
            fail(exc)
        except typer.Exit as stop:
            raise SystemExit(stop.exit_code) from None


if __name__ == "__main__":  # pragma: no cover
    main()
