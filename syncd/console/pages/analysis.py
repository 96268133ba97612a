"""The managers' analyses (issue 14) as pages: segments, key customers, risk warnings.

Each page reads through the very hub functions `syncd report segments|key|warnings` call
(`syncd.hub.analysis`) and builds its table with the CLI's builders (`syncd.present.columns`),
so labels, translated codes, amounts (元, or 万元 with ``?unit=wan``) and masked ID numbers
read as the CLI prints them. Filters are GET forms; a bad filter is answered with the page and
a message (400). ``?format=xlsx`` (Permission.EXPORT) answers the workbook ``--xlsx`` writes.
``?unmask=1`` shows full ID numbers to a role that may (Permission.UNMASK), audited first.

At a million customers each of these reads takes 40-55 s and gigabytes (bench/README.md), so
the page never computes in its request: it shows the result a background refresh stored
(`syncd.hub.report_cache`, keyed by the report and the hub function's arguments) with the time
it was computed. A first visit for some filters starts that computation and shows "computing"
(the page reloads itself); a result older than `[console] report_max_age_seconds` is shown
while a newer one is computed; `[console] report_workers` computations run at once per console
process, the others queued. The export writes the same cached rows (409 while there are none).
Filters are still checked at once (400); ID numbers are masked, or unmasked and audited, when
the page is shown (the cached rows hold them whole, as the hub function returns them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from syncd.app import Node
from syncd.console import web
from syncd.core.errors import SyncdError, UsageError
from syncd.core.i18n import N_, Translator
from syncd.core.logs import get_logger
from syncd.hub import report_cache
from syncd.hub.console_users import Permission, User
from syncd.hub.nodes import city_names
from syncd.present import columns
from syncd.present.tables import RIGHT, Cells, Kind, Output, Table, title, xlsx_bytes

router = APIRouter()
log = get_logger("syncd.console")
C = TypeVar("C")
Rows = list[dict[str, Any]]
Analyst = Annotated[User, web.need(Permission.ANALYSIS)]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DEFAULT_TOP = 20
MAX_TOP = 10_000  # a page of more rows than this is no longer read by a person
SEVERITIES = ("low", "medium", "high")
SHOWN_ROWS = 1_000  # a page shows this many rows at most; the export has them all
RELOAD_COMPUTING = 3  # seconds: the page reloads itself while its first result is computed
RELOAD_REFRESHING = 15  # ... and while a newer one is computed
_LIMITER_LOCK = threading.Lock()


class BadFilter(Exception):
    """A filter the page cannot use: shown on the page with status 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Report:
    """What one page shows: its table, the nodes' display names, the audit's arguments."""

    table: Table
    names: Mapping[str, str]
    arguments: Mapping[str, Any]
    count: int  # the rows of the whole report: `table` may hold only the first of them


@dataclasses.dataclass(frozen=True)
class Spec:
    """One analysis for the chosen filters: the hub function and its arguments (the cache
    key: `report` and `arguments`), and how its cached rows become the page's `Report`."""

    report: str
    arguments: Mapping[str, Any]
    compute: Callable[[Node, Connection], Rows]  # the hub function, in the background
    # at render, from the cached rows: the table of (at least) the first `limit` rows, or all
    build: Callable[[Rows, Connection, int | None], Report]

    @property
    def key(self) -> str:
        return report_cache.key_for(self.report, self.arguments)


# --- the pages -----------------------------------------------------------------------------


@router.get("/analysis/segments")
def segments(request: Request, user: Analyst) -> Response:
    from syncd.hub import analysis

    tr = web.translator(request)
    chosen = [v for v in request.query_params.getlist("by") if v] or ["type"]

    def check() -> list[str]:
        if len(chosen) > 2:
            raise BadFilter(tr.gettext(N_("Choose one or two dimensions.")))
        for d in chosen:
            if d not in analysis.DIMENSIONS:
                raise BadFilter(tr.fmt(N_("Unknown dimension: {value}"), value=d))
        if len(chosen) == 2 and chosen[0] == chosen[1]:
            raise BadFilter(tr.gettext(N_("Choose two different dimensions.")))
        return chosen

    def spec(by: list[str]) -> Spec:
        def compute(n: Node, c: Connection) -> Rows:
            return analysis.segments(c, n.policy, n.settings.report, by)

        def build(rows: Rows, c: Connection, _limit: int | None) -> Report:
            table = columns.segments_table(tr, by, rows, city_names(c))
            return Report(table, _names(c), {"by": by}, len(rows))

        return Spec("segments", {"by": by}, compute, build)

    form = {
        "by": [*chosen, "", ""][:2],
        "dimensions": [(d, tr.gettext(columns.DIMENSION_LABELS[d])) for d in analysis.DIMENSIONS],
    }
    return _page(request, user, "segments", N_("Segments"), check, spec, form)


@router.get("/analysis/key")
def key_customers(request: Request, user: Analyst) -> Response:
    from syncd.hub import analysis

    tr = web.translator(request)
    given = request.query_params.get("top") or str(DEFAULT_TOP)

    def check() -> int:
        try:
            top = int(given.strip())
        except ValueError:
            raise BadFilter(
                tr.fmt(N_("Top N must be a whole number: {value}"), value=given)
            ) from None
        if not 1 <= top <= MAX_TOP:
            raise BadFilter(tr.fmt(N_("Top N must be between 1 and {most}."), most=MAX_TOP))
        return top

    def spec(top: int) -> Spec:
        # One computation for every top N: the first MAX_TOP, of which the page shows the first
        # `top` (the hub ranks all customers whatever N; its top N is a prefix of its top MAX).
        def compute(n: Node, c: Connection) -> Rows:
            return analysis.key_customers(c, n.policy, n.settings.report, MAX_TOP)

        def build(rows: Rows, c: Connection, limit: int | None) -> Report:
            ranked = rows[:top]
            table = columns.key_table(ranked[:limit], top)
            return Report(table, _names(c), {"top": top}, len(ranked))

        return Spec("key", {"top": MAX_TOP}, compute, build)

    return _page(request, user, "key", N_("Key customers"), check, spec, {"top": given})


@router.get("/analysis/warnings")
def warnings(request: Request, user: Analyst) -> Response:
    from syncd.hub import analysis

    tr = web.translator(request)
    severity = request.query_params.get("severity") or "low"
    reason = request.query_params.get("reason") or ""
    city = request.query_params.get("city") or ""
    cities, names = web.read(request, lambda _n, c: (city_names(c), _names(c)))

    def check() -> tuple[int, list[str], str]:
        try:
            minimum = analysis.parse_severity(severity)
        except UsageError:
            raise BadFilter(tr.fmt(N_("Unknown severity: {value}"), value=severity)) from None
        reasons = [reason] if reason else []
        try:
            analysis.check_reasons(reasons)
        except UsageError:
            raise BadFilter(tr.fmt(N_("Unknown reason: {value}"), value=reason)) from None
        if city and city not in cities:
            raise BadFilter(tr.fmt(N_("Unknown city: {value}"), value=city))
        return minimum, reasons, city

    def spec(chosen: tuple[int, list[str], str]) -> Spec:
        minimum, reasons, home = chosen

        def compute(n: Node, c: Connection) -> Rows:
            return analysis.risk_warnings(
                c, n.policy, n.settings.report, min_severity=minimum, reasons=reasons
            )

        def build(rows: Rows, _c: Connection, limit: int | None) -> Report:
            if home:  # the home city filter: the page's own, on the rows the report returned
                rows = [r for r in rows if str(r["home_city"]) == home]
            arguments = {"severity": severity, "reason": reasons, "city": home or None}
            table = columns.warnings_table(rows[:limit], cities)
            return Report(table, names, arguments, len(rows))

        return Spec("warnings", {"severity": minimum, "reason": reasons}, compute, build)

    form = {
        "severity": severity,
        "severities": [(s, tr.enum("severity", s)) for s in SEVERITIES],
        "reason": reason,
        "reasons": [(r, tr.enum("warning", r)) for r in analysis.REASON_FAMILIES],
        "city": city,
        "cities": sorted(cities.items(), key=lambda kv: kv[1]),
    }
    return _page(request, user, "warnings", N_("Risk warnings"), check, spec, form)


# --- what the three pages share ------------------------------------------------------------


def _names(conn: Connection) -> dict[str, str]:
    from syncd.hub.nodes import display_names

    return display_names(conn)


def _page(
    request: Request,
    user: User,
    page: str,
    heading: str,
    check: Callable[[], C],
    spec_of: Callable[[C], Spec],
    form: Mapping[str, Any],
) -> Response:
    """Check the filters, read the cached result (starting its computation when due), audit
    an unmasked view, then the page or its workbook."""
    tr = web.translator(request)
    want = request.query_params.get("format") or "html"
    if want not in ("html", "xlsx"):
        return _bad(request, page, heading, form, tr.fmt(N_("Unknown format: {value}"), value=want))
    export = want == "xlsx"
    if export and not user.may(Permission.EXPORT):
        raise web.Forbidden(Permission.EXPORT)
    try:
        spec = spec_of(check())
    except BadFilter as exc:
        return _bad(request, page, heading, form, exc.message)
    key = spec.key

    memo = _memo(request)

    def cached(_n: Node, c: Connection) -> tuple[report_cache.State, Report | None]:
        state = report_cache.read(c, key, memo=memo)
        limit = None if export else SHOWN_ROWS
        return state, (spec.build(state.result, c, limit) if state.has_result else None)

    state, report = web.read(request, cached)
    wait = _limiter(request).full  # before starting: a computation started now would queue
    started = _start(request, key, state, spec)
    status = _status(request, state, started, started is not None and wait)
    if report is None:
        return web.render(
            request,
            "analysis.html",
            status_code=409 if export else 200,
            page=page,
            heading=tr.gettext(heading),
            form=form,
            error=None,
            not_ready=export,
            status=status,
            table=None,
            links=None,
        )
    unmask = web.unmask_requested(request, user)
    table = report.table
    ids = any(c.kind is Kind.ID_NUMBER for c in table.columns)
    unit = web.unit_of(request)
    shown = len(table.rows) if export else min(len(table.rows), SHOWN_ROWS)
    count = max(report.count, len(table.rows))
    if unmask and ids:
        arguments = {**report.arguments, "unit": unit.value, "format": want, "lang": tr.lang}
        web.audit_unmask(request, user, page, arguments, shown)
    cells = Cells(Output(lang=tr.lang, unit=unit, unmask=unmask and ids), report.names)
    if export:
        return _workbook(cells, table, tr, heading, page)
    return web.render(
        request,
        "analysis.html",
        page=page,
        heading=tr.gettext(heading),
        form=form,
        error=None,
        not_ready=False,
        status=status,
        table=_shown(cells, table, shown, count),
        links=_links(request, user, ids, unmask),
    )


def _limiter(request: Request) -> report_cache.Limiter:
    """This console process's cap on analyses computed at once (`[console] report_workers`)."""
    app_state = request.app.state
    with _LIMITER_LOCK:
        limiter = getattr(app_state, "report_limiter", None)
        if not isinstance(limiter, report_cache.Limiter):
            limiter = report_cache.Limiter(web.node(request).settings.console.report_workers)
            app_state.report_limiter = limiter
        return limiter


def _memo(request: Request) -> report_cache.Memo:
    """This console process's decoded results (a warnings list is a hundred thousand rows)."""
    app_state = request.app.state
    with _LIMITER_LOCK:
        memo = getattr(app_state, "report_memo", None)
        if not isinstance(memo, report_cache.Memo):
            memo = app_state.report_memo = report_cache.Memo()
        return memo


def _start(
    request: Request, key: str, state: report_cache.State, spec: Spec
) -> threading.Thread | None:
    """Start the computation of `key` in the background if it is due (`State.due`)."""
    node = web.node(request)
    max_age = node.settings.console.report_max_age_seconds
    try:
        started = report_cache.refresh_in_background(
            node.engine,
            key,
            state,
            max_age,
            lambda conn: spec.compute(node, conn),
            limiter=_limiter(request),
        )
    except SyncdError as exc:  # the cached result still shows; the next visit tries again
        log.error("report_refresh_not_started", key=key, error=str(exc))
        return None
    if started is not None:
        request.app.state.report_refresh = started  # for tests: the thread
    return started


def _status(
    request: Request, state: report_cache.State, started: threading.Thread | None, wait: bool
) -> dict[str, Any]:
    """The result's time and its refresh's state, as the page says them (`wait`: the
    computation this visit started waits for its turn)."""
    max_age = web.node(request).settings.console.report_max_age_seconds
    pending = started is not None or state.pending
    queued = state.queued or wait
    retry = state.retry_at(max_age)
    if not state.has_result and pending:
        reload = RELOAD_COMPUTING
    elif pending:
        reload = RELOAD_REFRESHING
    else:
        reload = 0
    return {
        "as_of": web.local_time(request, state.computed_at),
        "seconds": state.seconds if state.has_result else None,
        "pending": pending,
        "queued": pending and queued,
        "failed": state.failed,
        "error": state.error or "",
        "error_at": web.local_time(request, state.error_at),
        "retry_at": web.local_time(request, retry),
        "reload_seconds": reload,
    }


def _bad(
    request: Request, page: str, heading: str, form: Mapping[str, Any], message: str
) -> Response:
    tr = web.translator(request)
    return web.render(
        request,
        "analysis.html",
        status_code=400,
        page=page,
        heading=tr.gettext(heading),
        form=form,
        error=message,
        not_ready=False,
        status=None,
        table=None,
        links=None,
    )


def _shown(cells: Cells, table: Table, shown: int, count: int) -> dict[str, Any]:
    """The table as the terminal shows it (its columns that are not export-only), each cell's
    text as the CLI writes it, its first `shown` rows (of `count`); a segments' total row
    marked."""
    columns_shown = [c for c in table.columns if not c.export_only]
    total = {c.key for c in columns_shown if c.kind is Kind.ENUM and c.enum == "segment"}
    return {
        "title": title(cells, table),
        "id": f"{table.name}-table",
        "headers": [(cells.label(c), c.kind in RIGHT) for c in columns_shown],
        "rows": [
            {
                "total": bool(total) and all(row.get(k) == "total" for k in total),
                "cells": [(cells.text(c, row.get(c.key)), c.kind in RIGHT) for c in columns_shown],
            }
            for row in table.rows[:shown]
        ],
        "count": count,
        "shown": shown,
    }


def _links(request: Request, user: User, ids: bool, unmask: bool) -> dict[str, str | None]:
    """The export and (un)mask links: this page with the same filters and one change."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "format"]

    def this(change: Mapping[str, str | None]) -> str:
        kept = [(k, v) for k, v in params if k not in change]
        kept += [(k, v) for k, v in change.items() if v is not None]
        return request.url.path + ("?" + urlencode(kept) if kept else "")

    return {
        "export": this({"format": "xlsx"}) if user.may(Permission.EXPORT) else None,
        "unmask": (
            this({"unmask": "1"}) if ids and not unmask and user.may(Permission.UNMASK) else None
        ),
        "mask": this({"unmask": None}) if unmask else None,
    }


def _workbook(cells: Cells, table: Table, tr: Translator, heading: str, page: str) -> Response:
    """The .xlsx download: the same workbook `--xlsx` writes, named for the page and the day."""
    day = dt.date.today().isoformat()
    ascii_name = f"{page}-{day}.xlsx"
    shown_name = f"{tr.gettext(heading)}-{day}.xlsx"
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(shown_name)}"
    return Response(
        xlsx_bytes(cells, [table]),
        media_type=XLSX,
        headers={"Content-Disposition": disposition},
    )
