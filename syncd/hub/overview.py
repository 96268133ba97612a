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

The cache, its lease (one refresh at a time per hub, however many console processes), the
failure's backoff and the typed JSON are `syncd.hub.report_cache`'s; this module is the
overview's computation and the shape the page reads (`Overview`). The overview is light (the
city summary and a few snapshot rows): it does not wait for the cap on heavy computations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from syncd.core.errors import UsageError
from syncd.hub import analysis, report_cache, reports
from syncd.hub.report_cache import new_owner

KEY = "overview"
SINCE = ("yesterday", "month-end")  # the trends the overview shows, as `report trend --since`
HISTORY_DAYS = 92  # the lines over time: the daily snapshots of about a quarter
LEASE_SECONDS = report_cache.LEASE_SECONDS


@dataclasses.dataclass(frozen=True)
class Trend:
    """`report trend --since <since>` against the overview's figures: `rows` per city then
    the province (`analysis.trend_rows`), or None when no snapshot is on or before `target`."""

    since: str
    target: dt.date
    baseline: dt.date | None
    rows: list[dict[str, Any]] | None


@dataclasses.dataclass(frozen=True)
class Overview(report_cache.State):
    """What the overview shows: the cached figures (None before the first refresh) and the
    refresh's state (`report_cache.State`: computed_at, refreshing_since, error, due, ...)."""

    cities: list[dict[str, Any]] | None = None  # city_summary rows + the province row
    trends: list[Trend] = dataclasses.field(default_factory=list)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    as_of: dt.date | None = None  # the day the figures were computed on (UTC)


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


# --- the cache row -----------------------------------------------------------------------------


def read(conn: sa.Connection, now: dt.datetime | None = None) -> Overview:
    """The cached overview and the refresh's state (one row; no report is computed)."""
    state = report_cache.read(conn, KEY, now)
    doc = state.result
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(report_cache.State)}
    if not isinstance(doc, Mapping):
        return Overview(**fields)
    trends = [
        Trend(since=t["since"], target=t["target"], baseline=t["baseline"], rows=t["rows"])
        for t in doc.get("trends", [])
    ]
    return Overview(
        **fields,
        cities=doc.get("cities"),
        trends=trends,
        history=doc.get("history") or [],
        as_of=doc.get("as_of"),
    )


def claim(engine: sa.Engine, owner: str, now: dt.datetime | None = None) -> bool:
    """Take the refresh lease for `owner`: False if a live lease is someone else's."""
    return report_cache.claim(engine, KEY, owner, now)


def _compute(as_of: dt.date | None) -> report_cache.Compute:
    return lambda conn: compute(conn, as_of=as_of)


def refresh(engine: sa.Engine, owner: str, *, as_of: dt.date | None = None) -> str | None:
    """Compute the figures and store them, then give the lease back (call after `claim`):
    None, or the failure's description, stored for the page (`report_cache.refresh`)."""
    return report_cache.refresh(engine, KEY, owner, _compute(as_of))


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
    """If `state` is due (`State.due`) and the lease is free, start a refresh in a daemon
    thread and return it; else None (fresh, running here or elsewhere, or waiting to retry)."""
    return report_cache.refresh_in_background(
        engine, KEY, state, max_age_seconds, _compute(None), now=now
    )
