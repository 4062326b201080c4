"""What every dashboard page shares: who is logged in (the `viewer` dependency for an account's
admin, `operator` for the operator; else a redirect to the login page), the CSRF check of every
form (`posted`), rendering a template, the refusals (`Missing` → 404, `Forbidden` → 403) and the
security headers of every dashboard answer.

Every page reads and writes through the use cases with the logged-in token's account id, so an id
of another account is simply not found (404), as for the API.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ... import permissions
from ...auth import Principal
from ...core import dashboard_sessions, operator_password
from ...outcomes import Rejected
from ..context import ApiContext
from ..principal import context
from .session import SESSION_COOKIE, SessionKeys

PREFIX = "/dashboard"
NOTE_COOKIE = "mts_dash_note"  # the one-line note shown after a form (`back`)
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def when(value: dt.datetime | str | None, missing: str = "—") -> str:
    """A time as people read it, in UTC to the second (the pages name no time zone but UTC)."""
    if value is None or value == "":
        return missing
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def took(value: dt.timedelta) -> str:
    """A delay as people read it: "0.4 s", "12 s", "3 min 05 s", "2 h 07 min", "3 d 4 h"."""
    s = max(0.0, value.total_seconds())
    if s < 10:
        return f"{s:.1f} s"
    n = int(s)
    if n < 60:
        return f"{n} s"
    if n < 3600:
        return f"{n // 60} min {n % 60:02d} s"
    if n < 86400:
        return f"{n // 3600} h {n % 3600 // 60:02d} min"
    return f"{n // 86400} d {n % 86400 // 3600} h"


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["took"] = took

# No inline script or style anywhere (script-src/style-src 'self'); frames only from our own
# message-HTML route, itself sandboxed; forms post only to us; no page may frame the dashboard.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY", "Cache-Control": "no-store", "Cross-Origin-Opener-Policy": "same-origin",
}


class LoginRequired(Exception):
    """No valid session: the answer is a redirect to the login page."""


class Missing(Exception):
    """No such thing in this account: 404."""


class Forbidden(Exception):
    """A form without a valid CSRF token: 403, nothing done."""


@dataclass(frozen=True)
class Viewer:
    """An admin of one account: every page is of that account."""

    principal: Principal
    csrf: str
    ctx: ApiContext
    session: str  # the server-side session's id (core/dashboard_sessions.py)
    operator = False

    @property
    def account_id(self) -> int:
        return self.principal.account_id


@dataclass(frozen=True)
class Operator:
    """The operator (logged in with the operator password): the view of every account."""

    csrf: str
    ctx: ApiContext
    session: str
    operator = True


class OperatorOnly(Exception):
    """An account's page asked by the operator, who has no account: the answer is the operator view."""


# What a session holds: an admin token, or the fingerprint of the operator password.
TOKEN, OPERATOR = "t:", "o:"


def keys(request: Request) -> SessionKeys:
    ctx = context(request)
    found: SessionKeys | None = getattr(request.app.state, "dashboard_keys", None)
    if found is None:
        found = request.app.state.dashboard_keys = SessionKeys(ctx.kek)
    return found


async def admin_of(request: Request, token: str) -> Principal | None:
    """The principal of `token` if it is an admin of its whole account (`permissions.may_manage`)."""
    ctx = context(request)
    try:
        principal, _ = await ctx.authenticator.authenticate(token, stream=None, sending=False)
    except Rejected:
        return None
    return principal if permissions.may_manage(principal) else None


async def session_of(request: Request) -> Viewer | Operator:
    cookie = request.cookies.get(SESSION_COOKIE)
    opened = keys(request).open(cookie)
    if cookie is None or opened is None:
        raise LoginRequired
    subject, session_id = opened
    ctx = context(request)
    if subject.startswith(OPERATOR):
        current = await asyncio.to_thread(operator_password.fingerprint, operator_password.path_for(ctx.cfg))
        if current is None or not hmac.compare_digest(current, subject.removeprefix(OPERATOR)):
            raise LoginRequired
        await _alive(ctx, session_id, None)
        return Operator(keys(request).csrf(cookie), ctx, session_id)
    principal = await admin_of(request, subject.removeprefix(TOKEN))
    if principal is None:
        raise LoginRequired
    await _alive(ctx, session_id, principal.account_id)
    return Viewer(principal, keys(request).csrf(cookie), ctx, session_id)


async def _alive(ctx: ApiContext, session_id: str, account_id: int | None) -> None:
    """The session must still be open on the server (not logged out, not idle or too old)."""
    async with ctx.pool.acquire() as conn:
        if not await dashboard_sessions.alive(conn, session_id, account_id, ctx.cfg.dashboard):
            raise LoginRequired


async def viewer(request: Request) -> Viewer:
    """Dependency of every account page."""
    who = await session_of(request)
    if isinstance(who, Operator):
        raise OperatorOnly
    return who


async def operator(request: Request) -> Operator:
    """Dependency of the operator's pages: not there for an account's admin (404)."""
    who = await session_of(request)
    if not isinstance(who, Operator):
        raise Missing
    return who


async def posted(request: Request, who: Viewer | Operator) -> FormData:
    """The form of a POST, once its CSRF token is checked (else `Forbidden`)."""
    form = await request.form()
    if not keys(request).csrf_ok(request.cookies.get(SESSION_COOKIE), text(form, "csrf")):
        await form.close()  # an uploaded file's spool
        raise Forbidden
    return form


def text(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value if isinstance(value, str) else default


def upload(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    return value if isinstance(value, UploadFile) else None


def render(request: Request, who: Viewer | Operator | None, page: str, status: int = 200,
           **values: Any) -> HTMLResponse:
    note = _read_note(request.cookies.get(NOTE_COOKIE))
    if note is not None and values.get("error" if note[1] else "flash") is None:
        values["error" if note[1] else "flash"] = note[0]
    response = TEMPLATES.TemplateResponse(request, page, {"who": who, "prefix": PREFIX, **values},
                                          status_code=status)
    if note is not None:
        response.delete_cookie(NOTE_COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")
    return response


def back(path: str, note: str | None = None, *, failed: bool = False) -> RedirectResponse:
    """After a form: see the page (303, RFC 9110 §15.4.4), with a one-line note (an alert when what
    the form asked for `failed`). The note travels in a cookie, not the URL, so a link from
    elsewhere cannot put words in the dashboard's mouth."""
    response = RedirectResponse(PREFIX + path, status_code=303)
    if note:
        value = base64.urlsafe_b64encode(json.dumps([note, failed]).encode()).decode()
        response.set_cookie(NOTE_COOKIE, value, max_age=60, path=PREFIX, secure=True, httponly=True,
                            samesite="strict")
    return response


def _read_note(value: str | None) -> tuple[str, bool] | None:
    if not value or len(value) > 2048:
        return None
    try:
        note = json.loads(base64.urlsafe_b64decode(value))
    except ValueError:
        return None
    if not (isinstance(note, list) and len(note) == 2 and isinstance(note[0], str) and isinstance(note[1], bool)):
        return None
    return note[0], note[1]


def parse_int(value: str) -> int:
    """An id from a path: anything but a plain positive integer is not found."""
    if not value.isdigit() or len(value) > 18:
        raise Missing
    return int(value)


async def _login_required(request: Request, exc: Exception) -> Response:
    response = RedirectResponse(PREFIX + "/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")
    return response


async def _missing(request: Request, exc: Exception) -> Response:
    return render(request, None, "error.html", 404, title="Not found",
                  message="There is no such page in this account.")


async def _forbidden(request: Request, exc: Exception) -> Response:
    return render(request, None, "error.html", 403, title="Refused",
                  message="The form was too old or not sent from this dashboard: reload the page and try again.")


async def _operator_only(request: Request, exc: Exception) -> Response:
    return RedirectResponse(PREFIX + "/operator", status_code=303)


HANDLERS = {LoginRequired: _login_required, Missing: _missing, Forbidden: _forbidden, OperatorOnly: _operator_only}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every answer under the dashboard's path (pages, redirects, files, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                         if k.lower().encode() not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
