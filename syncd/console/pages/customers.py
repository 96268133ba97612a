"""Customer 360: search golden customers by name or ID number, and one customer's 360.

The search is `syncd.hub.search.search_customers` (as `syncd report search`); the 360 is
`syncd.hub.reports.customer_360` (as `syncd report customer`) with the customer's insight from
`syncd.hub.analysis.customer_insight` (the classification and warnings of `report warnings`).
ID numbers are masked; a role with Permission.UNMASK gets a link (?unmask=1) that audits the
view before the page shows a full number.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from syncd.console import web
from syncd.core import i18n
from syncd.core.errors import UsageError
from syncd.core.i18n import N_, mask_id
from syncd.hub import analysis, reports, search
from syncd.hub.console_users import Permission, User
from syncd.hub.nodes import city_names, display_names
from syncd.hub.report_views import CUSTOMERS, live, missing_analysis_inputs
from syncd.store import hub_tables as schema_hub

router = APIRouter()

# Field labels of the customer record (the reports' labels); a column a policy adds shows
# under its own name.
LABELS = {
    "golden_id": N_("golden ID"),
    "origin_node": N_("city"),
    "city_code": N_("city code"),
    "customer_id": N_("customer number"),
    "customer_type": N_("customer type"),
    "name": N_("name"),
    "id_type": N_("ID type"),
    "id_number": N_("ID number"),
    "phone": N_("phone"),
    "address": N_("address"),
    "home_city": N_("home city"),
    "status": N_("customer status"),
    "risk_level": N_("risk level"),
    "risk_tags": N_("risk tags"),
    "credit_limit": N_("credit limit"),
    "created_at": N_("created"),
    "updated_at": N_("updated"),
}
ENUM_FIELDS = {
    "customer_type": "customer_type",
    "id_type": "id_type",
    "status": "customer_status",
    "risk_tags": "risk_tag",
}
_RULES = {
    "latest": N_("latest change wins"),
    "priority": N_("the home city's version wins"),
    "max": N_("largest value"),
    "min": N_("smallest value"),
    "union": N_("union of the cities' values"),
    "manual": N_("decided by a data steward"),
}


@router.get("/customers")
def customers(
    request: Request,
    user: Annotated[User, web.need(Permission.CUSTOMERS)],
    q: str | None = None,
) -> HTMLResponse:
    tr = web.translator(request)
    found: search.SearchResult | None = None
    error: str | None = None
    cities: dict[str, str] = {}
    tiers: dict[Any, str] = {}
    if q is not None:
        try:
            found, cities, tiers = web.read(request, lambda n, c: _search(n, c, q))
        except UsageError as exc:
            error = tr.gettext(_search_message(str(exc)))
    unmask = found is not None and bool(found.rows) and web.unmask_requested(request, user)
    if unmask and found is not None:
        shown_q = mask_id(found.text) if found.mode == search.Mode.ID else found.text
        web.audit_unmask(request, user, "customers", {"q": shown_q}, len(found.rows))
    return web.render(
        request,
        "customers.html",
        q=q or "",
        found=found,
        error=error,
        cities=cities,
        tiers=tiers,
        unmask=unmask,
        may_unmask=user.may(Permission.UNMASK),
        limit=search.LIMIT,
        max_length=search.MAX_LENGTH,
    )


def _search_message(reason: str) -> str:
    if reason.startswith("a search is at most"):
        return N_("A search is at most 64 characters: type part of a name or an ID number.")
    if reason.startswith("type part of"):
        return N_("Type part of a name or an ID number to search for.")
    return reason


def _search(
    node: Any, conn: sa.Connection, q: str
) -> tuple[search.SearchResult, dict[str, str], dict[Any, str]]:
    found = search.search_customers(conn, node.policy, q)
    tiers = analysis.snapshot_tiers(conn, [r["golden_id"] for r in found.rows], analysis.today())
    return found, city_names(conn), tiers


@router.get("/customers/{golden_id}")
def customer_detail(
    request: Request, golden_id: int, user: Annotated[User, web.need(Permission.CUSTOMERS)]
) -> HTMLResponse:
    view = web.read(request, lambda n, c: _view(n, c, golden_id))
    unmask = web.unmask_requested(request, user)
    if unmask:
        web.audit_unmask(request, user, "customer", {"golden_id": golden_id}, 1)
    return web.render(
        request,
        "customer.html",
        unmask=unmask,
        may_unmask=user.may(Permission.UNMASK),
        labels=LABELS,
        enum_fields=ENUM_FIELDS,
        show=_shower(request, unmask, view["cities_by_code"]),
        **view,
    )


def _view(node: Any, conn: sa.Connection, golden_id: int) -> dict[str, Any]:
    policy = node.policy
    golden = schema_hub.policy_metadata(policy).tables[CUSTOMERS]
    found = conn.execute(
        sa.select(golden.c.id_number, golden.c.id_type).where(
            golden.c[schema_hub.GOLDEN_ID] == golden_id, live(golden)
        )
    ).first()
    if found is None:
        raise UsageError(f"no live customer with golden ID {golden_id}")
    view = reports.customer_360(conn, policy, found.id_number, found.id_type)
    insight = None
    if not missing_analysis_inputs(policy):
        insight = analysis.customer_insight(conn, policy, node.settings.report, golden_id)
    merge = policy.table(CUSTOMERS).merge
    conflicts = _conflicts(conn, golden_id)
    decided = {}
    for diff in view["differences"]:
        rule = merge.rule_for(diff["column"])
        decided[diff["column"]] = {
            "rule": rule.rule.value,
            "rule_text": _RULES.get(rule.rule.value, rule.rule.value),
            "conflicts": [c for c in conflicts if c["column_name"] == diff["column"]],
        }
    sources = view["sources"]
    fields = [k for k in (sources[0] if sources else {}) if not k.startswith("_")]
    return {
        "view": view,
        "golden": view["golden"],
        "fields": [k for k in fields if k not in ("origin_node", "city_code")],
        "golden_fields": [k for k in view["golden"] if not k.startswith("_")],
        "differing": {d["column"] for d in view["differences"]},
        "decided": decided,
        "conflicts": conflicts,
        "insight": insight,
        "names": display_names(conn),
        "cities_by_code": city_names(conn),
    }


def _conflicts(conn: sa.Connection, golden_id: int) -> list[dict[str, Any]]:
    c = schema_hub.conflicts.c
    query = (
        sa.select(c.conflict_id, c.column_name, c.status, c.resolved_by, c.opened_at)
        .where(c.table_name == CUSTOMERS, c.golden_id == golden_id)
        .order_by(c.conflict_id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def _shower(request: Request, unmask: bool, cities: dict[str, str]) -> Any:
    """show(key, value): a record's field as text (masked ID, translated codes, amounts)."""
    tr = web.translator(request)
    unit = web.unit_of(request)

    def show(key: str, value: Any) -> str:
        if value is None:
            return ""
        if key == "id_number":
            return str(value) if unmask else str(mask_id(value))
        if key == "home_city":
            return cities.get(str(value), str(value))
        if isinstance(value, list | tuple):
            name = ENUM_FIELDS.get(key)
            return ", ".join(tr.enum(name, v) if name else str(v) for v in value)
        if key in ENUM_FIELDS:
            return tr.enum(ENUM_FIELDS[key], value)
        if isinstance(value, Decimal | float):
            return i18n.format_amount(value, unit)
        if hasattr(value, "isoformat"):
            return str(value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat())
        return str(value)

    return show
