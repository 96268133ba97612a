"""Sync health: what `syncd status` shows at the hub, for operators, refreshed on its own.

The page reads `syncd.hub.status.hub_status`, the function behind `syncd status`, and shows
its problems and warnings (the same words) at the top, then one row per city with what is
wrong highlighted: failing or refused cities in red, silent or lagging ones in amber.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from syncd.console import web
from syncd.core.i18n import N_
from syncd.hub.console_users import Permission, User
from syncd.hub.status import NodeStatus, hub_status

router = APIRouter()

REFRESH_SECONDS = 20

# A city's state words, as `syncd status` flags them (FAILING, POLICY, SILENT), translated.
STATES = {
    "failing": N_("failing"),
    "policy": N_("batches refused (policy)"),
    "silent": N_("silent"),
    "down_lag": N_("insights not applied"),
}


def _city_problems(n: NodeStatus, threshold: float) -> tuple[list[str], str]:
    """The state words that apply to a city and its row's class (bad, warn or '')."""
    states = [
        key
        for key, on in (
            ("failing", n.failing),
            ("policy", bool(n.policy_problem)),
            ("silent", n.silent),
            ("down_lag", (n.down_lag_seconds or 0) > threshold),
        )
        if on
    ]
    if n.failing or n.policy_problem:
        return states, "bad"
    if states or n.quarantined or n.refused_rows:
        return states, "warn"
    return states, ""


def _named(text: str, names: dict[str, str]) -> str:
    """A status message that starts with a node id, with the city's display name before it."""
    node_id = text.split(" ", 1)[0]
    shown = names.get(node_id)
    return f"{shown} · {text}" if shown else text


@router.get("/health")
def health(request: Request, user: Annotated[User, web.need(Permission.HEALTH)]) -> HTMLResponse:
    n = web.node(request)
    st = hub_status(n.settings, n.engine)
    threshold = n.settings.sync.silent_node_seconds
    names = {c.node_id: c.display_name for c in st.nodes if c.display_name}
    cities: list[dict[str, Any]] = []
    for c in st.nodes:
        states, level = _city_problems(c, threshold)
        cities.append({"s": c, "states": states, "level": level})
    in_trouble = [c for c in cities if c["level"]]
    return web.render(
        request,
        "health.html",
        st=st,
        cities=cities,
        in_trouble=in_trouble,
        problems=[_named(p, names) for p in st.problems],
        warnings=[_named(w, names) for w in st.warnings],
        states=STATES,
        threshold=threshold,
        refresh_seconds=REFRESH_SECONDS,
        refreshed_at=web.local_time(request, dt.datetime.now(dt.UTC)),
    )
