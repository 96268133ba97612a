"""Signing in and out, the language, the home redirect and /healthz."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from syncd.console import web
from syncd.core import i18n
from syncd.core.errors import UsageError
from syncd.core.i18n import N_
from syncd.hub.console_users import User, sign_in

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
def healthz(request: Request) -> PlainTextResponse:
    """For the proxy's and systemd's checks: 200 when the hub's database answers, else 503."""
    import sqlalchemy as sa

    try:
        web.read(request, lambda _n, conn: conn.execute(sa.text("SELECT 1")).scalar_one())
    except Exception:
        return PlainTextResponse("database unreachable\n", status_code=503)
    return PlainTextResponse("ok\n")


@router.get("/")
def home(request: Request, user: User = Depends(web.signed_in)) -> Response:
    target = web.first_page(request, user)
    if target is None:
        return web.render(
            request,
            "problem.html",
            status_code=403,
            message=web.translator(request).gettext(N_("Your roles open no page here.")),
        )
    return RedirectResponse(target, status_code=303)


@router.get("/signin")
def signin_form(request: Request, next: str | None = None) -> HTMLResponse:
    return web.render(request, "signin.html", next=next or "", error=None, username="")


@router.post("/signin")
def signin(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    cfg = web.node(request).settings.console
    client = request.client.host if request.client else None
    result = sign_in(
        web.node(request).engine,
        username,
        password,
        client=client,
        lockout_after=cfg.lockout_after,
        lockout_minutes=cfg.lockout_minutes,
    )
    if result.user is None:
        tr = web.translator(request)
        message = (
            N_("This account is locked for a while after too many failed sign-ins.")
            if result.reason == "locked"
            else N_("Wrong user name or password.")
        )
        return web.render(
            request,
            "signin.html",
            status_code=401,
            next=next,
            error=tr.gettext(message),
            username=username,
        )
    lang = request.session.get(web.LANG_KEY)
    request.session.clear()  # a new session (and CSRF token) at sign-in: no fixation
    if isinstance(lang, str):
        request.session[web.LANG_KEY] = lang
    request.session[web.USER_KEY] = result.user.username
    request.session[web.SINCE_KEY] = dt.datetime.now(dt.UTC).timestamp()
    web.csrf_token(request)
    return RedirectResponse(web.safe_next(request, next), status_code=303)


@router.post("/signout")
def signout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse(web.path_for(request, "signin_form"), status_code=303)


@router.post("/lang")
def set_lang(
    request: Request,
    lang: Annotated[str, Form()] = i18n.DEFAULT_LANG,
    back: Annotated[str, Form()] = "",
) -> Response:
    with contextlib.suppress(UsageError):
        request.session[web.LANG_KEY] = i18n.check_lang(lang)
    return RedirectResponse(web.safe_next(request, back), status_code=303)
