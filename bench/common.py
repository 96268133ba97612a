"""Shared bench plumbing: databases and private clusters, CRM data, syncd nodes, timing, RSS.

Benchmarks print figures and assert nothing. Everything here cleans up after itself: scratch
databases are dropped (with the login roles `syncd node add` made for them), private clusters
are stopped and their directories removed, daemons are stopped by their own process id.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from stdnum.cn import ric

REPO = Path(__file__).resolve().parent.parent
POLICY_PATH = REPO / "schemas" / "crm.yaml"
SYNCD = str(Path(sys.executable).parent / "syncd")
PG_ADMIN = os.environ.get("SYNCD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BIN = Path(os.environ.get("SYNCD_PG_BIN", "/usr/lib/postgresql/15/bin"))
CITY_CODES = ("3301", "3302", "3303")
PUBLIC_TABLES = ("customers", "deposit_accounts", "loans", "intermediary_business")
MB = 1024 * 1024


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def clean_exit_on_sigterm() -> None:
    """Turn SIGTERM (a CI timeout, `kill`) into KeyboardInterrupt, so every `finally` runs."""
    signal.signal(signal.SIGTERM, _interrupt)


# --- timing and output --------------------------------------------------------------------


@dataclass
class Stopwatch:
    """Accumulates wall-clock seconds over one or more `with watch:` blocks."""

    seconds: float = 0.0
    _started: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._started


def rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else float("nan")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least pct % of samples at or below."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain fixed-width table: first column left-aligned, the rest right-aligned."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = (v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


# --- PostgreSQL: scratch databases on a running server ------------------------------------


def sa_url(url: str) -> str:
    """A libpq URL as syncd's SQLAlchemy URL (psycopg 3 driver)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def pq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def database_url(admin: str, name: str) -> str:
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def _role_tag(dbname: str) -> str:
    # syncd.hub.nodes.role_name_for: node roles are suffixed with a hash of the hub database name.
    return hashlib.sha256(dbname.encode()).hexdigest()[:6]


def create_database(admin: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn.execute(stmt)
    return database_url(admin, name)


def drop_database(admin: str, name: str) -> None:
    """Drop a database and the node login roles a hub in it created (roles are cluster-wide)."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        roles = conn.execute(
            "SELECT rolname FROM pg_roles"
            " WHERE starts_with(rolname, 'syncd_') AND right(rolname, 7) = %s",
            ("_" + _role_tag(name),),
        ).fetchall()
        for (role,) in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextlib.contextmanager
def scratch_databases(admin: str, *labels: str) -> Iterator[dict[str, str]]:
    """Fresh databases named syncd_bench_<label>_<random>, as libpq URLs; dropped at the end."""
    suffix = uuid.uuid4().hex[:8]
    made: dict[str, str] = {}
    try:
        for label in labels:
            name = f"syncd_bench_{label}_{suffix}"
            made[label] = create_database(admin, name)
        yield made
    finally:
        for url in made.values():
            name = url.rsplit("/", 1)[1]
            try:
                drop_database(admin, name)
            except psycopg.Error as exc:
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)


# --- PostgreSQL: private clusters (initdb) -------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_user() -> str | None:
    # initdb refuses to run as root: run the server binaries as the postgres account then.
    return "postgres" if os.geteuid() == 0 else None


@dataclass
class PgCluster:
    """One PostgreSQL 15 cluster of our own: initdb, start, stop, connection URLs."""

    root: Path
    name: str
    settings: dict[str, str]
    port: int = field(default_factory=free_port)

    @property
    def datadir(self) -> Path:
        return self.root / self.name

    @property
    def logfile(self) -> Path:
        return self.root / f"{self.name}.log"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(PG_BIN / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            user=_pg_user(),
            cwd=self.root,
        )

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        conf = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "100",
            **self.settings,
        }
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write("\n# syncd bench\n")
            fh.writelines(f"{k} = {v}\n" for k, v in conf.items())

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60",
                  "start")  # fmt: skip

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str, template: str | None = None) -> str:
        return create_database(self.url(), name, template)


@contextlib.contextmanager
def pg_clusters(specs: dict[str, dict[str, str]]) -> Iterator[dict[str, PgCluster]]:
    """Start one private cluster per spec under a temp dir; stop and remove them at the end."""
    root = Path(tempfile.mkdtemp(prefix="syncd-bench-pg-"))
    user = _pg_user()
    if user is not None:
        shutil.chown(root, user)
    clusters: dict[str, PgCluster] = {}
    try:
        for name, settings in specs.items():
            cluster = PgCluster(root, name, settings)
            clusters[name] = cluster
            cluster.init()
            cluster.start()
        yield clusters
    finally:
        for cluster in clusters.values():
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- CRM data -----------------------------------------------------------------------------

# Real county-level division codes of Zhejiang, each in use for births from 1985 to 1990:
# stdnum checks the birth place of an ID number against the birth year.
REGIONS = (
    "330102", "330105", "330106", "330122", "330127", "330203", "330205", "330206",
    "330211", "330302", "330303", "330402", "330411", "330602",
)  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ("伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明")
BIRTH_START = dt.date(1985, 1, 1)
AS_OF = dt.datetime(2026, 6, 30, 8, 0, 0)


def national_id(k: int) -> str:
    """The k-th distinct valid resident ID number; python-stdnum computes the check digit."""
    region = REGIONS[k % len(REGIONS)]
    rest = k // len(REGIONS)
    birth = BIRTH_START + dt.timedelta(days=rest // 1000)
    body = f"{region}{birth:%Y%m%d}{rest % 1000:03d}"
    # calc_check_digit reads a full number and ignores its last character.
    return body + ric.calc_check_digit(body + "0")


def _ts(seconds: int) -> str:
    return (AS_OF - dt.timedelta(seconds=seconds)).isoformat()


@dataclass(frozen=True)
class DataSpec:
    """N customers (all cities together) with children; a share of identities in every city.

    Rows are in the JSON form the city capture produces (strings, integers, lists; decimals,
    dates and timestamps as ISO strings) and include the columns that never leave the city.
    Customer j of one city shares its identity (id_type, id_number) with customer j of every
    other city when j % 100 < shared × 100. Children: a deposit account per customer, a loan
    per third customer, an intermediary business per fifth.
    """

    customers: int
    cities: tuple[str, ...] = CITY_CODES
    shared: float = 0.3
    prospects: float = 0.0

    def per_city(self, city: str) -> int:
        i = self.cities.index(city)
        base, extra = divmod(self.customers, len(self.cities))
        return base + (1 if i < extra else 0)

    def is_shared(self, j: int) -> bool:
        return j % 100 < round(self.shared * 100)

    def is_prospect(self, city: str, j: int) -> bool:
        return (j * 7 + self.cities.index(city) * 13) % 100 < round(self.prospects * 100)

    def identity(self, city: str, j: int) -> int:
        if self.is_shared(j):
            return j
        return self.customers + j * len(self.cities) + self.cities.index(city)

    def customer_id(self, city: str, j: int) -> str:
        return f"C{city}{j:09d}"

    def customer(self, city: str, j: int) -> dict[str, Any]:
        k = self.identity(city, j)
        home = self.cities[k % len(self.cities)] if self.is_shared(j) else city
        status = (
            "prospect" if self.is_prospect(city, j) else ("dormant" if j % 17 == 0 else "active")
        )
        return {
            "customer_id": self.customer_id(city, j),
            "customer_type": "individual",
            "name": SURNAMES[k % len(SURNAMES)] + GIVEN[k % 13] + GIVEN[k % 7],
            "id_type": "ric",
            "id_number": national_id(k),
            "phone": f"13{(k * 7919) % 1_000_000_000:09d}",
            "address": f"浙江省{city}市文三路{j % 997 + 1}号",
            "home_city": home,
            "status": status,
            "risk_level": 1 + k % 5,
            "risk_tags": ["vip"] if k % 11 == 0 else [],
            "credit_limit": f"{(j % 500) * 1000}.00",
            "rm_notes": "客户经理内部备注",
            "created_at": _ts(86_400 * 365 + k % 100_000),
            "updated_at": _ts(j % 100_000),
        }

    def children(self, city: str, j: int) -> Iterator[tuple[str, dict[str, Any]]]:
        cid = self.customer_id(city, j)
        yield (
            "deposit_accounts",
            {
                "account_id": f"D{city}{j:09d}",
                "customer_id": cid,
                "product": ("current", "fixed", "notice", "large_cd")[j % 4],
                "currency": "CNY",
                "balance": f"{(j * 37) % 1_000_000}.{j % 100:02d}",
                "interest_rate": "1.3500",
                "opened_on": (dt.date(2010, 1, 1) + dt.timedelta(days=j % 5000)).isoformat(),
                "maturity_on": None if j % 4 == 0 else "2030-01-01",
                "status": "open",
                "updated_at": _ts(j % 50_000),
            },
        )
        if j % 3 == 0:
            yield (
                "loans",
                {
                    "loan_id": f"L{city}{j:09d}",
                    "customer_id": cid,
                    "product": ("mortgage", "consumer", "business", "working_capital")[j % 4],
                    "principal": f"{100_000 + (j % 900) * 1000}.00",
                    "balance": f"{50_000 + (j % 400) * 1000}.00",
                    "interest_rate": "4.2000",
                    "five_class": "normal" if j % 50 else "special_mention",
                    "overdue_days": 0 if j % 50 else 35,
                    "issued_on": "2021-03-15",
                    "maturity_on": "2041-03-15",
                    "collateral": "住房" if j % 2 else None,
                    "approval_memo": "审批意见：同意",
                    "updated_at": _ts(j % 40_000),
                },
            )
        if j % 5 == 0:
            yield (
                "intermediary_business",
                {
                    "business_id": f"B{city}{j:09d}",
                    "customer_id": cid,
                    "product_type": ("wealth", "fund", "insurance", "settlement")[j % 4],
                    "product_name": "稳健理财一号",
                    "amount": f"{10_000 + (j % 100) * 500}.00",
                    "fee_income": f"{(j % 100) * 5}.00",
                    "trade_date": "2025-12-01",
                    "updated_at": _ts(j % 30_000),
                },
            )

    def rows(
        self, city: str, tables: Sequence[str] = PUBLIC_TABLES
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(table, row) for every row of one city, parents right before their children."""
        with_children = any(t != "customers" for t in tables)
        for j in range(self.per_city(city)):
            if "customers" in tables:
                yield "customers", self.customer(city, j)
            if with_children:
                for name, row in self.children(city, j):
                    if name in tables:
                        yield name, row

    def counts(self, city: str | None = None, public: bool = False) -> dict[str, int]:
        """Rows per table, in one city or all; public=True leaves out filtered prospects."""
        out = dict.fromkeys(PUBLIC_TABLES, 0)
        for c in [city] if city else self.cities:
            n = self.per_city(c)
            out["customers"] += sum(1 for j in range(n) if not (public and self.is_prospect(c, j)))
            out["deposit_accounts"] += n
            out["loans"] += (n + 2) // 3
            out["intermediary_business"] += (n + 4) // 5
        return out

    def update_targets(self, seed: int) -> Iterator[tuple[str, int]]:
        """An endless random stream of (city, j) of public (non-prospect) customers."""
        rng = random.Random(seed)
        while True:
            city = rng.choice(self.cities)
            j = rng.randrange(self.per_city(city))
            if not self.is_prospect(city, j):
                yield city, j


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, list):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def copy_chunks(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], size: int = 1 << 20
) -> Iterator[bytes]:
    """Rows rendered in COPY text format, in chunks of about `size` bytes."""
    parts: list[str] = []
    length = 0
    for row in rows:
        line = "\t".join(_copy_text(row[c]) for c in columns) + "\n"
        parts.append(line)
        length += len(line)
        if length >= size:
            yield "".join(parts).encode("utf-8")
            parts, length = [], 0
    if parts:
        yield "".join(parts).encode("utf-8")


def copy_into(
    conn: psycopg.Connection[Any], table: str, columns: Sequence[str], chunks: Iterable[bytes]
) -> None:
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for chunk in chunks:
            copy.write(chunk)


def fill_city(url: str, spec: DataSpec, cities: Sequence[str]) -> dict[str, int]:
    """Create the CRM tables (as `syncd init` with crm.create_schema would) and COPY the rows.

    Several cities' rows may go into one database (the native side of bench/compare.py).
    """
    from syncd.city.crm import create_crm_schema
    from syncd.core.policy import load_policy
    from syncd.store.db import create_engine

    policy = load_policy(POLICY_PATH)
    engine = create_engine(sa_url(url))
    try:
        with engine.begin() as conn:
            create_crm_schema(conn, policy)
    finally:
        engine.dispose()
    counts: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        for table in PUBLIC_TABLES:
            columns = list(policy.tables[table].columns)
            rows = (row for c in cities for name, row in spec.rows(c, [table]) if name == table)
            counted = _counting(rows, counts, table)
            copy_into(conn, table, columns, copy_chunks(counted, columns))
        conn.commit()
        conn.execute("ANALYZE")
    return counts


def public_table(policy: Any, name: str, new_name: str | None = None) -> Any:
    """A CRM table with only its public columns (what leaves the city), keeping the key."""
    import sqlalchemy as sa

    from syncd.city.crm import crm_metadata

    source = crm_metadata(policy).tables[name]
    public = policy.tables[name].public_columns
    return sa.Table(
        new_name or name,
        sa.MetaData(),
        *(
            sa.Column(c.name, c.type, nullable=c.nullable, primary_key=c.primary_key)
            for c in source.columns
            if c.name in public
        ),
    )


def create_tables(url: str, tables: Iterable[Any]) -> None:
    from syncd.store.db import create_engine

    engine = create_engine(sa_url(url))
    try:
        with engine.begin() as conn:
            for t in tables:
                t.create(conn)
    finally:
        engine.dispose()


def _counting(
    rows: Iterable[dict[str, Any]], counts: dict[str, int], table: str
) -> Iterator[dict[str, Any]]:
    for row in rows:
        counts[table] = counts.get(table, 0) + 1
        yield row


# --- syncd nodes as processes -------------------------------------------------------------


def write_config(
    path: Path,
    node_id: str,
    role: str,
    db_url: str,
    hub_url: str | None = None,
    *,
    create_schema: bool = False,
    sync: dict[str, Any] | None = None,
) -> Path:
    """A node config: default settings except the keys given (as config/*.example.toml shows)."""
    lines = [
        "[node]", f'id = "{node_id}"', f'role = "{role}"',
        "[database]", f'url = "{sa_url(db_url)}"',
        "[policy]", f'path = "{POLICY_PATH}"',
        "[log]", 'format = "json"',
    ]  # fmt: skip
    if hub_url is not None:
        lines += ["[hub]", f'url = "{sa_url(hub_url)}"']
    if role == "city":
        lines += ["[crm]", f"create_schema = {'true' if create_schema else 'false'}"]
    if sync:
        lines += ["[sync]", *(f"{k} = {v!r}" for k, v in sync.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_syncd(config: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """Run the real `syncd` binary and fail loudly (with its output) when it fails."""
    cmd = [SYNCD, "--config", str(config), *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set size of a live process (VmHWM), in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass
class SyncdProcess:
    """A `syncd` subprocess whose peak RSS (VmHWM) is sampled while it runs."""

    config: Path
    args: tuple[str, ...]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    peak_rss_mb: float | None = None  # None: it ended before it could be sampled once

    def start(self) -> SyncdProcess:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [SYNCD, "--config", str(self.config), *self.args], stdout=fh, stderr=fh, cwd=REPO
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.exit_code is None

    def sample(self) -> None:
        if self.running and self.proc is not None:
            hwm = vm_hwm_mb(self.proc.pid)
            if hwm is not None:
                self.peak_rss_mb = max(self.peak_rss_mb or 0.0, hwm)

    def poll(self) -> int | None:
        """Sample the peak RSS, then reap the process if it has exited: its exit code or None."""
        assert self.proc is not None
        if self.exit_code is not None:
            return self.exit_code
        self.sample()
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if not pid:
            return None
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_code
        # Not usage.ru_maxrss: Linux carries the parent's peak RSS across fork and exec into
        # the child's, so every child would report at least this (large) bench process's
        # size. VmHWM, sampled while the process runs, is its own address space's peak.
        del usage
        return self.exit_code

    def wait(self, timeout: float | None = None) -> int:
        """Reap the process, sampling its peak RSS until it exits."""
        return wait_all([self], timeout)[0]

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (the daemon's clean shutdown), then SIGKILL if it does not exit in time."""
        if not self.running or self.proc is None:
            return self.exit_code or 0
        self.sample()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except TimeoutError:
            self.proc.kill()
            return self.wait(10)


def wait_all(procs: Sequence[SyncdProcess], timeout: float | None = None) -> list[int]:
    """Reap every process, sampling the peak RSS of each while any runs (waiting for one at a
    time would leave the others unsampled, and a peak unmeasured)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return [c for c in codes if c is not None]
        if deadline is not None and time.monotonic() > deadline:
            late = [" ".join(p.args) for p, c in zip(procs, codes, strict=True) if c is None]
            raise TimeoutError(f"syncd {'; '.join(late)} did not exit")
        time.sleep(0.05)


@dataclass
class Nodes:
    """A hub and its cities as config files, initialised and registered through the CLI."""

    root: Path
    hub_conf: Path
    city_confs: dict[str, Path]
    processes: list[SyncdProcess] = field(default_factory=list)

    def daemon(self, node: str) -> SyncdProcess:
        conf = self.hub_conf if node == "hub" else self.city_confs[node]
        proc = SyncdProcess(conf, ("run",), self.root / f"{node}.log").start()
        self.processes.append(proc)
        return proc

    def command(self, node: str, *args: str) -> SyncdProcess:
        conf = self.hub_conf if node == "hub" else self.city_confs[node]
        proc = SyncdProcess(conf, args, self.root / f"{node}.{args[0]}.log").start()
        self.processes.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(OSError, TimeoutError, ChildProcessError):
                proc.stop()


def setup_nodes(
    root: Path,
    hub_url: str,
    city_urls: dict[str, str],
    *,
    create_schema: bool = False,
    sync: dict[str, Any] | None = None,
    hub_sync: dict[str, Any] | None = None,
) -> Nodes:
    """`syncd init` the hub, `syncd node add` each city, write the city configs, init them."""
    hub_conf = write_config(root / "hub.toml", "hub-33", "hub", hub_url, sync=hub_sync)
    run_syncd(hub_conf, "init")
    city_confs: dict[str, Path] = {}
    for node, url in city_urls.items():
        creds = json.loads(run_syncd(hub_conf, "node", "add", node, "--json").stdout)["hub_url"]
        city_confs[node] = write_config(
            root / f"{node}.toml", node, "city", url, creds, create_schema=create_schema, sync=sync
        )
        run_syncd(city_confs[node], "init")
    return Nodes(root, hub_conf, city_confs)


def node_id(city: str) -> str:
    return f"city-{city}"


def changelog_high(city_url: str) -> int:
    """The last changelog sequence handed out at a city (trimmed rows included)."""
    with psycopg.connect(city_url) as conn:
        row = conn.execute(
            "SELECT coalesce(pg_sequence_last_value("
            "pg_get_serial_sequence('syncd_changelog', 'seq')::regclass), 0)"
        ).fetchone()
    return int(row[0]) if row else 0


def hub_applied(hub_url: str) -> dict[str, int]:
    with psycopg.connect(hub_url) as conn:
        return {n: int(s) for n, s in conn.execute("SELECT node_id, applied_seq FROM syncd_node")}


def wait_applied(
    hub_url: str,
    targets: dict[str, int],
    timeout: float,
    tick: Callable[[], None] | None = None,
    interval: float = 0.1,
) -> float:
    """Wait until the hub applied every node up to its target sequence; the monotonic time then."""
    deadline = time.monotonic() + timeout
    while True:
        applied = hub_applied(hub_url)
        if all(applied.get(n, 0) >= s for n, s in targets.items()):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"hub did not catch up: applied {applied}, wanted {targets}")
        if tick is not None:
            tick()
        time.sleep(interval)


def count_rows(url: str, tables: Sequence[str], where: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        for t in tables:
            q = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
            if where:
                q = q + sql.SQL(" WHERE ") + sql.SQL(where)  # a constant of the caller's
            row = conn.execute(q).fetchone()
            out[t] = int(row[0]) if row else 0
    return out


# --- latency ------------------------------------------------------------------------------


def measure_latency(
    write: Callable[[str], None],
    visible: Callable[[str], bool],
    samples: int,
    *,
    timeout: float = 30.0,
    poll: float = 0.001,
    gap: tuple[float, float] = (0.0, 0.3),
    seed: int = 7,
    tag: str = "L",
) -> list[float]:
    """Milliseconds from a committed write to its visibility, one unique value per sample.

    A random pause between samples spreads them over the daemons' polling phase.
    """
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    out: list[float] = []
    for i in range(samples):
        value = f"{tag}{run}-{i}"
        write(value)
        committed = time.perf_counter()
        deadline = committed + timeout
        while not visible(value):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"sample {i} ({value}) not visible after {timeout} s")
            time.sleep(poll)
        out.append((time.perf_counter() - committed) * 1000)
        time.sleep(rng.uniform(*gap))
    return out


def latency_summary(ms: Sequence[float]) -> dict[str, float]:
    return {
        "samples": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
    }
