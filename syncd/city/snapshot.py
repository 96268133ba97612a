"""`syncd snapshot`: the initial load (or a re-seed) of a city's public rows, resumable.

Rows go into the changelog as 'I' changes, chunk by chunk in primary-key order, so they take
the one path every change takes (filter, exclusions, batches, checksum, apply) and the daemon
ships them as it ships anything else. Each chunk is one transaction that also records its
position, so a crash resumes after the last committed chunk, never repeats or skips one.

Ordering with concurrent writers: on PostgreSQL a chunk reads its rows FOR SHARE, so it waits
for any transaction writing them and then reads their committed version; that writer's own
change took a lower sequence number, so the hub applies it first and the snapshot image (the
same or a newer version) after it. A writer arriving later waits for the chunk and takes a
higher number. Either way nothing is lost and no older image lands behind a newer change.
SQLite writers are serialised, so the same holds trivially.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.city.crm import crm_metadata
from syncd.city.push import get_state, set_state
from syncd.city.triggers import CAPTURE_CHANNEL, row_image
from syncd.core.errors import UsageError
from syncd.core.logs import get_logger
from syncd.core.merge import encode_value
from syncd.core.policy import Policy, Table, load_policy
from syncd.core.settings import Settings
from syncd.store.city_tables import changelog
from syncd.store.db import create_engine, translated
from syncd.store.dialect import dialect_for

log = get_logger("syncd.city.snapshot")
STATE_PREFIX = "snapshot:"


@dataclass
class TableProgress:
    table: str
    rows: int = 0
    total: int = 0
    done: bool = False
    seconds: float = 0.0


@dataclass
class SnapshotReport:
    tables: list[TableProgress] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def _ordered(policy: Policy) -> list[Table]:
    """Parents before children, so a first load rarely makes orphans even for a moment."""
    tables = list(policy.public_tables)
    return sorted(tables, key=lambda t: t.parent is not None)


def _chunk(
    conn: Connection, source: sa.Table, table: Table, after: list[Any] | None, size: int
) -> tuple[int, list[Any] | None, bool]:
    """Append the next chunk of rows to the changelog in one statement; return progress.

    The rows never come through Python: one INSERT … SELECT per chunk. Prospects and other
    filtered rows are copied too — the changelog is local — and the pusher, which owns the
    filter's semantics, keeps them in the city.
    """
    pk = sa.tuple_(*[source.c[c] for c in table.primary_key])
    lower = pk > sa.tuple_(*after) if after is not None else sa.true()
    boundary = conn.execute(
        sa.select(*[source.c[c] for c in table.primary_key])
        .where(lower)
        .order_by(*[source.c[c] for c in table.primary_key])
        .offset(size - 1)
        .limit(1)
    ).first()
    cond = sa.and_(lower, pk <= sa.tuple_(*boundary)) if boundary is not None else lower
    rows = (
        sa.select(
            sa.literal(table.name, sa.String()),
            sa.literal("I", sa.String()),
            row_image(conn, source, table),
        )
        .where(cond)
        .order_by(*[source.c[c] for c in table.primary_key])
    )
    # Wait for writers of these rows and read their committed version (module docstring).
    rows = dialect_for(conn).read_locked(rows)
    insert = changelog.insert().from_select(["table_name", "op", "row_image"], rows)
    # SQLAlchemy keeps the driver's rowcount of an INSERT only when asked to.
    written = conn.execute(insert.execution_options(preserve_rowcount=True)).rowcount
    last = [encode_value(v) for v in boundary] if boundary is not None else after
    return int(written or 0), last, boundary is None


def snapshot(
    settings: Settings,
    table_name: str | None = None,
    chunk_rows: int = 5000,
    progress: Callable[[TableProgress], None] | None = None,
) -> SnapshotReport:
    """Load every public table (or re-seed one) into the changelog, resuming where it stopped."""
    if not settings.is_city:
        raise UsageError("snapshot runs on a city node")
    policy = load_policy(settings.policy.path)
    if table_name is not None and (
        table_name not in policy.tables or not policy.tables[table_name].is_public
    ):
        public = ", ".join(t.name for t in policy.public_tables)
        raise UsageError(f"--table {table_name!r} is not a public table (public: {public})")
    engine = create_engine(settings.database.url, **settings.engine_options)
    try:
        return _run(engine, policy, table_name, chunk_rows, progress)
    finally:
        engine.dispose()


def _run(
    engine: Engine,
    policy: Policy,
    table_name: str | None,
    chunk_rows: int,
    progress: Callable[[TableProgress], None] | None,
) -> SnapshotReport:
    md = crm_metadata(policy)
    report = SnapshotReport()
    tables = [policy.tables[table_name]] if table_name else _ordered(policy)
    with translated("snapshot"), engine.connect() as conn:
        state = get_state(conn)
        conn.rollback()
    for table in tables:
        key = STATE_PREFIX + table.name
        saved = state.get(key) or {}
        if table_name is not None:
            saved = {}  # an explicit --table re-seeds from the start
        tp = TableProgress(table.name, rows=int(saved.get("rows", 0)), done=bool(saved.get("done")))
        report.tables.append(tp)
        if tp.done:
            log.info("snapshot_table_skipped", table=table.name, reason="already complete")
            continue
        source = md.tables[table.name]
        with translated("snapshot"), engine.connect() as conn:
            tp.total = int(
                conn.execute(sa.select(sa.func.count()).select_from(source)).scalar_one()
            )
            conn.rollback()
        after = saved.get("after")
        started = time.monotonic()
        while True:
            with translated(f"snapshot of {table.name}"), engine.begin() as conn:
                written, after, tp.done = _chunk(conn, source, table, after, chunk_rows)
                tp.rows += written
                set_state(conn, key, {"after": after, "rows": tp.rows, "done": tp.done})
                if written:
                    # As a capture trigger does: the city's daemon pushes the chunk at once.
                    dialect_for(conn).notify(conn, CAPTURE_CHANNEL)
            tp.seconds = time.monotonic() - started
            log.info(
                "snapshot_progress",
                table=table.name,
                rows=tp.rows,
                total=tp.total,
                captured=written,
                done=tp.done,
            )
            if progress is not None:
                progress(tp)
            if tp.done:
                break
    return report


def reset(settings: Settings) -> None:
    """Forget snapshot progress, so the next `snapshot` loads every table again."""
    engine = create_engine(settings.database.url, **settings.engine_options)
    try:
        with translated("snapshot reset"), engine.begin() as conn:
            for name in get_state(conn):
                if name.startswith(STATE_PREFIX):
                    set_state(conn, name, None)
    finally:
        engine.dispose()


def is_tty() -> bool:
    return sys.stderr.isatty()
