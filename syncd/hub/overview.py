"""The province overview's figures, computed in the background and kept in the hub's database.

At a million customers `report cities` takes seconds and a full `report trend` most of a
minute, so the console's overview page never computes them in a request: it reads the row
`refresh` last wrote to ``syncd_console_cache`` (key 'overview') and, when that is older than
``[console] overview_max_age_seconds`` or missing, starts ONE refresh in a background thread
(`refresh_in_background`). The figures are those of the CLI, through the same functions:

- per city and the province total: `reports.city_summary` + `analysis.with_province_total`
  over `reports.CITY_SUMS` (`syncd report cities`);
- the change since yesterday and since month-end: `analysis.trend_baseline` (the daily snapshot
  `report trend --since` compares with) and `analysis.trend_rows`, with today's figures taken
  from the city summary (`analysis.city_summary_figures`: customers, deposits, loans,
  non-performing, fee income — the trend's figures without its tier counts, which are what
  makes `report trend` cost a minute);
- the daily snapshots of the last `HISTORY_DAYS` days (`analysis.daily_history`), for the lines.

One refresh at a time per hub, however many console processes: `claim` takes the row's lease
with one conditional UPDATE (the row lock decides between two claimers on PostgreSQL, the
database write lock on SQLite). A lease that outlives `LEASE_SECONDS` is a refresh that died
with its process, and may be taken again. A failed refresh keeps the previous figures, records
its error and when; none is retried before `retry_seconds` has passed (no hot loop).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from syncd.core.errors import UsageError
from syncd.core.logs import get_logger
from syncd.hub import analysis, reports
from syncd.store import hub_tables as schema_hub
from syncd.store.db import describe_failure, translated, utcnow

log = get_logger("syncd.overview")

KEY = "overview"
SINCE = ("yesterday", "month-end")  # the trends the overview shows, as `report trend --since`
HISTORY_DAYS = 92  # the lines over time: the daily snapshots of about a quarter
LEASE_SECONDS = 900.0  # a refresh still holding its lease after this is taken for dead
RETRY_MIN_SECONDS = 60.0  # after a failure, no new refresh for this long (or max age if longer)

_DATES = frozenset({"as_of", "since", "target", "snapshot_date"})
_TIMES = frozenset({"last_applied_at", "last_seen_at"})
_MONEY = frozenset(
    {
        *(k for k in reports.CITY_SUMS if k != "customers"),
        *(
            f"{k}{suffix}"
            for k in analysis.TREND_FIGURES
            if k != "customers"
            for suffix in ("", "_then", "_change")
        ),
    }
)


@dataclasses.dataclass(frozen=True)
class Trend:
    """`report trend --since <since>` against the overview's figures: `rows` per city then
    the province (`analysis.trend_rows`), or None when no snapshot is on or before `target`."""

    since: str
    target: dt.date
    baseline: dt.date | None
    rows: list[dict[str, Any]] | None


@dataclasses.dataclass(frozen=True)
class Overview:
    """What the overview shows: the cached figures (None before the first refresh) and the
    refresh's state."""

    cities: list[dict[str, Any]] | None = None  # city_summary rows + the province row
    trends: list[Trend] = dataclasses.field(default_factory=list)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    as_of: dt.date | None = None  # the day the figures were computed on (UTC)
    computed_at: dt.datetime | None = None
    seconds: float | None = None  # how long that refresh took
    refreshing_since: dt.datetime | None = None  # a refresh holds the lease (started then)
    error: str | None = None  # the last refresh failed (figures, if any, are older)
    error_at: dt.datetime | None = None

    @property
    def failed(self) -> bool:
        """Whether the last refresh failed (after the figures shown were computed)."""
        return self.error_at is not None and (
            self.computed_at is None or self.error_at >= self.computed_at
        )

    def retry_at(self, max_age_seconds: float) -> dt.datetime | None:
        """After a failure, when a refresh may be tried again."""
        if not self.failed or self.error_at is None:
            return None
        return self.error_at + dt.timedelta(seconds=retry_seconds(max_age_seconds))

    def due(self, max_age_seconds: float, now: dt.datetime | None = None) -> bool:
        """Whether a refresh should start: no figures, or older than the max age; never while
        one runs, nor before the retry time of a failed one."""
        now = now or utcnow()
        if self.refreshing_since is not None:
            return False
        retry = self.retry_at(max_age_seconds)
        if retry is not None and now < retry:
            return False
        if self.computed_at is None:
            return True
        return (now - self.computed_at).total_seconds() > max_age_seconds


def retry_seconds(max_age_seconds: float) -> float:
    return max(RETRY_MIN_SECONDS, max_age_seconds)


# --- computing ---------------------------------------------------------------------------------


def compute(conn: sa.Connection, *, as_of: dt.date | None = None) -> dict[str, Any]:
    """The overview's figures now, as the CLI's report functions give them (module docstring)."""
    as_of = as_of or analysis.today()
    summary = reports.city_summary(conn)
    cities = analysis.with_province_total(summary, reports.CITY_SUMS)
    now = analysis.city_summary_figures(summary)
    trends = []
    for since in SINCE:
        target = analysis.since_date(since, as_of)
        try:
            baseline, then = analysis.trend_baseline(conn, since, as_of)
        except UsageError:  # no snapshot on or before the target day yet
            trends.append({"since": since, "target": target, "baseline": None, "rows": None})
            continue
        rows = analysis.trend_rows(now, then, baseline, analysis.TREND_FIGURES)
        trends.append({"since": since, "target": target, "baseline": baseline, "rows": rows})
    history = analysis.daily_history(conn, as_of - dt.timedelta(days=HISTORY_DAYS))
    return {"as_of": as_of, "cities": cities, "trends": trends, "history": history}


def _encode(value: Any) -> Any:
    """JSON for the figures column: Decimal as its exact text, dates and times as ISO text."""
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _decode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v is None or not isinstance(v, str):
            out[k] = v
        elif k in _MONEY:
            out[k] = Decimal(v)
        elif k in _DATES:
            out[k] = dt.date.fromisoformat(v)
        elif k in _TIMES:
            out[k] = dt.datetime.fromisoformat(v)
        else:
            out[k] = v
    return out


def _decode_rows(rows: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    return None if rows is None else [_decode_row(r) for r in rows]


# --- the cache row -----------------------------------------------------------------------------


def read(conn: sa.Connection, now: dt.datetime | None = None) -> Overview:
    """The cached overview and the refresh's state (one row; no report is computed)."""
    cache = schema_hub.console_cache
    row = conn.execute(sa.select(cache).where(cache.c.key == KEY)).mappings().first()
    if row is None:
        return Overview()
    now = now or utcnow()
    lease = row["lease_until"]
    refreshing = row["started_at"] if lease is not None and lease > now else None
    state = Overview(
        computed_at=row["computed_at"],
        seconds=row["seconds"],
        refreshing_since=refreshing,
        error=row["error"],
        error_at=row["error_at"],
    )
    doc = row["figures"]
    if not isinstance(doc, Mapping):
        return state
    trends = [
        Trend(
            since=t["since"],
            target=dt.date.fromisoformat(t["target"]),
            baseline=dt.date.fromisoformat(t["baseline"]) if t["baseline"] else None,
            rows=_decode_rows(t["rows"]),
        )
        for t in doc.get("trends", [])
    ]
    return dataclasses.replace(
        state,
        cities=_decode_rows(doc.get("cities")),
        trends=trends,
        history=_decode_rows(doc.get("history")) or [],
        as_of=dt.date.fromisoformat(doc["as_of"]) if doc.get("as_of") else None,
    )


def _ensure_row(conn: sa.Connection) -> None:
    cache = schema_hub.console_cache
    if conn.execute(sa.select(cache.c.key).where(cache.c.key == KEY)).first() is None:
        insert: Any
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        conn.execute(insert(cache).values(key=KEY).on_conflict_do_nothing())


def new_owner() -> str:
    """Who holds a lease: host, process and a random part (two threads never share one)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def claim(engine: sa.Engine, owner: str, now: dt.datetime | None = None) -> bool:
    """Take the refresh lease for `owner`: False if a live lease is someone else's."""
    now = now or utcnow()
    cache = schema_hub.console_cache
    with translated("claiming the overview refresh"), engine.begin() as conn:
        _ensure_row(conn)
        taken = conn.execute(
            cache.update()
            .where(cache.c.key == KEY)
            .where(sa.or_(cache.c.lease_until.is_(None), cache.c.lease_until <= now))
            .values(
                lease_owner=owner,
                lease_until=now + dt.timedelta(seconds=LEASE_SECONDS),
                started_at=now,
            )
        ).rowcount
    return taken == 1


def refresh(engine: sa.Engine, owner: str, *, as_of: dt.date | None = None) -> str | None:
    """Compute the figures and store them, then give the lease back (call after `claim`).

    Returns None, or the failure's description (row values never appear in it), which is
    stored with its time for the page to show; the previous figures stay. Never raises for a
    failure of the computation: it runs in a background thread.
    """
    started = time.monotonic()
    cache = schema_hub.console_cache
    mine = sa.and_(cache.c.key == KEY, cache.c.lease_owner == owner)
    release = {"lease_owner": None, "lease_until": None, "started_at": None}
    try:
        with translated("computing the overview"), engine.connect() as conn:
            figures = _encode(compute(conn, as_of=as_of))
            conn.rollback()
        seconds = time.monotonic() - started
        with translated("storing the overview"), engine.begin() as conn:
            _ensure_row(conn)
            conn.execute(
                cache.update()
                .where(cache.c.key == KEY)
                .values(
                    figures=figures,
                    computed_at=utcnow(),
                    seconds=seconds,
                    error=None,
                    error_at=None,
                )
            )
            conn.execute(cache.update().where(mine).values(**release))
        log.info("overview_refreshed", seconds=round(seconds, 3))
        return None
    except Exception as exc:  # recorded for the page: a thread must not die loud
        error = describe_failure(exc)
        log.error("overview_refresh_failed", error=error)
        try:
            with translated("recording the overview's failure"), engine.begin() as conn:
                _ensure_row(conn)
                conn.execute(
                    cache.update().where(cache.c.key == KEY).values(error=error, error_at=utcnow())
                )
                conn.execute(cache.update().where(mine).values(**release))
        except Exception as again:  # the lease then expires by itself
            log.error("overview_failure_not_recorded", error=describe_failure(again))
        return error


def refresh_now(engine: sa.Engine, *, as_of: dt.date | None = None) -> str | None:
    """Refresh at once in this thread (a CLI or a job): the failure text, or None. Raises
    UsageError if another refresh holds the lease."""
    owner = new_owner()
    if not claim(engine, owner):
        raise UsageError("an overview refresh is already running")
    return refresh(engine, owner, as_of=as_of)


def refresh_in_background(
    engine: sa.Engine,
    state: Overview,
    max_age_seconds: float,
    now: dt.datetime | None = None,
) -> threading.Thread | None:
    """If `state` is due (`Overview.due`) and the lease is free, start a refresh in a daemon
    thread and return it; else None (fresh, running here or elsewhere, or waiting to retry)."""
    if not state.due(max_age_seconds, now):
        return None
    owner = new_owner()
    if not claim(engine, owner, now):
        return None
    thread = threading.Thread(
        target=refresh, args=(engine, owner), name="syncd-overview-refresh", daemon=True
    )
    thread.start()
    return thread
