"""Province overview (managers): per city and the province, today and the change since
yesterday and month-end, with charts.

The page computes no report: it reads the figures `syncd.hub.overview` keeps in the hub's
database (the same functions as `syncd report cities` and `report trend`) and shows when they
were computed. When they are older than `[console] overview_max_age_seconds`, or missing, it
starts one refresh in the background and says so (that state reloads itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from syncd.console import web
from syncd.core import i18n
from syncd.core.errors import SyncdError
from syncd.core.i18n import N_
from syncd.core.logs import get_logger
from syncd.hub import analysis
from syncd.hub import overview as cache
from syncd.hub.console_users import Permission, User
from syncd.hub.nodes import display_names

router = APIRouter()
log = get_logger("syncd.console")

# The overview's figures: key in the cached city rows (npl_balance from
# `analysis.city_summary_figures`), label, kind.
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("customers", N_("customers"), "count"),
    ("deposit_balance", N_("deposits"), "money"),
    ("loan_balance", N_("loans"), "money"),
    ("npl_balance", N_("non-performing loans"), "money"),
    ("fee_income", N_("fee income"), "money"),
)
SINCE_LABELS = {
    "yesterday": N_("since yesterday"),
    "month-end": N_("since month-end"),
}
# While the figures are computed the page reloads itself after this many seconds.
RELOAD_COMPUTING = 3
RELOAD_REFRESHING = 15


@router.get("/overview")
def overview(
    request: Request, user: Annotated[User, web.need(Permission.OVERVIEW)]
) -> HTMLResponse:
    node = web.node(request)
    max_age = node.settings.console.overview_max_age_seconds
    state, names = web.read(request, lambda _n, conn: (cache.read(conn), display_names(conn)))
    try:
        started = cache.refresh_in_background(node.engine, state, max_age)
    except SyncdError as exc:  # the cached figures still show; the next visit tries again
        log.error("overview_refresh_not_started", error=str(exc))
        started = None
    if started is not None:
        request.app.state.overview_refresh = started  # for tests and shutdown: the thread
    refreshing = started is not None or state.refreshing_since is not None
    return web.render(request, "overview.html", **context(request, state, names, refreshing))


def context(
    request: Request,
    state: cache.Overview,
    node_names: Mapping[str, str],
    refreshing: bool,
) -> dict[str, Any]:
    """Everything overview.html shows, in the user's language and unit."""
    tr = web.translator(request)
    unit = web.unit_of(request)
    names = {**node_names, analysis.PROVINCE: tr.gettext(N_("province"))}
    max_age = web.node(request).settings.console.overview_max_age_seconds
    retry = state.retry_at(max_age)
    ctx: dict[str, Any] = {
        "state": state,
        "refreshing": refreshing,
        "reload_seconds": 0,
        "failed": state.failed,
        "retry_at": web.local_time(request, retry),
        "error_at": web.local_time(request, state.error_at),
        "as_of": web.local_time(request, state.computed_at),
        "figures": [(key, tr.gettext(label), kind) for key, label, kind in FIGURES],
        "rows": [],
        "trends": [],
        "no_snapshot": False,
        "chart_cities": {},
        "chart_trend": {},
        "unit_links": _unit_links(request),
        "unit_label": tr.gettext(unit.label),
    }
    if state.cities is None and not state.failed:
        ctx["reload_seconds"] = RELOAD_COMPUTING  # computing here or elsewhere: look again soon
    elif refreshing:
        ctx["reload_seconds"] = RELOAD_REFRESHING
    if state.cities is None:
        return ctx
    npl = analysis.city_summary_figures(state.cities)
    rows = [
        {
            "node_id": r["node_id"],
            "name": names.get(r["node_id"], r["node_id"]),
            "total": r["node_id"] == analysis.PROVINCE,
            **{key: npl[r["node_id"]][key] for key, _label, _kind in FIGURES},
        }
        for r in state.cities
    ]
    ctx["rows"] = rows
    ctx["trends"] = [_trend(tr, t, rows) for t in state.trends]
    ctx["no_snapshot"] = all(t.rows is None for t in state.trends)
    ctx["chart_cities"] = _chart_cities(tr, unit, [r for r in rows if not r["total"]])
    ctx["chart_trend"] = _chart_trend(tr, unit, state, rows, names)
    return ctx


def _unit_links(request: Request) -> list[dict[str, Any]]:
    """The 元 / 万元 switch: this page with ?unit=wan or without it, other parameters kept."""
    current = web.unit_of(request).value
    tr = web.translator(request)
    links = []
    for unit in (i18n.Unit.YUAN, i18n.Unit.WAN):
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "unit"]
        if unit is i18n.Unit.WAN:
            params.append(("unit", "wan"))
        query = urlencode(params)
        links.append(
            {
                "url": web.path_for(request, "overview") + ("?" + query if query else ""),
                "label": tr.gettext(unit.label),
                "current": unit.value == current,
                "value": unit.value,
            }
        )
    return links


def _trend(tr: i18n.Translator, trend: cache.Trend, rows: Sequence[Mapping[str, Any]]) -> Any:
    """One period's changes, in the order of the overview's rows (a city the snapshot did not
    know shows its whole figure as the change, as `report trend` does)."""
    by_node = {r["node_id"]: r for r in trend.rows or []}
    return {
        "since": trend.since,
        "label": tr.gettext(SINCE_LABELS.get(trend.since, trend.since)),
        "target": trend.target.isoformat(),
        "baseline": trend.baseline.isoformat() if trend.baseline else "",
        "available": trend.rows is not None,
        "changes": {
            r["node_id"]: {
                key: by_node[r["node_id"]].get(f"{key}_change") if r["node_id"] in by_node else None
                for key, _label, _kind in FIGURES
            }
            for r in rows
        },
    }


def _number(value: Decimal, unit: i18n.Unit) -> float:
    """An amount for a chart: a number in the page's unit, to the cent."""
    return float(i18n.in_unit(value, unit).quantize(Decimal("0.01")))


def _chart_cities(
    tr: i18n.Translator, unit: i18n.Unit, rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Bars per city: deposits, loans and non-performing loans."""
    shown = (
        ("deposit_balance", N_("deposits")),
        ("loan_balance", N_("loans")),
        ("npl_balance", N_("non-performing loans")),
    )
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 80, "right": 20, "top": 40, "bottom": 30},
        "xAxis": {"type": "category", "data": [r["name"] for r in rows]},
        "yAxis": {"type": "value", "name": tr.gettext(unit.label)},
        "series": [
            {
                "name": tr.gettext(label),
                "type": "bar",
                "data": [_number(r[key], unit) for r in rows],
            }
            for key, label in shown
        ],
    }


def _chart_trend(
    tr: i18n.Translator,
    unit: i18n.Unit,
    state: cache.Overview,
    rows: Sequence[Mapping[str, Any]],
    names: Mapping[str, str],
) -> dict[str, Any]:
    """Lines over the daily snapshots, then the current figures: the province's deposits and
    loans, and each city's deposits."""
    days = sorted({h["snapshot_date"] for h in state.history})
    at = {(h["snapshot_date"], h["node_id"]): h for h in state.history}
    nodes = [r["node_id"] for r in rows if not r["total"]]
    now = {r["node_id"]: r for r in rows}
    labels = [d.isoformat() for d in days] + [tr.gettext(N_("now"))]
    zero = Decimal("0.00")

    def province(key: str) -> list[float]:
        return [
            _number(sum((at[d, n][key] for n in nodes if (d, n) in at), zero), unit) for d in days
        ]

    def city(node: str, key: str) -> list[float | None]:
        values: list[float | None] = [
            _number(at[d, node][key], unit) if (d, node) in at else None for d in days
        ]
        return [*values, _number(now[node][key], unit)]

    province_name = names.get(analysis.PROVINCE, analysis.PROVINCE)
    series: list[dict[str, Any]] = [
        {
            "name": tr.fmt(N_("{place} {figure}"), place=province_name, figure=tr.gettext(label)),
            "type": "line",
            "data": [*province(key), _number(now[analysis.PROVINCE][key], unit)],
        }
        for key, label in (("deposit_balance", N_("deposits")), ("loan_balance", N_("loans")))
    ]
    series += [
        {
            "name": tr.fmt(
                N_("{place} {figure}"), place=names.get(n, n), figure=tr.gettext(N_("deposits"))
            ),
            "type": "line",
            "connectNulls": True,
            "data": city(n, "deposit_balance"),
        }
        for n in nodes
    ]
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0, "type": "scroll"},
        "grid": {"left": 80, "right": 20, "top": 40, "bottom": 30},
        "xAxis": {"type": "category", "data": labels},
        "yAxis": {"type": "value", "name": tr.gettext(unit.label)},
        "series": series,
    }
