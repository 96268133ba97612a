"""The console's ASGI application: `create_app(settings)`, served by uvicorn (`syncd console`).

Middleware, outermost first: security headers on every answer; Starlette's SessionMiddleware
(the session is a cookie signed with itsdangerous, HttpOnly, SameSite=Lax, Secure unless
`[console] secure_cookies = false`; its signature expires after `session_minutes`, and
`web.session_user` also ends a session that long after sign-in however active it was). The
hub's `Node` (settings, policy, engine) is opened once at start-up and closed at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd.console import web
from syncd.core.errors import SyncdError
from syncd.core.i18n import N_
from syncd.core.logs import get_logger
from syncd.core.settings import Settings

if TYPE_CHECKING:
    from syncd.app import Node

SESSION_COOKIE = "syncd_console"
log = get_logger("syncd.console")

# Scripts only from the console itself (ECharts is vendored); no inline script (chart data
# travels in <script type="application/json"> blocks, which are not run); no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every response; pages are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings, node: Node | None = None) -> FastAPI:
    """The console of the hub `settings` describe (`node`: an open Node to use instead)."""
    from syncd.app import Node
    from syncd.core.errors import UsageError
    from syncd.hub.console_users import session_key

    if not settings.is_hub:
        raise UsageError(
            f"the console runs on the hub; {settings.node.id} is a {settings.node.role.value} node"
        )
    hub = node if node is not None else Node.open(settings)
    owned = node is None
    cfg = settings.console
    key = cfg.secret_key.get_secret_value() if cfg.secret_key else session_key(hub.engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            hub.close()

    app = FastAPI(
        title="syncd console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        dependencies=[Depends(web.refuse_nul), Depends(web.csrf_protect)],
    )
    app.state.node = hub
    app.add_middleware(
        SessionMiddleware,
        secret_key=key,
        session_cookie=SESSION_COOKIE,
        max_age=int(cfg.session_minutes * 60),
        same_site="lax",
        https_only=cfg.secure_cookies,
        path=(cfg.root_path or "") + "/",
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(packages=[("syncd.console", "static")]), name="static")
    _errors(app)

    from syncd.console.pages import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(web.NotSignedIn)
    async def not_signed_in(request: Request, _exc: Exception) -> Response:
        if request.method != "GET":
            return PlainTextResponse("not signed in", status_code=401)
        return RedirectResponse(web.sign_in_url(request), status_code=303)

    @app.exception_handler(web.Forbidden)
    async def forbidden(request: Request, _exc: Exception) -> HTMLResponse:
        return _problem(request, 403, N_("Your role may not open this page or do this."))

    @app.exception_handler(web.BadCsrf)
    async def bad_csrf(request: Request, _exc: Exception) -> HTMLResponse:
        return _problem(
            request,
            403,
            N_("The form has expired or did not come from this console. Nothing was done."),
        )

    app.add_exception_handler(StarletteHTTPException, _http_error)

    @app.exception_handler(web.BadInput)
    async def bad_input(request: Request, exc: Exception) -> HTMLResponse:
        assert isinstance(exc, web.BadInput)
        return _problem(request, 400, N_("Invalid request: {fields}"), fields=", ".join(exc.fields))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: Exception) -> HTMLResponse:
        assert isinstance(exc, RequestValidationError)
        names = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors())
        return _problem(request, 400, N_("Invalid request: {fields}"), fields=names)

    @app.exception_handler(SyncdError)
    async def syncd_error(request: Request, exc: Exception) -> HTMLResponse:
        from syncd.core.errors import DatabaseError, InputError
        from syncd.store.db import describe_failure

        if isinstance(exc, InputError):
            return _problem(request, 400, N_("Cannot do this: {reason}"), reason=str(exc))
        if isinstance(exc, DatabaseError):
            # The driver's words name the server, the database and at times a row's values:
            # the log has them (without the values), the page says what a user can do.
            log.error("console_database_error", path=request.url.path, error=describe_failure(exc))
            return _problem(
                request,
                503,
                N_(
                    "The hub's database cannot answer now. Try again in a moment; if this "
                    "lasts, tell the operators (the console's log has the details)."
                ),
            )
        return _problem(request, 503, N_("The hub cannot answer now: {reason}"), reason=str(exc))


async def _http_error(request: Request, exc: Exception) -> HTMLResponse:
    """Starlette's own answers (no such page, a method a page does not take) were JSON in
    English ({"detail": "Not Found"}): the console's problem page instead."""
    assert isinstance(exc, StarletteHTTPException)
    message = {
        404: N_("There is no such page here."),
        405: N_("This page does not take that kind of request."),
    }.get(exc.status_code, N_("The request cannot be answered."))
    response = _problem(request, exc.status_code, message)
    response.headers.update(exc.headers or {})
    return response


def _problem(request: Request, status: int, message: str, **fields: str) -> HTMLResponse:
    tr = web.translator(request)
    if getattr(request.state, "user", None) is None:
        # A refusal before the page looked the user up (a bad CSRF token): the header still
        # shows who is signed in, so nobody takes the refusal for a sign-out.
        try:
            request.state.user = web.session_user(request)
        except SyncdError:
            request.state.user = None
    return web.render(
        request, "problem.html", status_code=status, message=tr.fmt(message, **fields)
    )
