"""The auditor's pages: the audit log with `syncd audit log`'s filters and pages, one entry
with the row decisions it covers, the chain check against an anchor (`audit verify
--against`, also of an export file) and the export (`audit export`) as a download.

Everything is read through `syncd.hub.audit_query` and `syncd.hub.audit`, as the CLI reads
it. ID numbers inside row keys and details (a conflict's identity, a typed number in a
report's arguments) are masked unless the auditor asks for `?unmask=1`, which is audited
first. The export is the exact stored text (it must verify), so it holds full ID numbers:
it needs Permission.UNMASK besides AUDIT_EXPORT and is audited as an ids_unmasked view.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TextIO, cast

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import Connection

from syncd.console import web
from syncd.core import i18n, times
from syncd.core.errors import UsageError
from syncd.core.i18n import N_
from syncd.hub.console_users import SIGNIN, SIGNIN_FAILED, USER_CHANGED, Permission, User

if TYPE_CHECKING:
    from syncd.app import Node

router = APIRouter()
Auditor = Annotated[User, web.need(Permission.AUDIT)]
Exporter = Annotated[User, web.need(Permission.AUDIT_EXPORT)]

LIMITS = (50, 100, 200, 500)  # offered by the form; ?limit= takes 1 to MAX_LIMIT
MAX_LIMIT = 1000
ENTRY_ROWS = 500  # row decisions shown per page of one entry
_EXPORT_CHUNK = 64 * 1024
_SPOOL_BYTES = 8 * 1024 * 1024  # an export bigger than this is spooled to a temporary file


_FILTERS = ("node", "batch", "table", "key", "id_number", "golden_id", "action", "since", "until")


# --- reading the query string -----------------------------------------------------------------


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


@dataclasses.dataclass(frozen=True)
class Asked:
    """The filter form as the auditor filled it in (empty fields left out)."""

    values: dict[str, str]
    limit: int
    before: str | None

    @classmethod
    def of(cls, request: Request) -> Asked:
        values = {n: v for n in _FILTERS if (v := _text(request, n)) is not None}
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            limit = 100
        return cls(values, min(max(limit, 1), MAX_LIMIT), _text(request, "before"))

    def criteria(self) -> Any:
        from syncd.hub.audit_query import Criteria

        return Criteria(
            node=self.values.get("node"),
            table=self.values.get("table"),
            key=self.values.get("key"),
            id_number=self.values.get("id_number"),
            golden_id=self._number("golden_id"),
            action=self.values.get("action"),
            since=self.values.get("since"),
            until=self.values.get("until"),
            batch=self._number("batch"),
        )

    def _number(self, name: str) -> int | None:
        text = self.values.get(name)
        try:
            number = None if text is None else int(text)
        except ValueError:
            raise UsageError(f"{name} {str(text)[:20]!r} is not a number") from None
        if number is not None and not 0 <= number <= web.MAX_ID:
            raise UsageError(f"{name} {str(text)[:20]!r} is out of range")
        return number

    def arguments(self) -> dict[str, Any]:
        """What an ids_unmasked entry records of this view (a typed ID number masked)."""
        args: dict[str, Any] = {k: masked(v) for k, v in self.values.items()}
        if "id_number" in args:
            args["id_number"] = i18n.mask_id(self.values["id_number"])
        return {**args, "limit": self.limit, "before": self.before}

    def params(self, **changes: Any) -> dict[str, Any]:
        """The query string of this view with `changes` (None drops a parameter)."""
        out: dict[str, Any] = {**self.values, "limit": self.limit, "before": self.before}
        out.update(changes)
        return {k: v for k, v in out.items() if v is not None}


def _zone(node: Node) -> dt.tzinfo:
    return times.zone(node.settings.console.timezone)


# --- showing a line ---------------------------------------------------------------------------


def masked(value: Any) -> Any:
    """`value` (a decoded row key or detail) with every ID number in it masked: the values of
    id_number fields, and resident ID numbers standing alone in any text."""
    return i18n.mask_ids(value, in_text=True)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return ", ".join(str(v) for v in value) if value else "[]"
    return _json(value)


_SIGNIN_REASONS = {
    "bad_credentials": N_("wrong user name or password"),
    "locked": N_("the account is locked"),
    "locked_now": N_("too many failures: the account is now locked"),
    "disabled": N_("the account is disabled"),
}
_USER_CHANGES = {
    "added": N_("added with roles {roles}"),
    "password": N_("password changed"),
    "disabled": N_("disabled"),
    "enabled": N_("enabled"),
    "roles": N_("roles set to {roles}"),
}


def summary(action: str, detail: Any, tr: i18n.Translator) -> str | None:
    """The console's own entries (sign-ins, user changes, full ID views) in one sentence."""
    if not isinstance(detail, dict):
        return None
    client = detail.get("client") or "?"
    if action == SIGNIN:
        return tr.fmt(
            N_("{user} signed in from {client}"), user=detail.get("username"), client=client
        )
    if action == SIGNIN_FAILED:
        reason = str(detail.get("reason"))
        text = tr.fmt(
            N_("failed sign-in as {user} from {client}: {reason}"),
            user=detail.get("username"),
            client=client,
            reason=tr.gettext(_SIGNIN_REASONS[reason]) if reason in _SIGNIN_REASONS else reason,
        )
        if detail.get("known_user") is False:
            text += tr.gettext(N_(" (no such user)"))
        return text
    if action == USER_CHANGED:
        change = str(detail.get("change"))
        roles = tr.list_separator.join(
            tr.enum("console_role", r) for r in detail.get("roles") or []
        )
        what = tr.fmt(_USER_CHANGES[change], roles=roles) if change in _USER_CHANGES else change
        text = tr.fmt(N_("console user {user}: {what}"), user=detail.get("username"), what=what)
        if detail.get("by"):
            text += tr.fmt(N_(" (by {by})"), by=detail["by"])
        return text
    if action == "ids_unmasked":
        who = detail.get("console_user") or detail.get("os_user") or detail.get("db_role") or "?"
        via = tr.gettext(N_("console")) if detail.get("console_user") else tr.gettext(N_("CLI"))
        return tr.fmt(
            N_("{who} ({via}) saw full ID numbers: {report}, {rows} rows"),
            who=who,
            via=via,
            report=detail.get("report"),
            rows=detail.get("rows"),
        )
    return None


def shown_line(
    line: dict[str, Any],
    tz: dt.tzinfo,
    names: dict[str, str],
    tr: i18n.Translator,
    unmask: bool,
) -> dict[str, Any]:
    """A line of the log as a page shows it."""
    key = line["row_key"] if unmask else masked(line["row_key"])
    detail = line["detail"] if unmask else masked(line["detail"])
    node = line["node_id"]
    entry_id, ord_ = int(line["entry_id"]), int(line["ord"])
    return {
        "id": str(entry_id) if not ord_ else f"{entry_id}.{ord_}",
        "entry_id": entry_id,
        "ord": ord_,
        "at": times.shown(line["at"], tz),
        "action": line["action"],
        "action_label": tr.enum("audit_action", line["action"]),
        "node_id": node,
        "node": f"{names[node]} ({node})" if node in names else (node or ""),
        "batch_id": line["batch_id"],
        "table_name": line["table_name"] or "",
        "row_key": "" if key is None else _scalar(key),
        "summary": summary(line["action"], detail, tr),
        "fields": (
            [(k, _scalar(v)) for k, v in detail.items()]
            if isinstance(detail, dict)
            else [("", _scalar(detail))]
        ),
        "detail_json": json.dumps(
            detail, ensure_ascii=False, sort_keys=True, indent=2, default=str
        ),
        "hash": line["entry_hash"] if not ord_ else line["row_hash"],
        "prev_hash": line["prev_hash"],
    }


def _actions() -> list[str]:
    from syncd.hub.audit import Action

    return sorted({*(a.value for a in Action), SIGNIN, SIGNIN_FAILED, USER_CHANGED})


def _may_unmask(request: Request, user: User) -> bool:
    return web.unmask_requested(request, user)


# --- the log ----------------------------------------------------------------------------------


@router.get("/audit")
def audit(request: Request, user: Auditor) -> HTMLResponse:
    from syncd.hub import audit_query
    from syncd.hub.nodes import list_nodes

    asked = Asked.of(request)
    unmask = _may_unmask(request, user)
    tr = web.translator(request)

    def go(node: Node, conn: Connection) -> dict[str, Any]:
        tz = _zone(node)
        flt = asked.criteria().build(conn, node.policy, tz)
        page = audit_query.query_page(conn, flt, limit=asked.limit, before=asked.before)
        newer = None
        if asked.before is not None:
            newer = audit_query.newer_before(conn, flt, limit=asked.limit, before=asked.before)
        nodes = list_nodes(conn)
        return {
            "page": page,
            "newer": newer,
            "nodes": [str(n["node_id"]) for n in nodes],
            "names": {str(n["node_id"]): n["display_name"] for n in nodes if n["display_name"]},
            "tz": tz,
            "tables": [t.name for t in node.policy.public_tables],
        }

    error = None
    found: dict[str, Any] | None = None
    try:
        found = web.read(request, go)
    except UsageError as exc:
        error = str(exc)
    lines: list[dict[str, Any]] = []
    if found is not None:
        if unmask:
            rows = len(found["page"].entries)
            web.audit_unmask(request, user, "audit log", asked.arguments(), rows)
        lines = [
            shown_line(e, found["tz"], found["names"], tr, unmask) for e in found["page"].entries
        ]
    page = found["page"] if found else None
    return web.render(
        request,
        "audit.html",
        asked=asked.values,
        limit=asked.limit,
        limits=sorted({*LIMITS, asked.limit}),
        before=asked.before,
        actions=_actions(),
        tables=found["tables"] if found else [],
        nodes=[(n, found["names"].get(n)) for n in found["nodes"]] if found else [],
        timezone=web.node(request).settings.console.timezone,
        lines=lines,
        error=error,
        more=page.more if page else 0,
        older=asked.params(before=page.next_before) if page and page.next_before else None,
        # None when the page just newer is the newest one: the link then drops `before`.
        newer=asked.params(before=found["newer"]) if found and asked.before is not None else None,
        newest=asked.params(before=None) if asked.before is not None else None,
        unmasked=unmask,
        unmask_link=asked.params(unmask=1) if user.may(Permission.UNMASK) and not unmask else None,
        may_export=user.may(Permission.AUDIT_EXPORT) and user.may(Permission.UNMASK),
        export_params=asked.params(before=None, limit=None),
        query=_query,
    )


def _query(params: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return "?" + urlencode(params)


# --- one entry --------------------------------------------------------------------------------


@router.get("/audit/{entry_id:int}")
def audit_entry(request: Request, entry_id: web.RecordId, user: Auditor) -> HTMLResponse:
    from syncd.hub import audit_query
    from syncd.hub.nodes import display_names

    unmask = _may_unmask(request, user)
    tr = web.translator(request)
    try:
        after = min(max(0, int(request.query_params.get("after", "0"))), web.MAX_ID)
    except ValueError:
        after = 0

    def go(node: Node, conn: Connection) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        found = audit_query.entry_lines(conn, entry_id, limit=ENTRY_ROWS, after=after)
        entry = found[0] if found and found[0]["ord"] == 0 else None
        if entry is None and after:
            head = audit_query.entry_lines(conn, entry_id, limit=0)
            entry = head[0] if head else None
        tz = _zone(node)
        names = display_names(conn)
        return [shown_line(x, tz, names, tr, unmask) for x in found], (
            None if entry is None else shown_line(entry, tz, names, tr, unmask)
        )

    lines, entry = web.read(request, go)
    if entry is None:
        return web.render(
            request,
            "problem.html",
            status_code=404,
            message=tr.fmt(N_("There is no audit entry {entry_id}."), entry_id=entry_id),
        )
    rows = [x for x in lines if x["ord"] > 0]
    if unmask:
        web.audit_unmask(
            request, user, "audit entry", {"entry_id": entry_id, "after": after}, len(lines)
        )
    count = None
    if entry["action"] == "row_decisions":
        count = next((int(v) for k, v in entry["fields"] if k == "count"), None)
    last = rows[-1]["ord"] if rows else after
    return web.render(
        request,
        "audit_entry.html",
        entry=entry,
        rows=rows,
        count=count,
        after=after,
        next_link=(
            {"after": last, **({"unmask": 1} if unmask else {})}
            if count is not None and last < count
            else None
        ),
        unmasked=unmask,
        unmask_link=(
            {"unmask": 1, **({"after": after} if after else {})}
            if user.may(Permission.UNMASK) and not unmask
            else None
        ),
        query=_query,
    )


# --- verify -----------------------------------------------------------------------------------


def _result(res: Any, tr: i18n.Translator) -> dict[str, Any]:
    if res.ok:
        message = tr.fmt(
            N_("The audit chain is intact: {entries} entries checked, head {head}."),
            entries=i18n.format_count(res.entries),
            head=res.anchor,
        )
        if res.starts_after:
            message += " " + tr.fmt(N_("(from entry {first})"), first=res.starts_after + 1)
        if res.rows:
            message += " " + tr.fmt(
                N_("{rows} row decisions checked in them."), rows=i18n.format_count(res.rows)
            )
    else:
        message = tr.fmt(
            N_("The audit chain is BROKEN at entry {entry}: {reason}"),
            entry=res.broken_id,
            reason=res.reason,
        )
    return {
        "ok": res.ok,
        "message": message,
        "entries": res.entries,
        "head": res.anchor,
        "broken_id": res.broken_id,
        "reason": res.reason,
    }


def _verify_page(
    request: Request, *, anchor: str = "", result: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    from syncd.hub import audit as hub_audit

    head_id, head_hash = web.read(request, lambda _n, conn: hub_audit.head(conn))
    return web.render(
        request,
        "audit_verify.html",
        status_code=status,
        anchor=anchor,
        result=result,
        head=hub_audit.format_anchor(head_id, head_hash),
    )


@router.get("/audit/verify")
def audit_verify_form(request: Request, user: Auditor) -> HTMLResponse:
    return _verify_page(request)


@router.post("/audit/verify")
def audit_verify(
    request: Request,
    user: Auditor,
    anchor: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """`syncd audit verify [--against ANCHOR]` on the hub's log."""
    from syncd.hub import audit as hub_audit

    tr = web.translator(request)
    against = anchor.strip() or None
    try:
        res = web.read(request, lambda _n, conn: hub_audit.verify(conn, against=against))
    except UsageError as exc:
        result = {"ok": False, "message": str(exc), "broken_id": None, "reason": str(exc)}
        return _verify_page(request, anchor=anchor, result=result, status=400)
    return _verify_page(request, anchor=anchor, result=_result(res, tr))


@router.post("/audit/verify-file")
def audit_verify_file(
    request: Request,
    file: Annotated[UploadFile, File()],
    user: Auditor,
    anchor: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """`syncd audit verify --file EXPORT [--against ANCHOR]` on an uploaded export."""
    from syncd.hub.audit_file import verify_file

    tr = web.translator(request)
    against = anchor.strip() or None
    name = file.filename or "export"
    suffix = Path(name).suffix[:10]
    with tempfile.TemporaryDirectory(prefix="syncd-audit-") as tmp:
        path = Path(tmp) / f"export{suffix}"
        with path.open("wb") as fh:
            shutil.copyfileobj(file.file, fh)

        def named(text: str) -> str:  # the file as the auditor knows it, not the server's path
            return text.replace(str(path), name)

        try:
            res = verify_file(path, against)
        except UsageError as exc:
            message = named(str(exc))
            result = {"ok": False, "message": message, "broken_id": None, "reason": message}
            return _verify_page(request, anchor=anchor, result=result, status=400)
        if res.reason:
            res = dataclasses.replace(res, reason=named(res.reason))
    result = _result(res, tr)
    result["file"] = file.filename
    return _verify_page(request, anchor=anchor, result=result)


# --- export -----------------------------------------------------------------------------------


def _newest(request: Request) -> int | None:
    """The export's ?newest=N (only the newest N lines), None for all."""
    newest = _text(request, "newest")
    try:
        limit = None if newest is None else int(newest)
    except ValueError:
        raise UsageError(f"newest {str(newest)[:20]!r} is not a number") from None
    if limit is not None and limit < 1:
        raise UsageError("newest must be at least 1")
    return None if limit is None else min(limit, web.MAX_ID)


@router.get("/audit/export")
def audit_export(request: Request, user: Exporter) -> Response:
    """`syncd audit export --format csv|json` with the log's filters, as a download."""
    from syncd.hub import audit_query

    if not user.may(Permission.UNMASK):
        # The export is the stored text, full ID numbers included: masking would break it.
        raise web.Forbidden(Permission.UNMASK)
    if web.from_elsewhere(request):
        # Another site's link must not make the auditor download full ID numbers (and be
        # audited for it): the export starts from the console's own form.
        raise web.BadCsrf()
    asked = Asked.of(request)
    fmt: Literal["csv", "json"] = "json" if request.query_params.get("format") == "json" else "csv"
    limit = _newest(request)

    def counted(node: Node, conn: Connection) -> int:
        flt = asked.criteria().build(conn, node.policy, _zone(node))
        return audit_query.count(conn, flt, before=asked.before)

    lines = web.read(request, counted)
    arguments = {**asked.arguments(), "format": fmt, "limit": limit}
    web.audit_unmask(
        request, user, "audit export", arguments, lines if limit is None else min(lines, limit)
    )
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by the response's iterator)
        max_size=_SPOOL_BYTES, mode="w+", encoding="utf-8", newline=""
    )

    def go(node: Node, conn: Connection) -> int:
        flt = asked.criteria().build(conn, node.policy, _zone(node))
        out = cast(TextIO, spool)
        return audit_query.export(conn, out, fmt, flt, limit=limit, before=asked.before)

    try:
        web.read(request, go)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        try:
            while block := spool.read(_EXPORT_CHUNK):
                yield block.encode("utf-8")
        finally:
            spool.close()

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"syncd-audit-{stamp}.{'jsonl' if fmt == 'json' else 'csv'}"
    media = "application/x-ndjson" if fmt == "json" else "text/csv; charset=utf-8"
    return StreamingResponse(
        chunks(),
        media_type=media,
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )
