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
from syncd.core.errors import SyncdError, UsageError
from syncd.core.redact import redact_url
from syncd.core.settings import Settings, load_settings

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
        from syncd.core import logs

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
    text = str(exc) if isinstance(exc, SyncdError) else (str(exc).splitlines() or [""])[0]
    hint = "" if _state.verbose or isinstance(exc, SyncdError) else " (-v for details)"
    err.print(f"syncd: {label}: {redact_url(text)}{hint}", markup=False, highlight=False)
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


def print_record(record: dict[str, Any], as_json: bool) -> None:
    """One record: JSON, or one `key: value` line per field."""
    if as_json:
        print_json(record)
        return
    for k, v in record.items():
        out.print(f"[bold]{k}[/]: {to_jsonable(v)}", highlight=False)


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
    from syncd.app import init_node

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
        if report.hub_columns_added:
            out.print(
                f"  columns added: {', '.join(report.hub_columns_added)} (existing rows hold "
                "NULL until cities send them; `syncd snapshot --table` at a city backfills)"
            )


@schema_app.command("check")
def schema_check(as_json: JsonOpt = False) -> None:
    """Validate the policy against the live database; exit 2 listing every problem."""
    from syncd.app import check_node as check

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


@app.command("snapshot")
def snapshot_cmd(
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


@app.command("demo")
def demo_cmd(
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
    result = call(lambda: demo.run_demo(opts, lambda m: out.print(m, highlight=False), _show_demo))
    out.print()
    for c in result.checks:
        mark = "[green]✓[/]" if c.ok else "[red]✗[/]"
        out.print(f"{mark} {c.name}: {c.detail}", highlight=False)
    if result.kept:
        out.print(f"\nthe demo's files are kept in {result.directory}; go on with e.g.")
        out.print(f"  syncd --config {result.hub_config} status", markup=False)
        out.print(
            f"  syncd --config {result.hub_config} report customer --id-number <ID>", markup=False
        )
        for node, conf in result.city_configs.items():
            out.print(f"  syncd --config {conf} status      # {node}", markup=False)
    if not result.ok:
        raise typer.Exit(1)


def _show_demo(result: Any) -> None:
    """Print what the hub holds after the demo, with the same functions the commands use."""
    from syncd.app import read_city_status, read_hub_status
    from syncd.core.settings import load_settings
    from syncd.hub import audit, conflicts, quarantine, reports

    hub = load_settings(result.hub_config)
    st = read_hub_status(hub)
    out.rule("node status")
    print_table(
        "hub-33",
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
            for n in st.nodes
        ],
    )
    print_table(
        "cities",
        ["node", "backlog rows", "last acked seq", "last error"],
        [
            (cs.node_id, cs.backlog_rows, cs.last_acked_seq, cs.last_error or "")
            for cs in (read_city_status(load_settings(p)) for p in result.city_configs.values())
        ],
    )
    from syncd.store.db import create_engine

    engine = create_engine(hub.database.url)
    try:
        with engine.connect() as conn:
            out.rule("conflicts and the rule that decided")
            decided = audit.query(conn, action="row_applied", table="customers", limit=5000)
            rows = []
            for e in decided:
                detail = e["detail"] if isinstance(e["detail"], dict) else {}
                for column, d in (detail.get("disputed") or {}).items():
                    if column in ("phone", "address", "name", "customer_type", "risk_tags"):
                        key = (e["row_key"] or {}).get("customer_id", "")
                        rows.append(
                            (
                                key,
                                detail.get("golden_id"),
                                column,
                                d.get("rule"),
                                d.get("winner") or "(all sources)",
                            )
                        )
            print_table(
                "fields the cities disagree on, as last decided (audit: row_applied)",
                ["source key", "golden", "field", "rule", "taken from"],
                rows[-10:],
            )
            open_c = conflicts.list_conflicts(conn)
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
                    for c in open_c
                ],
            )
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
                    for q in quarantine.list_entries(conn)
                ],
            )
            out.rule("manager report (syncd report cities / value; views report_*)")
            print_table(
                "cities",
                [
                    "node",
                    "customers",
                    "deposits",
                    "loans",
                    "overdue loans",
                    "non-performing",
                    "fee income",
                ],
                [
                    (
                        r["node_id"],
                        r["customers"],
                        _money(r["deposit_balance"]),
                        _money(r["loan_balance"]),
                        _money(r["overdue_loan_balance"]),
                        _money(
                            sum(
                                decimal.Decimal(str(r[k]))
                                for k in ("loan_substandard", "loan_doubtful", "loan_loss")
                            )
                        ),
                        _money(r["fee_income"]),
                    )
                    for r in reports.city_summary(conn)
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
                        _money(r["deposit_balance"]),
                        _money(r["loan_balance"]),
                        _money(r["contribution"]),
                    )
                    for r in reports.customer_value(conn, hub.report, 5)
                ],
            )
            out.rule("audit")
            res = audit.verify(conn)
            out.print(
                f"audit verify: {'intact' if res.ok else 'BROKEN'} — {res.entries} "
                f"entries, head {res.head_id}:{res.head_hash[:16]}…",
                highlight=False,
            )
            result.checks.append(
                _demo_check("the audit chain verifies", res.ok, f"{res.entries} entries")
            )
    finally:
        engine.dispose()


def _money(value: Any) -> str:
    return f"{decimal.Decimal(str(value or 0)):,.2f}"


def _demo_check(name: str, ok: bool, detail: str) -> Any:
    from syncd.daemon.demo import Check

    return Check(name, ok, detail)


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
    from syncd.store.db import create_engine

    s = settings()
    return create_engine(s.database.url, **s.engine_options)


def _with_engine(fn: Callable[[Any], T]) -> T:
    """Run fn with an engine on this node's database, disposed after; errors made readable."""

    def go() -> T:
        engine = _engine()
        try:
            return fn(engine)
        finally:
            engine.dispose()

    return call(go)


def _read(fn: Callable[[Any], T]) -> T:
    """Run fn on a connection to this node's database; driver errors become syncd errors."""
    from syncd.store.db import translated

    def on(engine: Any) -> T:
        with translated("reading"), engine.connect() as conn:
            return fn(conn)

    return _with_engine(on)


@app.command("sync")
def sync_cmd(
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


@app.command("run")
def run_cmd() -> None:
    """Run the daemon until SIGTERM/SIGINT, then stop cleanly."""
    from syncd.daemon.scheduler import Daemon

    code = call(lambda: Daemon(settings()).run())
    raise typer.Exit(code)


@app.command("status")
def status_cmd(as_json: JsonOpt = False) -> None:
    """City: backlog, lag, last acknowledgement. Hub: per node position, lag, problems.

    Exits 1 when the node is unhealthy: a failed cycle, or (hub) a node whose batches fail.
    """
    from syncd.app import node_status

    st = call(lambda: node_status(settings()))
    if as_json:
        print_json(st)
    else:
        _print_status(st)
    if not st.healthy:
        raise typer.Exit(1)


def _print_status(st: Any) -> None:
    from syncd.city.status import CityStatus

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
                "state",
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
                    " ".join(w for w, on in (("FAILING", n.failing), ("SILENT", n.silent)) if on),
                )
                for n in st.nodes
            ],
        )
    for p in st.problems:
        err.print(f"problem: {p}", markup=False, highlight=False)
    for w in st.warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)


HubUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--hub-url", help="the hub's database URL as cities reach it (default: this config's)"
    ),
]


def _on_hub(work: Callable[[Any, str], Any], hub_url: str | None) -> Any:
    """work(engine, the hub URL cities use) on this hub's database, errors made readable."""
    s = hub_settings()
    return _with_engine(lambda engine: work(engine, hub_url or s.database.url))


@node_app.command("add")
def node_add(
    node_id: Annotated[str, typer.Argument(help="e.g. city-3301")],
    city_code: Annotated[str | None, typer.Option("--city-code", help="e.g. 3301")] = None,
    hub_url: HubUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a city node; on PostgreSQL create its credentials (shown once)."""
    import re

    from syncd.hub.inbox import register_node

    code = city_code or (re.findall(r"\d+", node_id) or [None])[-1]
    creds = _on_hub(lambda engine, url: register_node(engine, url, node_id, code), hub_url)
    if as_json:
        print_json({"node_id": creds.node_id, "hub_url": creds.hub_url})
        return
    out.print(f"registered {creds.node_id}")
    if creds.role_name:
        out.print("hub.url for the city's config (shown once, keep it secret):")
    out.print(creds.hub_url, markup=False, highlight=False)


@node_app.command("rotate")
def node_rotate(
    node_id: Annotated[str, typer.Argument(help="a registered node, e.g. city-3301")],
    hub_url: HubUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a node new credentials (shown once); the old password and its sessions end now."""
    from syncd.hub.inbox import rotate_credentials

    creds = _on_hub(lambda engine, url: rotate_credentials(engine, url, node_id), hub_url)
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


@node_app.command("list")
def node_list(as_json: JsonOpt = False) -> None:
    """Registered nodes and their positions."""
    from syncd.hub.inbox import list_nodes

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
    from syncd.hub import audit

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
    from syncd.hub import audit

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
    from syncd.hub import audit

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
    from syncd.hub import audit

    hub_settings()

    kind: Literal["csv", "json"] = "json" if fmt is ExportFormat.JSON else "csv"

    when = _since(since)

    def go(conn: Any) -> None:
        if output is None:
            audit.export(conn, sys.stdout, kind, node=node, table=table, action=action, since=when)
            return
        with output.open("w", encoding="utf-8", newline="") as fh:
            audit.export(conn, fh, kind, node=node, table=table, action=action, since=when)

    _read(go)


@quarantine_app.command("list")
def quarantine_list(
    status: Annotated[str, typer.Option(help="open, retried, superseded or all")] = "open",
    node: Annotated[str | None, typer.Option()] = None,
    table: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rows the hub rejected, with the reason."""
    from syncd.hub import quarantine

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
    from syncd.hub import quarantine

    hub_settings()
    print_record(_read(lambda c: quarantine.show(c, qid)), as_json)


@quarantine_app.command("retry")
def quarantine_retry(
    qid: Annotated[int | None, typer.Argument(help="id; omit with --all")] = None,
    all_open: Annotated[bool, typer.Option("--all", help="every open entry")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate quarantined rows again under the current policy; apply those that pass."""
    from syncd.core.policy import load_policy
    from syncd.hub import quarantine

    s = hub_settings()
    if (qid is None) == (not all_open):
        usage("give one quarantine id, or --all")

    res = _with_engine(lambda engine: quarantine.retry(engine, load_policy(s.policy.path), qid))
    if as_json:
        print_json(res)
        return
    out.print(
        f"retried and applied: {len(res.retried)}, superseded by newer versions: "
        f"{len(res.superseded)}, refused by the current policy: {len(res.refused)}, "
        f"still invalid: {len(res.still_invalid)}",
        highlight=False,
    )
    for qid_, reason in res.still_invalid.items():
        out.print(f"  {qid_}: {reason}", markup=False, highlight=False)


@conflicts_app.command("list")
def conflicts_list(
    status: Annotated[str, typer.Option(help="open, resolved, superseded or all")] = "open",
    as_json: JsonOpt = False,
) -> None:
    """Fields whose sources disagree under rule `manual`."""
    from syncd.hub import conflicts

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
    from syncd.hub import conflicts

    hub_settings()
    print_record(_read(lambda c: conflicts.show(c, cid)), as_json)


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

    from syncd.core.policy import load_policy
    from syncd.hub import conflicts

    s = hub_settings()
    who = by or getpass.getuser()

    res = _with_engine(
        lambda engine: conflicts.resolve(
            engine, load_policy(s.policy.path), cid, take_node=take, value=value, by=who
        )
    )
    if as_json:
        print_json(res)
    else:
        out.print(
            f"conflict {cid} resolved by {who}: {res.get('column')} = {res.get('value')!r}",
            markup=False,
            highlight=False,
        )


report_app = typer.Typer(
    help="Managers: consolidated reports; each is also a report_* view on the hub.",
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")

CsvOpt = Annotated[bool, typer.Option("--csv", help="print CSV to stdout instead of a table")]


def _csv_cell(value: Any) -> str:
    value = to_jsonable(value)
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def print_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_csv_cell(v) for v in row] for row in rows)


def _report_rows(
    title: str,
    rows: list[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    as_json: bool,
    as_csv: bool,
) -> None:
    """Render a flat report: JSON or CSV with every key, or a table of (key, label) columns."""
    if as_json:
        print_json(rows)
    elif as_csv:
        keys = list(rows[0]) if rows else [k for k, _ in columns]
        print_csv(keys, ([r[k] for k in keys] for r in rows))
    else:
        print_table(
            title,
            [label for _, label in columns],
            ([_csv_cell(r[k]) for k, _ in columns] for r in rows),
        )


def _one_format(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        usage("--json and --csv: choose one")


@report_app.command("customer")
def report_customer(
    id_number: Annotated[str, typer.Option("--id-number", help="the customer's ID number")],
    id_type: Annotated[
        str | None,
        typer.Option("--id-type", help="e.g. ric or passport (if ambiguous)"),
    ] = None,
    as_json: JsonOpt = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV: section,node,record,column,value per field")
    ] = False,
) -> None:
    """Customer 360: golden record, each city's version and differences, products, cities."""
    from syncd.core.policy import load_policy
    from syncd.hub import reports

    _one_format(as_json, as_csv)
    s = hub_settings()
    policy = call(lambda: load_policy(s.policy.path))
    view = _read(lambda c: reports.customer_360(c, policy, id_number, id_type))
    if as_json:
        print_json(view)
    elif as_csv:
        print_csv(["section", "node", "record", "column", "value"], _customer_csv(view, policy))
    else:
        _customer_tables(view)


_PRODUCT_SECTIONS = (
    ("deposits", "deposit_accounts"),
    ("loans", "loans"),
    ("intermediary_business", "intermediary_business"),
)
# What a table of products shows; --json and --csv carry every column.
_PRODUCT_COLUMNS = {
    "deposits": ("origin_node", "account_id", "product", "currency", "balance", "status"),
    "loans": ("origin_node", "loan_id", "product", "balance", "five_class", "overdue_days"),
    "intermediary_business": (
        "origin_node",
        "business_id",
        "product_type",
        "product_name",
        "fee_income",
        "trade_date",
    ),
}
_LINK_COLUMNS = frozenset({"golden_id", "id_type", "id_number", "origin_node", "city_code"})


def _customer_csv(view: dict[str, Any], policy: Any) -> Iterable[Sequence[Any]]:
    golden = view["golden"]
    for k, v in golden.items():
        yield ("golden", "", golden["golden_id"], k, v)
    for src in view["sources"]:
        record = "/".join(str(src[k]) for k in policy.table("customers").primary_key)
        for k, v in src.items():
            yield ("source", src["origin_node"], record, k, v)
    for diff in view["differences"]:
        for node, v in diff["values"].items():
            yield ("difference", node, "", diff["column"], v)
    for section, table in _PRODUCT_SECTIONS:
        for row in view[section]:
            record = "/".join(str(row[k]) for k in policy.table(table).primary_key)
            for k, v in row.items():
                if k not in _LINK_COLUMNS:
                    yield (section, row["origin_node"], record, k, v)


def _customer_tables(view: dict[str, Any]) -> None:
    golden = view["golden"]
    out.print(
        f"[bold]{golden['name']}[/] ({golden['id_type']} {golden['id_number']}), "
        f"golden record {golden['golden_id']}, cities: {', '.join(view['cities'])}",
        highlight=False,
    )
    print_table("golden record", ["field", "value"], golden.items())
    sources = view["sources"]
    differing = {d["column"] for d in view["differences"]}
    fields = [k for k in (sources[0] if sources else {}) if k != "origin_node"]
    print_table(
        "each city's version (≠: differs between cities)",
        ["field", *(s["origin_node"] for s in sources), ""],
        ([f, *(s[f] for s in sources), "≠" if f in differing else ""] for f in fields),
    )
    for section, _ in _PRODUCT_SECTIONS:
        rows = view[section]
        keys = [k for k in _PRODUCT_COLUMNS[section] if not rows or k in rows[0]]
        print_table(section.replace("_", " "), keys, ([r[k] for k in keys] for r in rows))
    totals = view["totals"]
    out.print(
        f"deposits {totals['deposit_balance']}, loans {totals['loan_balance']}, "
        f"fee income {totals['fee_income']}",
        highlight=False,
    )


@report_app.command("cities")
def report_cities(as_json: JsonOpt = False, as_csv: CsvOpt = False) -> None:
    """Per city: customers, deposits, loans by five-class category, overdue, fees, last sync."""
    from syncd.hub import reports

    _one_format(as_json, as_csv)
    hub_settings()
    rows = _read(reports.city_summary)
    _report_rows(
        "cities (view report_city_summary)",
        rows,
        [
            ("node_id", "node"),
            ("city_code", "city"),
            ("customers", "customers"),
            ("deposit_balance", "deposits"),
            ("loan_balance", "loans"),
            ("loan_normal", "normal"),
            ("loan_special_mention", "special mention"),
            ("loan_substandard", "substandard"),
            ("loan_doubtful", "doubtful"),
            ("loan_loss", "loss"),
            ("overdue_loan_balance", "overdue"),
            ("fee_income", "fee income"),
            ("last_applied_at", "last applied"),
            ("last_seen_at", "last seen"),
        ],
        as_json,
        as_csv,
    )


@report_app.command("value")
def report_value(
    top: Annotated[int | None, typer.Option("--top", help="only the first N customers")] = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Customer contribution (贡献度) province-wide, ranked, with value tiers ([report] weights)."""
    from syncd.hub import reports

    _one_format(as_json, as_csv)
    s = hub_settings()
    rows = _read(lambda c: reports.customer_value(c, s.report, top))
    _report_rows(
        "customer value (view report_customer_value_base; weights: config, report section)",
        rows,
        [
            ("rank", "rank"),
            ("tier", "tier"),
            ("name", "name"),
            ("id_type", "id type"),
            ("id_number", "id number"),
            ("cities", "cities"),
            ("deposit_balance", "deposits"),
            ("loan_balance", "loans"),
            ("fee_income", "fee income"),
            ("contribution", "contribution"),
        ],
        as_json,
        as_csv,
    )


@report_app.command("exposure")
def report_exposure(
    min_amount: Annotated[
        str, typer.Option("--min", help="cross-city total loan balance that warns (default 0)")
    ] = "0",
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Cross-city credit exposure and early warning (风险预警): multi-city, overdue, NPL."""
    from syncd.hub import reports

    _one_format(as_json, as_csv)
    hub_settings()
    try:
        threshold = decimal.Decimal(min_amount)
    except decimal.InvalidOperation:
        usage(f"--min {min_amount!r}: not an amount")
    rows = _read(lambda c: reports.credit_exposure(c, threshold))
    _report_rows(
        f"credit exposure (view report_credit_exposure, cross-city minimum {threshold})",
        rows,
        [
            ("name", "name"),
            ("id_type", "id type"),
            ("id_number", "id number"),
            ("loan_cities", "loan cities"),
            ("loan_count", "loans"),
            ("loan_balance", "balance"),
            ("max_overdue_days", "max overdue days"),
            ("worst_five_class", "worst class"),
            ("warnings", "warnings"),
        ],
        as_json,
        as_csv,
    )


def usage(message: str) -> NoReturn:
    fail(UsageError(message))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:
        try:
            fail(exc)
        except typer.Exit as stop:
            raise SystemExit(stop.exit_code) from None


if __name__ == "__main__":  # pragma: no cover
    main()
