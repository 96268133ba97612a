"""Data stewardship: the manual conflict queue and the quarantine, as `syncd conflicts` and
`syncd quarantine` show and act on them.

Every read and every action calls the function the CLI calls (`syncd.hub.conflicts`,
`syncd.hub.quarantine`), so a resolution, an approval or a retry from the console writes the
very audit entries the CLI writes. A steward acting here is `Steward(<username>,
"console:<username>")`: the console user's name where the CLI records `--by`, and the
console account where it records the operating-system user, so the four-eyes rule also
refuses one console user approving their own proposal.

ID numbers (`id_number` wherever it appears: identities, row keys, rows, values and reasons)
are masked for everyone; a role with Permission.UNMASK (stewards) sees them in full only with
`?unmask=1`, audited (`ids_unmasked`) before the page is sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from syncd.console import web
from syncd.core.errors import UsageError
from syncd.core.i18n import ENUMS, N_, NP_, mask_id
from syncd.hub import conflicts as hub_conflicts
from syncd.hub import quarantine as hub_quarantine
from syncd.hub.console_users import Permission, User
from syncd.hub.nodes import list_nodes

router = APIRouter()

ID_COLUMNS = frozenset({"id_number"})
FLASH_KEY = "flash"
VALUE_CHOICE = "__value__"  # the resolve form's choice "this value" (node ids never start so)
# The notice after a retry travels in the session cookie, which browsers drop past 4 KB:
# the first few still-invalid reasons only, each cut short (the list has every one).
MAX_REASONS = 10
MAX_REASON_CHARS = 200

CONFLICT_STATUSES = {
    "open": NP_("conflict_status", "open"),
    "proposed": NP_("conflict_status", "proposed"),
    "resolved": NP_("conflict_status", "resolved"),
    "superseded": NP_("conflict_status", "superseded"),
}
QUARANTINE_STATUSES = {
    "open": NP_("quarantine_status", "open"),
    "retried": NP_("quarantine_status", "retried"),
    "superseded": NP_("quarantine_status", "superseded"),
    "refused": NP_("quarantine_status", "refused"),
    "retrying": NP_("quarantine_status", "retrying"),
}
NOTICES = {
    "resolved": N_(
        "Conflict {cid} resolved: {column} = {value}. The golden record was recomputed."
    ),
    "proposed": N_(
        "Resolution of conflict {cid} proposed: {column} = {value}. Another steward must "
        "approve it before it takes effect."
    ),
    "approved": N_("Conflict {cid} approved and resolved: {column} = {value}."),
}


def steward_of(user: User) -> hub_conflicts.Steward:
    """The console user as a steward: the username as the name, the console account where
    the CLI records the operating-system user."""
    return hub_conflicts.Steward(user.username, f"console:{user.username}")


# --- masking ---------------------------------------------------------------------------------


def _ids(*mappings: Mapping[str, Any] | None) -> set[str]:
    return {
        str(v)
        for m in mappings
        if m
        for k, v in m.items()
        if k in ID_COLUMNS and isinstance(v, str) and v
    }


def _masked(mapping: Mapping[str, Any] | None, show: bool) -> dict[str, Any] | None:
    if mapping is None:
        return None
    return {k: v if show or k not in ID_COLUMNS else mask_id(v) for k, v in mapping.items()}


def _masked_text(text: str | None, ids: Iterable[str], show: bool) -> str | None:
    """Any of the row's ID numbers inside a message (a reason) masked too."""
    if text is None or show:
        return text
    for number in sorted(ids, key=len, reverse=True):
        text = text.replace(number, str(mask_id(number)))
    return text


def _unmask(request: Request, user: User, page: str, arguments: dict[str, Any], rows: int) -> bool:
    """Whether this view shows full ID numbers; audited first when it does."""
    if not web.unmask_requested(request, user):
        return False
    web.audit_unmask(request, user, page, arguments, rows)
    return True


def _flash(request: Request, notice: dict[str, Any]) -> None:
    request.session[FLASH_KEY] = notice


def _take_flash(request: Request) -> dict[str, Any] | None:
    notice = request.session.pop(FLASH_KEY, None)
    return notice if isinstance(notice, dict) else None


def _names(request: Request) -> dict[str, str]:
    """Every node's name as reports show it: its display name (杭州), else its id."""
    nodes = web.read(request, lambda _n, conn: list_nodes(conn))
    return {str(n["node_id"]): str(n["display_name"] or n["node_id"]) for n in nodes}


TIMES = ("opened_at", "resolved_at", "proposed_at", "created_at", "closed_at")


def _timed(request: Request, record: dict[str, Any]) -> dict[str, Any]:
    """The record's timestamps (naive UTC) to the second, in the console's zone."""
    return {
        k: web.local_time(request, v) if k in TIMES and isinstance(v, dt.datetime) else v
        for k, v in record.items()
    }


def _shown_value(column: str, value: Any, tr: Any, show: bool) -> str:
    """A value as the page shows it: the coded value's words beside the code, lists joined;
    an ID number masked unless `show`."""
    if value is None:
        return "∅"
    if column in ID_COLUMNS and not show:
        return str(mask_id(str(value)))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if column in ENUMS:
        words = tr.enum(column, value)
        return f"{words} ({value})" if words != str(value) else str(value)
    return str(value)


def _not_found(request: Request, message: str) -> HTMLResponse:
    return web.render(request, "problem.html", status_code=404, message=message)


# --- conflicts -------------------------------------------------------------------------------


@router.get("/conflicts")
def conflicts(
    request: Request,
    user: Annotated[User, web.need(Permission.STEWARDSHIP_VIEW)],
    status: str = "open",
) -> HTMLResponse:
    """The queue: `syncd conflicts list [--status S]`."""
    if status != "all" and status not in CONFLICT_STATUSES:
        status = "open"
    rows = web.read(
        request,
        lambda _n, conn: hub_conflicts.list_conflicts(
            conn, status=None if status == "all" else status
        ),
    )
    with_ids = sum(1 for r in rows if _ids(r["identity"]) or r["column_name"] in ID_COLUMNS)
    show = _unmask(request, user, "conflicts", {"status": status}, with_ids)
    tr = web.translator(request)
    shown = [
        {
            **_timed(request, r),
            "identity": _masked(r["identity"], show),
            "golden_shown": _shown_value(r["column_name"], r["golden_value"], tr, show),
            "candidates_shown": {
                node: _shown_value(r["column_name"], v, tr, show)
                for node, v in (r["candidates"] or {}).items()
            },
        }
        for r in rows
    ]
    return web.render(
        request,
        "conflicts.html",
        rows=shown,
        status=status,
        statuses=CONFLICT_STATUSES,
        names=_names(request),
        unmasked=show,
        may_unmask=user.may(Permission.UNMASK),
        any_ids=with_ids > 0,
    )


def _conflict_page(
    request: Request, user: User, cid: int, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    try:
        found = web.read(request, lambda _n, conn: hub_conflicts.show(conn, cid))
    except UsageError as exc:
        return _not_found(request, str(exc))
    ids = bool(_ids(found["identity"])) or found["column_name"] in ID_COLUMNS
    show = _unmask(request, user, "conflict", {"conflict_id": cid}, 1 if ids else 0)
    tr = web.translator(request)
    column = found["column_name"]
    resolution = found["resolution"] or {}

    def shown(value: Any) -> str:
        return _shown_value(column, value, tr, show)

    notice = _take_flash(request)
    if notice is not None and notice.get("cid") != cid:
        notice = None
    return web.render(
        request,
        "conflict.html",
        status_code=status_code,
        c=_timed(request, found),
        cid=cid,
        identity=_masked(found["identity"], show),
        golden_shown=shown(found["golden_value"]),
        candidates=[
            {"node_id": node, "value": value, "shown": shown(value)}
            for node, value in sorted((found["candidates"] or {}).items())
        ],
        sources=[{**s, "shown": shown(s["value"])} for s in found["sources"]],
        resolution_shown=shown(resolution["value"]) if "value" in resolution else None,
        resolution=resolution,
        statuses=CONFLICT_STATUSES,
        names=_names(request),
        four_eyes=web.node(request).settings.conflicts.four_eyes,
        may_act=user.may(Permission.STEWARDSHIP_ACT),
        me=steward_of(user),
        value_choice=VALUE_CHOICE,
        notice=(
            tr.fmt(NOTICES[notice["kind"]], **notice["fields"])
            if notice and notice.get("kind") in NOTICES
            else None
        ),
        error=error,
        unmasked=show,
        may_unmask=user.may(Permission.UNMASK) and ids,
    )


@router.get("/conflicts/{cid}")
def conflict_detail(
    request: Request,
    user: Annotated[User, web.need(Permission.STEWARDSHIP_VIEW)],
    cid: web.RecordId,
) -> HTMLResponse:
    """One conflict with every source's value: `syncd conflicts show CID`."""
    return _conflict_page(request, user, cid)


def _acted(request: Request, kind: str, res: dict[str, Any]) -> Response:
    fields = {"cid": res["conflict_id"], "column": res["column"], "value": res["value"]}
    _flash(request, {"cid": res["conflict_id"], "kind": kind, "fields": fields})
    target = web.path_for(request, "conflict_detail", cid=res["conflict_id"])
    return RedirectResponse(f"{target}?done={kind}", status_code=303)


@router.post("/conflicts/{cid}/resolve")
def conflict_resolve(
    request: Request,
    user: Annotated[User, web.need(Permission.STEWARDSHIP_ACT)],
    cid: web.RecordId,
    source: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
) -> Response:
    """`syncd conflicts resolve CID --take NODE | --value VALUE`, proposed under four eyes."""
    n = web.node(request)
    take = source if source and source != VALUE_CHOICE else None
    given = value if source == VALUE_CHOICE else None
    if take is None and given is None:
        tr = web.translator(request)
        message = tr.gettext(N_("Choose a city's value, or give a value."))
        return _conflict_page(request, user, cid, error=message, status_code=400)
    try:
        res = hub_conflicts.resolve(
            n.engine,
            n.policy,
            cid,
            take_node=take,
            value=given,
            by=steward_of(user),
            four_eyes=n.settings.conflicts.four_eyes,
        )
    except UsageError as exc:
        return _conflict_page(request, user, cid, error=str(exc), status_code=400)
    return _acted(request, "proposed" if res["status"] == "proposed" else "resolved", res)


@router.post("/conflicts/{cid}/approve")
def conflict_approve(
    request: Request, user: Annotated[User, web.need(Permission.STEWARDSHIP_ACT)], cid: web.RecordId
) -> Response:
    """`syncd conflicts approve CID`: another steward than the proposer applies a proposal."""
    n = web.node(request)
    try:
        res = hub_conflicts.approve(n.engine, n.policy, cid, by=steward_of(user))
    except UsageError as exc:
        return _conflict_page(request, user, cid, error=str(exc), status_code=409)
    return _acted(request, "approved", res)


# --- quarantine ------------------------------------------------------------------------------


def _listed_ids(e: dict[str, Any]) -> bool:
    """Whether the list's line of an entry shows an ID number: in its key or its reason."""
    reason = e["reason"] or ""
    return bool(_ids(e["row_key"])) or any(n in reason for n in _ids(e["row_data"]))


def _entry_shown(request: Request, e: dict[str, Any], show: bool) -> dict[str, Any]:
    ids = _ids(e["row_key"], e["row_data"])
    return {
        **_timed(request, e),
        "row_key": _masked(e["row_key"], show),
        "row_data": _masked(e["row_data"], show),
        "reason": _masked_text(e["reason"], ids, show),
    }


@router.get("/quarantine")
def quarantine(
    request: Request,
    user: Annotated[User, web.need(Permission.STEWARDSHIP_VIEW)],
    status: str = "open",
    node: str = "",
    table: str = "",
) -> HTMLResponse:
    """Rows the hub rejected and why: `syncd quarantine list [--status --node --table]`."""
    if status != "all" and status not in QUARANTINE_STATUSES:
        status = "open"
    rows = web.read(
        request,
        lambda _n, conn: hub_quarantine.list_entries(
            conn,
            status=None if status == "all" else status,
            node=node or None,
            table=table or None,
        ),
    )
    # The list shows keys and reasons (the rows themselves are on each entry's page).
    with_ids = sum(1 for r in rows if _listed_ids(r))
    arguments = {"status": status, "node": node or None, "table": table or None}
    show = _unmask(request, user, "quarantine", arguments, with_ids)
    open_count = (
        len(rows)
        if status == "open" and not node and not table
        else len(web.read(request, lambda _n, conn: hub_quarantine.list_entries(conn)))
    )
    return web.render(
        request,
        "quarantine.html",
        rows=[_entry_shown(request, r, show) for r in rows],
        status=status,
        node=node,
        table=table,
        statuses=QUARANTINE_STATUSES,
        names=_names(request),
        open_count=open_count,
        may_act=user.may(Permission.STEWARDSHIP_ACT),
        result=_retry_notice(request),
        unmasked=show,
        may_unmask=user.may(Permission.UNMASK) and with_ids > 0,
    )


@router.get("/quarantine/{qid}")
def quarantine_detail(
    request: Request,
    user: Annotated[User, web.need(Permission.STEWARDSHIP_VIEW)],
    qid: web.RecordId,
) -> HTMLResponse:
    """One quarantined row in full, as the city sent it: `syncd quarantine show QID`."""
    try:
        entry = web.read(request, lambda _n, conn: hub_quarantine.show(conn, qid))
    except UsageError as exc:
        return _not_found(request, str(exc))
    ids = _ids(entry["row_key"], entry["row_data"])
    show = _unmask(request, user, "quarantine entry", {"quarantine_id": qid}, 1 if ids else 0)
    return web.render(
        request,
        "quarantine_entry.html",
        e=_entry_shown(request, entry, show),
        qid=qid,
        statuses=QUARANTINE_STATUSES,
        names=_names(request),
        may_act=user.may(Permission.STEWARDSHIP_ACT),
        result=_retry_notice(request),
        unmasked=show,
        may_unmask=user.may(Permission.UNMASK) and bool(ids),
    )


_NO_RETRY: dict[str, Any] = {
    "error": None,
    "retried": [],
    "superseded": [],
    "refused": [],
    "invalid_count": 0,
    "still_invalid": [],
    "conflicts_opened": 0,
}


def _retry_notice(request: Request) -> dict[str, Any] | None:
    """What the last retry did (kept in the session for the page it redirected to)."""
    notice = _take_flash(request)
    return {**_NO_RETRY, **notice} if notice and notice.get("kind") == "retry" else None


def _entry_ids(request: Request, qid: int) -> set[str]:
    entry = web.read(request, lambda _n, conn: hub_quarantine.show(conn, qid))
    return _ids(entry["row_key"], entry["row_data"])


def _retried(request: Request, user: User, qid: int | None, target: str) -> Response:
    n = web.node(request)
    try:
        res = hub_quarantine.retry(
            n.engine, n.policy, qid, by=user.username, os_user=f"console:{user.username}"
        )
    except UsageError as exc:
        # No such entry, or no longer open: the list says why (the entry may not exist).
        _flash(request, {"kind": "retry", "error": str(exc)})
        return RedirectResponse(web.path_for(request, "quarantine") + "?done=retry", 303)
    reasons: list[list[Any]] = []
    for entry_id, reason in list(res.still_invalid.items())[:MAX_REASONS]:
        # The notice is kept in the session cookie: the reason masked as on the page.
        masked = _masked_text(reason, _entry_ids(request, entry_id), False) or ""
        reasons.append([entry_id, masked[:MAX_REASON_CHARS]])
    _flash(
        request,
        {
            "kind": "retry",
            "retried": list(res.retried),
            "superseded": list(res.superseded),
            "refused": list(res.refused),
            "invalid_count": len(res.still_invalid),
            "still_invalid": reasons,
            "conflicts_opened": res.conflicts_opened,
        },
    )
    return RedirectResponse(f"{target}?done=retry", status_code=303)


@router.post("/quarantine/retry")
def quarantine_retry_all(
    request: Request, user: Annotated[User, web.need(Permission.STEWARDSHIP_ACT)]
) -> Response:
    """`syncd quarantine retry --all`: every open entry validated again under the policy."""
    return _retried(request, user, None, web.path_for(request, "quarantine"))


@router.post("/quarantine/{qid}/retry")
def quarantine_retry(
    request: Request, user: Annotated[User, web.need(Permission.STEWARDSHIP_ACT)], qid: web.RecordId
) -> Response:
    """`syncd quarantine retry QID`."""
    return _retried(request, user, qid, web.path_for(request, "quarantine_detail", qid=qid))
