"""`syncd demo`: the whole system on embedded SQLite — a hub, N cities, real daemons, reports.

Each node is initialised with `init`, the cities are registered at the hub, seeded CRM data is
written to each city's CRM with plain SQL (the triggers capture it), and the real daemons
(`syncd run`, as child processes) move it. Then two cities edit the same customers at once,
and the demo prints what the hub decided, with its own checks of the guarantees.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd.app import Node, init_node, read_city_status
from syncd.city import insights
from syncd.city.crm import crm_metadata
from syncd.city.status import CityStatus
from syncd.core import demo_data
from syncd.core.errors import NodeLocked, SyncdError, UsageError
from syncd.core.policy import Policy, load_policy
from syncd.core.settings import Settings, load_settings
from syncd.daemon.lock import NodeLock
from syncd.hub import analysis, audit, audit_query, conflicts, downlink, quarantine, reports
from syncd.hub.audit import VerifyResult
from syncd.hub.nodes import display_names, register_node
from syncd.hub.status import HubStatus, hub_status
from syncd.store import hub_tables as schema_hub
from syncd.store.db import create_engine

Say = Callable[[str], None]
# The customer fields whose disputes the demo shows, and how many of the last decisions.
DISPUTED_FIELDS = ("phone", "address", "name", "customer_type", "risk_tags")
SHOWN_DECISIONS = 10
TOP_CUSTOMERS = 5


# Written into the demo's directory: a later demo may replace what it finds there, and only
# files that match DEMO_FILES; anything else in a directory is never deleted.
MARKER = "SYNCD-DEMO"
DEMO_FILES = ("*.db", "*.db-wal", "*.db-shm", "*.db-journal", "*.toml", "*.log", "crm.yaml")


@dataclass
class DemoOptions:
    """`directory` None: a temporary directory, removed when the demo ends (`syncd demo --tmp`)."""

    directory: Path | None = None
    cities: int = 3
    customers: int = 300
    seed: int = 7
    timeout: float = 120.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class DemoResult:
    directory: Path
    kept: bool
    hub_config: Path
    city_configs: dict[str, Path]
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass(frozen=True)
class Decision:
    """One field the cities disagreed on, and the rule that decided it (audit: row_applied)."""

    source_key: str
    golden_id: Any
    field: str
    rule: Any
    taken_from: str


@dataclass(frozen=True)
class DemoReport:
    """What the hub holds after the demo, read with the same functions the commands use."""

    hub: HubStatus
    cities: list[CityStatus]
    decisions: list[Decision]
    open_conflicts: list[dict[str, Any]]
    quarantined: list[dict[str, Any]]
    city_summary: list[dict[str, Any]]  # report cities, plus `non_performing`
    top_customers: list[dict[str, Any]]
    audit: VerifyResult
    names: dict[str, str] = field(default_factory=dict)  # node id -> display name
    # A relationship manager's screen at the first city: its customers joined to the
    # province's insight (syncd_province_insight), best contribution first.
    rm_city: str = ""
    rm_view: list[dict[str, Any]] = field(default_factory=list)


RM_ROWS = 8


def policy_file() -> Path:
    """The reference policy shipped with the package (or the checkout's schemas/)."""
    packaged = resources.files("syncd").joinpath("_schemas/crm.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(str(resources.files("syncd"))).resolve().parent / "schemas" / "crm.yaml"


def _config(path: Path, node_id: str, role: str, db: Path, hub_db: Path | None) -> Path:
    lines = [
        "# written by `syncd demo`",
        "[node]", f'id = "{node_id}"', f'role = "{role}"',
        "[database]", f'url = "sqlite:///{db.name}"',
        "[policy]", 'path = "crm.yaml"',
        "[sync]", "interval_seconds = 0.3", "retry_max_wait_seconds = 5",
        "[downlink]", "publish_interval_seconds = 1",
        "[log]", 'format = "json"', 'level = "info"',
    ]  # fmt: skip
    if hub_db is not None:
        lines += ["[hub]", f'url = "sqlite:///{hub_db.name}"', "[crm]", "create_schema = true"]
    else:
        # The hub's console (`syncd demo --console`, or `syncd --config hub.toml console`)
        # is tried over plain HTTP on this machine: a Secure cookie would never come back.
        lines += ["[console]", "secure_cookies = false"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Daemons:
    """The nodes' `syncd run` processes, stopped with SIGTERM as ops would stop them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, config: Path) -> None:
        log = (self.directory / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(config), "run"],
            stdout=log,
            stderr=log,
            cwd=self.directory,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.directory / f"{name}.log").read_text(errors="replace")[-800:]
                raise SyncdError(f"daemon {name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = None
        self.procs.clear()
        return codes


def _write_rows(engine: Engine, policy: Policy, tables: dict[str, list[dict[str, Any]]]) -> int:
    """Write a city's CRM rows with plain SQL; the capture triggers see every one."""
    md = crm_metadata(policy)
    n = 0
    with engine.begin() as conn:
        for name, rows in tables.items():
            if rows:
                conn.execute(md.tables[name].insert(), rows)
                n += len(rows)
    return n


def _apply_edits(engines: dict[str, Engine], policy: Policy, edits: list[demo_data.Edit]) -> None:
    """Each city writes its edits in its own transaction, the cities at the same moment."""
    by_city: dict[str, list[demo_data.Edit]] = {}
    for e in edits:
        by_city.setdefault(e.city_code, []).append(e)
    for code, city_edits in by_city.items():
        engine = engines[code]
        md = crm_metadata(policy)
        with engine.begin() as conn:
            for e in city_edits:
                t = md.tables[e.table]
                cond = sa.and_(*[t.c[k] == v for k, v in e.key.items()])
                conn.execute(t.update().where(cond).values(**e.changes))


def _settled(hub: Engine, cities: dict[str, Engine]) -> bool:
    """Every change captured in every city is applied at the hub."""
    from syncd.store.city_tables import changelog

    with hub.connect() as conn:
        nodes = {r.node_id: r for r in conn.execute(sa.select(schema_hub.nodes))}
        pending = conn.execute(
            sa.select(sa.func.count()).where(schema_hub.batches.c.status == "pending")
        ).scalar_one()
    if pending:
        return False
    for node_id, engine in cities.items():
        with engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(changelog.c.seq))).scalar() or 0
        node = nodes.get(node_id)
        if node is None or node.applied_seq < top:
            return False
    return True


def _down_settled(hub: Engine) -> bool:
    """The hub built after its last apply, and every city applied what it built."""
    d = schema_hub.downlink_nodes
    with hub.connect() as conn:
        behind = conn.execute(
            sa.select(sa.func.count()).where(d.c.acked_seq < d.c.built_seq)
        ).scalar_one()
        return not behind and not downlink.due(conn)


def _wait(hub: Engine, cities: dict[str, Engine], daemons: Daemons, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        daemons.check_alive()
        if _settled(hub, cities) and _down_settled(hub):
            return time.monotonic() - started
        time.sleep(0.3)
    raise SyncdError(
        f"the hub did not catch up within {timeout:.0f} s; see the logs in {daemons.directory}"
    )


def _checks(hub: Engine, policy: Policy, manifest: demo_data.Manifest) -> list[Check]:
    """The guarantees the demo shows, checked against what the hub really holds."""
    insp = sa.inspect(hub)
    tables = set(insp.get_table_names())
    local = [t.name for t in policy.tables.values() if not t.is_public]
    checks = [
        Check(
            "local tables stay in the cities",
            not (tables & set(local)),
            f"hub tables: none of {', '.join(local)}",
        )
    ]
    leaked = [
        f"{t.name}.{c}"
        for t in policy.public_tables
        for c in t.exclude
        for name in (schema_hub.source_table_name(t), t.name)
        if name in tables and c in {col["name"] for col in insp.get_columns(name)}
    ]
    checks.append(
        Check(
            "excluded columns stay in the cities",
            not leaked,
            "none of rm_notes, approval_memo at the hub" if not leaked else f"found {leaked}",
        )
    )
    with hub.connect() as conn:
        prospects = conn.execute(
            sa.text("SELECT count(*) FROM src_customers WHERE status = 'prospect'")
        ).scalar_one()
        goldens = conn.execute(
            sa.text("SELECT count(*) FROM customers WHERE NOT _deleted")
        ).scalar_one()
        quarantined = conn.execute(
            sa.text("SELECT count(*) FROM syncd_quarantine WHERE status = 'open'")
        ).scalar_one()
        conflicts = conn.execute(
            sa.text("SELECT count(*) FROM syncd_conflict WHERE status = 'open'")
        ).scalar_one()
    seeded_prospects = len(manifest.prospects)
    checks += [
        Check(
            "prospects (潜在客户) stay in the cities",
            prospects == 0,
            f"{seeded_prospects} seeded, {prospects} at the hub",
        ),
        Check(
            "one golden record per customer identity",
            goldens == manifest.golden_customers,
            f"{goldens} golden customers, {manifest.golden_customers} expected",
        ),
        Check(
            "invalid ID numbers are quarantined, the rest applied",
            quarantined == len(manifest.invalid_ids),
            f"{quarantined} quarantined, {len(manifest.invalid_ids)} seeded",
        ),
        Check(
            "a manual-rule disagreement opens a conflict",
            conflicts >= 1,
            f"{conflicts} open conflict(s)",
        ),
    ]
    return checks


def _decisions(entries: list[dict[str, Any]]) -> list[Decision]:
    rows = []
    for e in entries:
        detail = e["detail"] if isinstance(e["detail"], dict) else {}
        for column, d in (detail.get("disputed") or {}).items():
            if column in DISPUTED_FIELDS:
                rows.append(
                    Decision(
                        (e["row_key"] or {}).get("customer_id", ""),
                        detail.get("golden_id"),
                        column,
                        d.get("rule"),
                        d.get("winner") or "(all sources)",
                    )
                )
    return rows[-SHOWN_DECISIONS:]


def hub_report(result: DemoResult) -> DemoReport:
    """Read what the hub holds; the audit chain's verification is added to the checks."""
    hub = load_settings(result.hub_config)
    cities = [read_city_status(load_settings(p)) for p in result.city_configs.values()]
    with Node.open(hub) as node, node.engine.connect() as conn:
        report = DemoReport(
            hub=hub_status(hub, node.engine),
            cities=cities,
            decisions=_decisions(
                audit_query.query(conn, action="row_applied", table="customers", limit=5000)
            ),
            open_conflicts=conflicts.list_conflicts(conn),
            quarantined=quarantine.list_entries(conn),
            city_summary=[
                {**r, "non_performing": analysis.non_performing(r)}
                for r in reports.city_summary(conn)
            ],
            top_customers=reports.customer_value(conn, hub.report, TOP_CUSTOMERS),
            audit=audit.verify(conn),
            names=display_names(conn),
        )
    result.checks.append(
        Check("the audit chain verifies", report.audit.ok, f"{report.audit.entries} entries")
    )
    result.checks.append(_downlink_check(result))
    first = next(iter(result.city_configs.values()))
    city = load_settings(first)
    with Node.open(city) as node, node.engine.connect() as conn:
        rm_view = insights.listing(conn, node.policy, limit=RM_ROWS)
    return dataclasses.replace(report, rm_city=city.node.id, rm_view=rm_view)


def _downlink_check(result: DemoResult) -> Check:
    """Each city holds the province's insight on exactly the customers it sent, no other."""
    hub = load_settings(result.hub_config)
    with Node.open(hub) as node, node.engine.connect() as conn:
        src = schema_hub.policy_metadata(node.policy).tables["src_customers"]
        rows = conn.execute(
            sa.select(src.c[schema_hub.ORIGIN], src.c.customer_id).where(src.c._deleted.is_(False))
        ).all()
    expected: dict[str, set[str]] = {}
    for origin, cid in rows:
        expected.setdefault(origin, set()).add(cid)
    wrong, total = [], 0
    for node_id, conf in result.city_configs.items():
        engine = create_engine(load_settings(conf).database.url)
        with engine.connect() as conn:
            held = set(
                conn.execute(sa.text("SELECT customer_id FROM syncd_province_insight")).scalars()
            )
        engine.dispose()
        total += len(held)
        if held != expected.get(node_id, set()):
            wrong.append(node_id)
    return Check(
        "each city received the province's insight on its own customers only",
        not wrong and total > 0,
        f"{total} insight rows in {len(result.city_configs)} cities"
        + (f"; differ: {', '.join(wrong)}" if wrong else ""),
    )


def run_demo(
    opts: DemoOptions, say: Say, show: Callable[[DemoReport], None] | None = None
) -> DemoResult:
    """Set up, sync, edit, sync again, check; returns what happened (printing is the caller's)."""
    if opts.cities < 1 or opts.cities > len(demo_data.CITIES):
        raise UsageError(f"--cities {opts.cities}: choose 1 to {len(demo_data.CITIES)}")
    if opts.customers < 10:
        raise UsageError(f"--customers {opts.customers}: at least 10")
    keep = opts.directory is not None
    directory = (opts.directory or Path(tempfile.mkdtemp(prefix="syncd-demo-"))).absolute()
    replaced = prepare_directory(directory)
    if replaced:
        say(f"replacing the previous demo in {directory} ({replaced} files)")
    shutil.copyfile(policy_file(), directory / "crm.yaml")
    cities = demo_data.cities(opts.cities)
    hub_conf = _config(directory / "hub.toml", "hub-33", "hub", directory / "hub.db", None)
    city_confs = {
        f"city-{c.code}": _config(
            directory / f"city-{c.code}.toml",
            f"city-{c.code}",
            "city",
            directory / f"city-{c.code}.db",
            directory / "hub.db",
        )
        for c in cities
    }
    result = DemoResult(directory, keep, hub_conf, city_confs)
    daemons = Daemons(directory)
    try:
        _run(opts, say, result, daemons, cities)
        if show is not None:
            show(hub_report(result))  # before the directory goes away
    finally:
        daemons.stop()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    return result


def prepare_directory(directory: Path) -> int:
    """Make `directory` ready for a demo; returns how many files of a previous demo it removed.

    A new or empty directory is used as it is; a previous demo's (it holds MARKER) is emptied of
    the demo's own files once none of its nodes is locked by a running daemon; any other
    directory with files in it is refused, as the demo never deletes what it did not write.
    """
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--dir {directory}: not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.iterdir()):
        (directory / MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
        return 0
    if not (directory / MARKER).is_file():
        raise UsageError(
            f"--dir {directory}: not empty and not a previous demo's directory "
            f"(no {MARKER} file); choose a new or empty directory"
        )
    for db in sorted(directory.glob("*.db")):
        _refuse_if_running(db)
    old = [f for pattern in DEMO_FILES for f in directory.glob(pattern) if f.is_file()]
    for f in old:
        f.unlink()
    return len(old)


_MARKER_TEXT = (
    "Written by `syncd demo`: a hub and cities on SQLite (*.db), their configs (*.toml), the\n"
    "daemons' logs (*.log) and the policy (crm.yaml). The next `syncd demo` in this directory\n"
    "replaces these files. Delete them with `rm -rf` on this directory.\n"
)


def _refuse_if_running(db: Path) -> None:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with NodeLock(engine, db.stem):
            pass
    except NodeLocked:
        raise UsageError(
            f"{db}: a syncd process (e.g. `syncd run`) is still running on the previous demo; "
            "stop it, then run the demo again"
        ) from None
    finally:
        engine.dispose()


def _run(
    opts: DemoOptions, say: Say, result: DemoResult, daemons: Daemons, cities: list[demo_data.City]
) -> None:
    hub_settings = load_settings(result.hub_config)
    policy = load_policy(hub_settings.policy.path)
    say(f"[1/6] initialising hub-33 and {len(cities)} cities in {result.directory}")
    init_node(hub_settings, policy)
    hub = create_engine(hub_settings.database.url)
    engines: dict[str, Engine] = {}
    settings: dict[str, Settings] = {}
    for c in cities:
        node = f"city-{c.code}"
        register_node(hub, hub_settings.database.url, node, c.code, c.short_name)
        settings[node] = load_settings(result.city_configs[node])
        init_node(settings[node], policy)
        engines[node] = create_engine(settings[node].database.url)
    say(f"[2/6] generating CRM data: {opts.customers} customers, seed {opts.seed}")
    data = demo_data.generate(cities, opts.customers, opts.seed)
    manifest = data.manifest
    for c in cities:
        n = _write_rows(engines[f"city-{c.code}"], policy, data.tables[c.code])
        say(f"      {c.name} ({c.code}): {n} rows written to its CRM")
    say("[3/6] starting the daemons (syncd run) and waiting for the hub to catch up")
    daemons.start("hub-33", result.hub_config)
    for node, conf in result.city_configs.items():
        daemons.start(node, conf)
    by_node = {f"city-{c.code}": engines[f"city-{c.code}"] for c in cities}
    took = _wait(hub, by_node, daemons, opts.timeout)
    say(f"      synced in {took:.1f} s")
    edits = demo_data.conflicting_edits(manifest, opts.seed)
    say(f"[4/6] {len(edits)} conflicting edits in two cities at once, then sync again")
    for e in edits:
        changed = ", ".join(f"{k}={v}" for k, v in e.changes.items() if k != "updated_at")
        say(f"      city {e.city_code}: {e.table} {e.key}: {changed}  ({e.note})")
    _apply_edits({c.code: engines[f"city-{c.code}"] for c in cities}, policy, edits)
    took = _wait(hub, by_node, daemons, opts.timeout)
    say(f"      synced in {took:.1f} s")
    say("[5/6] stopping the daemons (SIGTERM)")
    codes = daemons.stop()
    result.facts["daemon_exit_codes"] = codes
    result.checks.append(
        Check(
            "daemons stop cleanly on SIGTERM", all(code == 0 for code in codes.values()), str(codes)
        )
    )
    say("[6/6] checking what the hub holds")
    result.checks += _checks(hub, policy, manifest)
    result.facts["manifest"] = manifest
    hub.dispose()
    for engine in engines.values():
        engine.dispose()


# `syncd demo --console`: one console user per role, all with one password made for this run.
DEMO_CONSOLE_USERS = (
    ("demo-manager", "manager", "王丽"),
    ("demo-auditor", "auditor", "陈刚"),
    ("demo-ops", "ops", "刘洋"),
    ("demo-steward", "steward", "李娜"),
)


def add_demo_console_users(hub_config: Path) -> tuple[str, list[tuple[str, str]]]:
    """Add the demo's console users to its hub; returns their password and (user, role) pairs.

    The password is random per run and shown once by the caller: the demo's hub.db is kept
    in demo-out/ and may be copied around, so it never holds a password anybody could know
    from reading this code.
    """
    import secrets
    import string

    from syncd.hub import console_users

    alphabet = string.ascii_letters + string.digits  # nothing to misread when copied
    password = "".join(secrets.choice(alphabet) for _ in range(16))
    settings = load_settings(hub_config)
    engine = create_engine(settings.database.url)
    try:
        for username, role, name in DEMO_CONSOLE_USERS:
            console_users.add_user(
                engine, username, [role], password, display_name=name, by="syncd demo"
            )
    finally:
        engine.dispose()
    return password, [(u, r) for u, r, _ in DEMO_CONSOLE_USERS]
