"""The console's pages, one module (one APIRouter) each; `ROUTERS` is what the app mounts.

A page module names its route functions after the endpoints of `web.NAV`, so the navigation
links to them; each route depends on `web.need(Permission.X)`.
"""

from __future__ import annotations

from fastapi import APIRouter

from syncd.console.pages import (
    analysis,
    audit,
    customers,
    health,
    overview,
    session,
    stewardship,
)

ROUTERS: list[APIRouter] = [
    session.router,
    overview.router,
    customers.router,
    analysis.router,
    health.router,
    stewardship.router,
    audit.router,
]
