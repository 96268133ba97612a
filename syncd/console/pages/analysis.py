"""The managers' analyses (issue 14) as pages: segments, key customers, risk warnings.

Each page reads through the very hub functions `syncd report segments|key|warnings` call
(`syncd.hub.analysis`) and builds its table with the CLI's builders (`syncd.present.columns`),
so labels, translated codes, amounts (元, or 万元 with ``?unit=wan``) and masked ID numbers
read as the CLI prints them. Filters are GET forms; a bad filter is answered with the page and
a message (400). ``?format=xlsx`` (Permission.EXPORT) answers the workbook ``--xlsx`` writes.
``?unmask=1`` shows full ID numbers to a role that may (Permission.UNMASK), audited first.

At a million customers each of these reads takes 40-55 s (bench/README.md): the page waits for
it like the CLI does (the request's worker thread is busy meanwhile).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from syncd.app import Node
from syncd.console import web
from syncd.core import i18n
from syncd.core.errors import UsageError
from syncd.core.i18n import N_, Translator
from syncd.hub.console_users import Permission, User
from syncd.hub.nodes import city_names
from syncd.present import columns
from syncd.present.tables import RIGHT, Cells, Kind, Output, Table, title, xlsx_bytes

router = APIRouter()
C = TypeVar("C")
Analyst = Annotated[User, web.need(Permission.ANALYSIS)]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DEFAULT_TOP = 20
MAX_TOP = 10_000  # a page of more rows than this is no longer read by a person
SEVERITIES = ("low", "medium", "high")


class BadFilter(Exception):
    """A filter the page cannot use: shown on the page with status 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Report:
    """What one page read: its table, the nodes' display names, the audit's arguments."""

    table: Table
    names: Mapping[str, str]
    arguments: Mapping[str, Any]


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

    def fetch(by: list[str]) -> Callable[[Node, Connection], Report]:
        def go(n: Node, c: Connection) -> Report:
            rows = analysis.segments(c, n.policy, n.settings.report, by)
            table = columns.segments_table(tr, by, rows, city_names(c))
            return Report(table, _names(c), {"by": by})

        return go

    form = {
        "by": [*chosen, "", ""][:2],
        "dimensions": [(d, tr.gettext(columns.DIMENSION_LABELS[d])) for d in analysis.DIMENSIONS],
    }
    return _page(request, user, "segments", N_("Segments"), check, fetch, form)


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

    def fetch(top: int) -> Callable[[Node, Connection], Report]:
        def go(n: Node, c: Connection) -> Report:
            rows = analysis.key_customers(c, n.policy, n.settings.report, top)
            return Report(columns.key_table(rows, top), _names(c), {"top": top})

        return go

    return _page(request, user, "key", N_("Key customers"), check, fetch, {"top": given})


@router.get("/analysis/warnings")
def warnings(request: Request, user: Analyst) -> Response:
    from syncd.hub import analysis

    tr = web.translator(request)
    severity = request.query_params.get("severity") or "low"
    reason = request.query_params.get("reason") or ""
    city = request.query_params.get("city") or ""
    cities: dict[str, str] = web.read(request, lambda _n, c: city_names(c))

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

    def fetch(chosen: tuple[int, list[str], str]) -> Callable[[Node, Connection], Report]:
        minimum, reasons, home = chosen

        def go(n: Node, c: Connection) -> Report:
            rows = analysis.risk_warnings(
                c, n.policy, n.settings.report, min_severity=minimum, reasons=reasons
            )
            if home:  # the home city filter: the page's own, on the rows the report returned
                rows = [r for r in rows if str(r["home_city"]) == home]
            arguments = {"severity": severity, "reason": reasons, "city": home or None}
            return Report(columns.warnings_table(rows, cities), _names(c), arguments)

        return go

    form = {
        "severity": severity,
        "severities": [(s, tr.enum("severity", s)) for s in SEVERITIES],
        "reason": reason,
        "reasons": [(r, tr.enum("warning", r)) for r in analysis.REASON_FAMILIES],
        "city": city,
        "cities": sorted(cities.items(), key=lambda kv: kv[1]),
    }
    return _page(request, user, "warnings", N_("Risk warnings"), check, fetch, form)


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
    fetch: Callable[[C], Callable[[Node, Connection], Report]],
    form: Mapping[str, Any],
) -> Response:
    """Check the filters, read, audit an unmasked view, then the page or its workbook."""
    tr = web.translator(request)
    want = request.query_params.get("format") or "html"
    if want not in ("html", "xlsx"):
        return _bad(request, page, heading, form, tr.fmt(N_("Unknown format: {value}"), value=want))
    export = want == "xlsx"
    if export and not user.may(Permission.EXPORT):
        raise web.Forbidden(Permission.EXPORT)
    try:
        chosen = check()
    except BadFilter as exc:
        return _bad(request, page, heading, form, exc.message)
    try:
        report = web.read(request, fetch(chosen))
    except UsageError as exc:  # a check of the hub's own that the page's did not foresee
        return _bad(request, page, heading, form, str(exc))
    unmask = web.unmask_requested(request, user)
    table = report.table
    ids = any(c.kind is Kind.ID_NUMBER for c in table.columns)
    unit = i18n.Unit.WAN if request.query_params.get("unit") == "wan" else i18n.Unit.YUAN
    if unmask and ids:
        arguments = {**report.arguments, "unit": unit.value, "format": want, "lang": tr.lang}
        web.audit_unmask(request, user, page, arguments, len(table.rows))
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
        table=_shown(cells, table),
        links=_links(request, user, ids, unmask),
    )


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
        table=None,
        links=None,
    )


def _shown(cells: Cells, table: Table) -> dict[str, Any]:
    """The table as the terminal shows it (its columns that are not export-only), each cell's
    text as the CLI writes it; a segments' total row marked."""
    shown = [c for c in table.columns if not c.export_only]
    total = {c.key for c in shown if c.kind is Kind.ENUM and c.enum == "segment"}
    return {
        "title": title(cells, table),
        "id": f"{table.name}-table",
        "headers": [(cells.label(c), c.kind in RIGHT) for c in shown],
        "rows": [
            {
                "total": bool(total) and all(row.get(k) == "total" for k in total),
                "cells": [(cells.text(c, row.get(c.key)), c.kind in RIGHT) for c in shown],
            }
            for row in table.rows
        ],
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
