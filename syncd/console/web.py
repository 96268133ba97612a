"""What every console page uses: the signed-in user, permission checks, CSRF, templates.

A page is a plain (sync) FastAPI route — FastAPI runs it in its thread pool, so the sync
SQLAlchemy reads of the CLI's own report functions are called as they are — that depends on
`need(Permission.X)` for its user, reads through `read(request, fn)` and answers with
`render(request, "x.html", ...)`. Nothing is reachable without a session but the sign-in page,
/healthz and the static files; every POST carries the session's CSRF token (checked for the
whole app by `csrf_protect`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection

from syncd.core import i18n
from syncd.core.errors import UsageError
from syncd.core.i18n import N_
from syncd.hub.console_users import Permission, User, active_user
from syncd.store.db import translated

if TYPE_CHECKING:
    from syncd.app import Node

T = TypeVar("T")

HERE = Path(__file__).parent
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)

USER_KEY = "user"
SINCE_KEY = "signed_in_at"
CSRF_KEY = "csrf"
LANG_KEY = "lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class NotSignedIn(Exception):
    """No valid session: the app answers with a redirect to the sign-in page."""


class Forbidden(Exception):
    """Signed in, without the permission the page or action needs: 403."""

    def __init__(self, permission: Permission) -> None:
        super().__init__(permission.value)
        self.permission = permission


class BadCsrf(Exception):
    """A POST without the session's CSRF token: 403, nothing done."""


class BadInput(Exception):
    """A query or form value no page takes (a NUL character): 400, nothing read or done."""

    def __init__(self, fields: list[str]) -> None:
        super().__init__(", ".join(fields))
        self.fields = fields


# The largest id a database column holds (BIGINT): a page id past it is refused as a bad
# request before any query (SQLite cannot even bind it; PostgreSQL answers "out of range").
MAX_ID = 2**63 - 1
RecordId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


# --- the navigation: endpoint name (the route function's name), label, permission ------------
# A link shows when the user has the permission and the app has the route.
NAV: tuple[tuple[str, str, Permission], ...] = (
    ("overview", N_("Province overview"), Permission.OVERVIEW),
    ("customers", N_("Customer 360"), Permission.CUSTOMERS),
    ("segments", N_("Segments"), Permission.ANALYSIS),
    ("key_customers", N_("Key customers"), Permission.ANALYSIS),
    ("warnings", N_("Risk warnings"), Permission.ANALYSIS),
    ("health", N_("Sync health"), Permission.HEALTH),
    ("conflicts", N_("Conflicts"), Permission.STEWARDSHIP_VIEW),
    ("quarantine", N_("Quarantine"), Permission.STEWARDSHIP_VIEW),
    ("audit", N_("Audit log"), Permission.AUDIT),
)


def node(request: Request) -> Node:
    return request.app.state.node  # type: ignore[no-any-return]


def read(request: Request, fn: Callable[[Node, Connection], T]) -> T:
    """fn(the hub's node, a connection); driver errors become syncd errors (shown as 503)."""
    n = node(request)
    with translated("reading"), n.engine.connect() as conn:
        return fn(n, conn)


def translator(request: Request) -> i18n.Translator:
    lang = request.session.get(LANG_KEY)
    try:
        return i18n.Translator(lang if isinstance(lang, str) else None)
    except UsageError:
        return i18n.Translator(None)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (an anonymous session has one too)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


async def csrf_protect(request: Request) -> None:
    """Every POST (app-wide dependency): the form field or header must equal the session's."""
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    expected = request.session.get(CSRF_KEY)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not sent or not secrets.compare_digest(expected, sent):
        raise BadCsrf()


async def refuse_nul(request: Request) -> None:
    """Every request (app-wide dependency): no NUL character in a query or form value. Text
    columns cannot hold one (PostgreSQL refuses it), so such a value could only end as a
    database error; it is a bad request instead."""
    bad = [k for k, v in request.query_params.multi_items() if "\x00" in k or "\x00" in v]
    if request.method == "POST":
        form = await request.form()
        bad += [k for k, v in form.multi_items() if isinstance(v, str) and "\x00" in k + v]
    if bad:
        raise BadInput(sorted({k.replace("\x00", "\\0") for k in bad}))


def session_user(request: Request) -> User | None:
    """The signed-in user, if the session is valid, not expired and the user still active."""
    name = request.session.get(USER_KEY)
    since = request.session.get(SINCE_KEY)
    if not isinstance(name, str) or not isinstance(since, (int, float)):
        return None
    minutes = node(request).settings.console.session_minutes
    if dt.datetime.now(dt.UTC).timestamp() - since > minutes * 60:
        request.session.clear()
        return None
    at = dt.datetime.fromtimestamp(since, dt.UTC).replace(tzinfo=None)
    return read(request, lambda _n, conn: active_user(conn, name, at))


def signed_in(request: Request) -> User:
    user = session_user(request)
    if user is None:
        raise NotSignedIn()
    request.state.user = user
    return user


def need(permission: Permission) -> Any:
    """A route dependency: the signed-in user, who must have `permission` (else 403)."""

    def check(user: User = Depends(signed_in)) -> User:
        if not user.may(permission):
            raise Forbidden(permission)
        return user

    return Depends(check)


def path_for(request: Request, name: str, **params: Any) -> str:
    """The path (root path included) of a route or static file: links stay on the scheme and
    host the browser used, whatever the reverse proxy tells the console."""
    return request.url_for(name, **params).path


def sign_in_url(request: Request) -> str:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return path_for(request, "signin_form") + "?next=" + quote(target, safe="")


def safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: a path of this console only (no open redirect)."""
    root = request.scope.get("root_path", "")
    if not target:
        return path_for(request, "home")
    local = target.startswith("/") and not target.startswith("//")
    if local and "\\" not in target and (not root or target.startswith(root + "/")):
        return target
    return path_for(request, "home")


def nav(request: Request, user: User | None) -> list[dict[str, Any]]:
    if user is None:
        return []
    tr = translator(request)
    current = getattr(request.scope.get("route"), "name", None)
    return [
        {
            "url": path_for(request, name),
            "label": tr.gettext(label),
            "current": name == current,
        }
        for name, label, permission in NAV
        if user.may(permission) and _has_route(request, name)
    ]


def _has_route(request: Request, name: str) -> bool:
    """Whether the app has a route of this name (asked of the router: FastAPI keeps included
    routers' routes out of app.routes)."""
    from starlette.routing import NoMatchFound

    try:
        request.url_for(name)
    except NoMatchFound:
        return False
    return True


def first_page(request: Request, user: User) -> str | None:
    items = nav(request, user)
    return items[0]["url"] if items else None


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page: the template with the translator, the user, the navigation and the CSRF token."""
    tr = translator(request)
    user: User | None = getattr(request.state, "user", None)
    unit = unit_of(request)
    base = {
        "request": request,
        "url_for": lambda name, **params: path_for(request, name, **params),
        "_": tr.gettext,
        "tr": tr,
        "lang": tr.lang,
        "user": user,
        "nav": nav(request, user),
        "csrf_token": csrf_token(request),
        "csrf_field": CSRF_FIELD,
        "unit": unit,
        "amount": lambda v, u=unit: "" if v is None else i18n.format_amount(v, u),
        "count": lambda v: "" if v is None else i18n.format_count(v),
        "mask": i18n.mask_id,
        "when": lambda v: local_time(request, v),
        "zone_label": zone_label(request),
        "node_name": node(request).settings.node.id,
        "status_code": status_code,
    }
    response: HTMLResponse = templates.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )
    return response


def zone(request: Request) -> ZoneInfo:
    """The zone pages show times in (`[console] timezone`)."""
    return ZoneInfo(node(request).settings.console.timezone)


def zone_label(request: Request) -> str:
    """The zone as a page names it: Asia/Shanghai (UTC+08:00)."""
    tz = zone(request)
    offset = dt.datetime.now(tz).strftime("%z")
    return f"{tz.key} (UTC{offset[:3]}:{offset[3:]})"


def when(value: Any, tz: dt.tzinfo = dt.UTC) -> str:
    """A stored time (naive UTC: a datetime or its ISO text) in zone tz, to the second."""
    if value is None or value == "":
        return ""
    moment = value
    if not isinstance(moment, dt.datetime):
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def local_time(request: Request, value: Any) -> str:
    """`when` in the console's zone."""
    return when(value, zone(request))


def unit_of(request: Request) -> i18n.Unit:
    """The amounts' unit a page was asked for: `?unit=wan` for 万元, else 元."""
    return i18n.Unit.WAN if request.query_params.get("unit") == "wan" else i18n.Unit.YUAN


def may(request: Request, permission: Permission) -> bool:
    user: User | None = getattr(request.state, "user", None)
    return user is not None and user.may(permission)


def from_elsewhere(request: Request) -> bool:
    """Whether the browser says another site sent this request (Sec-Fetch-Site: cross-site
    or same-site, a link on a page not of this console's origin). A typed address or a
    bookmark says `none`; a browser too old to say anything is taken at its word."""
    return request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")


def unmask_requested(request: Request, user: User) -> bool:
    """`?unmask=1` from a user whose role may see full ID numbers; a page that honours it
    must audit the view with `audit_unmask` before it answers. A link from another site
    does not unmask (it would write an ids_unmasked entry in the user's name that the user
    never chose): the page shows masked, with its own link to unmask."""
    return (
        request.query_params.get("unmask") == "1"
        and user.may(Permission.UNMASK)
        and not from_elsewhere(request)
    )


def audit_unmask(
    request: Request, user: User, page: str, arguments: Mapping[str, Any], rows: int
) -> None:
    """An ids_unmasked entry (who, which page, its arguments, how many rows), committed first."""
    from syncd.hub.reports import record_unmasked

    record_unmasked(
        node(request).engine,
        f"console {page}",
        dict(arguments),
        rows,
        None,
        console_user=user.username,
    )
