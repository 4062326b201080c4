"""Login (an admin token of the account, `permissions.may_manage`) and logout.

The login form carries a CSRF token bound to a random pre-login cookie (login CSRF: another site
must not log a victim into the attacker's account). The session cookie is `HttpOnly; Secure;
SameSite=Strict`, limited to the dashboard's path.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from .session import LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECONDS, new_login_nonce
from .web import PREFIX, Forbidden, Viewer, admin_of, keys, posted, render, text, viewer

router = APIRouter(prefix=PREFIX)
_COOKIE = {"path": PREFIX, "secure": True, "httponly": True, "samesite": "strict"}


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _form(request, None, 200)


def _form(request: Request, error: str | None, status: int) -> Response:
    nonce = new_login_nonce()
    response = render(request, None, "login.html", status, title="Log in", error=error,
                      csrf=keys(request).csrf("login:" + nonce))
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, **_COOKIE)  # type: ignore[arg-type]
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not keys(request).csrf_ok(f"login:{nonce}" if nonce else None, text(form, "csrf")):
        raise Forbidden
    token = text(form, "token").strip()
    if not token or await admin_of(request, token) is None:
        return _form(request, "That is not an admin token of an account (level admin, every domain).", 401)
    response = RedirectResponse(PREFIX + "/", status_code=303)
    response.set_cookie(SESSION_COOKIE, keys(request).seal(token), max_age=SESSION_SECONDS,
                        **_COOKIE)  # type: ignore[arg-type]
    response.delete_cookie(LOGIN_COOKIE, **_COOKIE)  # type: ignore[arg-type]
    return response


@router.post("/logout")
async def logout(request: Request, who: Viewer = Depends(viewer)) -> Response:
    await posted(request, who)
    response = RedirectResponse(PREFIX + "/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, **_COOKIE)  # type: ignore[arg-type]
    return response
