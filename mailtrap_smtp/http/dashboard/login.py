"""Login (an admin token of the account, `permissions.may_manage`, or the operator password set
with `mailtrap-smtp dashboard set-password`), which opens a server-side session, and logout,
which ends it.

The login form carries a CSRF token bound to a random pre-login cookie (login CSRF: another site
must not log a victim into the attacker's account). The session cookie is `HttpOnly; Secure;
SameSite=Strict`, limited to the dashboard's path.

Login attempts are braked per client address, node-wide (the API limiter's shared memory): past
LOGIN_ATTEMPTS in LOGIN_WINDOW_SECONDS the form answers 429 without checking anything, so the
operator password cannot be guessed at the speed of the network (tokens are 192-bit anyway).
"""

from __future__ import annotations

import asyncio
import hashlib

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from ... import tokens
from ...core import dashboard_sessions, operator_password
from ..principal import context
from .session import LOGIN_COOKIE, SESSION_COOKIE, new_login_nonce
from .web import OPERATOR, PREFIX, TOKEN, Forbidden, Operator, Viewer, admin_of, keys, posted, render, session_of, text

router = APIRouter(prefix=PREFIX)
_COOKIE = {"path": PREFIX, "secure": True, "httponly": True, "samesite": "strict"}
REFUSED = "That is not an admin token of an account (level admin, every domain), nor the operator password."
LOGIN_ATTEMPTS = 10
LOGIN_WINDOW_SECONDS = 60.0
# The limiter's keys: positive for tokens, -(account * 8 + slot) for the account budgets of
# scope.py (slots 1-4); slot 7 of a hash of the client address is the login brake's.
_LOGIN_SLOT = 7


def _brake_key(request: Request) -> int:
    address = request.client.host if request.client is not None else ""
    return -(int.from_bytes(hashlib.sha256(address.encode()).digest()[:5], "big") * 8 + _LOGIN_SLOT)


def _braked(request: Request) -> Response | None:
    """The 429 page when this address tried too often, else None (the attempt is counted)."""
    ctx = context(request)
    limiter = ctx.budgets.get(_LOGIN_SLOT)
    if limiter is None:
        limiter = ctx.budgets[_LOGIN_SLOT] = ctx.limiter.sibling(LOGIN_ATTEMPTS, LOGIN_WINDOW_SECONDS)
    rate = limiter.hit(_brake_key(request))
    if rate.allowed:
        return None
    response = _form(request, f"Too many login attempts from this address: try again in {rate.reset_seconds} s.",
                     429)
    response.headers["Retry-After"] = str(rate.reset_seconds)
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _form(request, None, 200)


def _form(request: Request, error: str | None, status: int) -> Response:
    nonce = new_login_nonce()
    response = render(request, None, "login.html", status, title="Log in", error=error,
                      csrf=keys(request).csrf("login:" + nonce))
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, **_COOKIE)  # type: ignore[arg-type]
    return response


async def _subject(request: Request, secret: str) -> tuple[str, int | None] | None:
    """What the session will hold for `secret` and whose it is (an account id; None: the
    operator's), or None if it opens nothing. A token is taken without the blanks a paste may add;
    a password exactly as typed."""
    token = secret.strip()
    if tokens.public_id_of(token) is not None:
        principal = await admin_of(request, token)
        return None if principal is None else (TOKEN + token, principal.account_id)
    path = operator_password.path_for(context(request).cfg)
    # scrypt takes tens of milliseconds of CPU: off the event loop.
    fingerprint = await asyncio.to_thread(operator_password.check, path, secret) if secret else None
    return None if fingerprint is None else (OPERATOR + fingerprint, None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not keys(request).csrf_ok(f"login:{nonce}" if nonce else None, text(form, "csrf")):
        raise Forbidden
    braked = _braked(request)
    if braked is not None:
        return braked
    found = await _subject(request, text(form, "token"))
    if found is None:
        return _form(request, REFUSED, 401)
    subject, account_id = found
    cfg = context(request).cfg.dashboard
    async with context(request).pool.acquire() as conn:
        session_id = await dashboard_sessions.open_session(conn, account_id, cfg)
    response = RedirectResponse(PREFIX + ("/operator" if account_id is None else "/"), status_code=303)
    response.set_cookie(SESSION_COOKIE, keys(request).seal(subject, session_id, cfg.session_max_seconds),
                        max_age=int(cfg.session_max_seconds), **_COOKIE)  # type: ignore[arg-type]
    response.delete_cookie(LOGIN_COOKIE, **_COOKIE)  # type: ignore[arg-type]
    return response


@router.post("/logout")
async def logout(request: Request, who: Viewer | Operator = Depends(session_of)) -> Response:
    await posted(request, who)
    async with who.ctx.pool.acquire() as conn:
        await dashboard_sessions.end(conn, who.session)  # every copy of the cookie opens nothing now
    response = RedirectResponse(PREFIX + "/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, **_COOKIE)  # type: ignore[arg-type]
    return response
