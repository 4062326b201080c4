"""Who is calling: the API token (`Authorization: Bearer` or `Api-Token`, MAILTRAP_COMPAT.md §2.4)
→ `auth.Authenticator` → principal; the request budget (`ratelimit.py`); and THE permission check.

A listener's stream is fixed (`transactional`, `bulk`) or read from the Host header (`host`: a
`bulk.` prefix means bulk, as Mailtrap's `bulk.api.mailtrap.io`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from .. import permissions, tokens
from ..auth import AuthOutcome, Principal
from . import errors
from .context import ApiContext
from .ratelimit import Decision

STREAM_SCOPE_KEY = "mts.stream"  # set by the listener's ASGI wrapper (server.py)


@dataclass(frozen=True)
class Caller:
    principal: Principal
    stream: str
    rate: Decision


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def token_of(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    api_token = request.headers.get("api-token")
    return api_token.strip() if api_token and api_token.strip() else None


def stream_of(request: Request) -> str:
    stream = str(request.scope.get(STREAM_SCOPE_KEY, "host"))
    if stream != "host":
        return stream
    host = (request.headers.get("host") or "").lower()
    return "bulk" if host.startswith("bulk.") else "transactional"


def may_send(principal: Principal, stream: str) -> bool:
    """The check for sending on `stream` (the token's grant, `permissions.py`)."""
    return permissions.may_send(principal, stream)


def rate_headers(rate: Decision) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(rate.limit), "X-RateLimit-Remaining": str(rate.remaining),
            "X-RateLimit-Reset": str(rate.reset_seconds)}


async def authenticate(request: Request, *, sending: bool) -> tuple[AuthOutcome, Principal | None]:
    """With `sending`, the token must be allowed to send on this door's stream and the account be
    under its monthly limit (`auth.Authenticator`); without, only a valid token."""
    token = token_of(request)
    if token is None:
        return AuthOutcome.UNKNOWN_ID, None
    ctx = context(request)
    stream = stream_of(request)
    key = (tokens.digest(token) if token.isascii() else token.encode("utf-8", "replace"), stream, sending)
    cached = ctx.token_cache.get(key)
    if cached is not None:
        return AuthOutcome.OK, cached
    outcome, principal, _ = await ctx.authenticator.authenticate(
        token, stream=stream, sending=sending, sender_policy=ctx.submission.sender_policy)
    if outcome is AuthOutcome.OK and principal is not None:
        ctx.token_cache.put(key, principal)
    return outcome, principal


def _counted(request: Request, principal: Principal, too_many: errors.SendError | errors.ManageError) -> Decision:
    rate = context(request).limiter.hit(principal.credential_id)
    if not rate.allowed:
        raise errors.ApiError(too_many, {**rate_headers(rate), "Retry-After": str(rate.reset_seconds)})
    return rate


async def send_caller(request: Request) -> Caller:
    """Dependency of the send paths: a principal allowed to send on this listener's stream."""
    outcome, principal = await authenticate(request, sending=True)
    refusal = errors.AUTH_OUTCOMES[outcome]
    if refusal is not None or principal is None:
        raise errors.ApiError(refusal or errors.UNAUTHORIZED)
    rate = _counted(request, principal, errors.RATE_LIMITED)
    stream = stream_of(request)
    if not may_send(principal, stream):
        raise errors.ApiError(errors.UNAUTHORIZED, rate_headers(rate))
    return Caller(principal, stream, rate)


async def manage_caller(request: Request) -> Caller:
    """Dependency of the management paths: any valid token of the account (each route asks
    `permissions` what it may do; an account at its monthly limit may still manage its domains)."""
    outcome, principal = await authenticate(request, sending=False)
    if outcome is AuthOutcome.TEMPORARY:
        raise errors.ApiError(errors.MANAGE_INTERNAL)
    if outcome is not AuthOutcome.OK or principal is None:
        raise errors.ApiError(errors.MANAGE_UNAUTHORIZED)
    rate = _counted(request, principal, errors.MANAGE_RATE_LIMITED)
    return Caller(principal, stream_of(request), rate)
