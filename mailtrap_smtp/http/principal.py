"""Who is calling: the API token (`Authorization: Bearer` or `Api-Token`, MAILTRAP_COMPAT.md §2.4)
→ `auth.Authenticator` → principal; the brake on failed look-ups; the request budget
(`ratelimit.py`); and THE permission check.

The brake is SMTP AUTH's (`smtp/peers.py`, `limits.auth_failures_per_ip`), the same table: a wrong
token counts under the client IP with the token's public id (`peers.brake_key`: an app with a valid
token behind the same NAT as a guesser keeps working), under the IP alone when the id is unknown.
A key at its limit is answered 429 with `Retry-After` before any look-up, also for a token the
cache knows, so a blocked guesser learns nothing.

A listener's stream is fixed (`transactional`, `bulk`) or read from the Host header (`host`: a
`bulk.` prefix means bulk, as Mailtrap's `bulk.api.mailtrap.io`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from .. import permissions, tokens
from ..auth import Principal
from ..outcomes import Outcome, Rejected
from ..smtp.peers import brake_key
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


async def authenticate(request: Request, *, sending: bool) -> Principal:
    """With `sending`, the token must be allowed to send on this door's stream and the account be
    under its monthly limit (`auth.Authenticator`); without, only a valid token. A refusal is
    `Rejected` with the authenticator's outcome."""
    token = token_of(request)
    if token is None:
        raise Rejected(Outcome.CREDENTIAL_UNKNOWN)
    ctx = context(request)
    ip = request.client.host if request.client is not None else ""
    brake = brake_key(ip, tokens.public_id_of(token))
    _unless_blocked(request, brake, sending)
    stream = stream_of(request)
    key = (tokens.digest(token) if token.isascii() else token.encode("utf-8", "replace"), stream, sending)
    cached = ctx.token_cache.get(key)
    if cached is not None:
        return cached
    try:
        principal, _ = await ctx.authenticator.authenticate(
            token, stream=stream, sending=sending, sender_policy=ctx.submission.sender_policy)
    except Rejected as r:
        if r.outcome is Outcome.CREDENTIAL_UNKNOWN and brake != ip:
            brake = ip  # no such token id: a guess at ids, braked by the IP alone (as SMTP does)
            _unless_blocked(request, brake, sending)
        if r.outcome in (Outcome.CREDENTIAL_INVALID, Outcome.CREDENTIAL_UNKNOWN):
            ctx.auth_failures.record(brake)
        raise
    ctx.token_cache.put(key, principal)
    return principal


def _unless_blocked(request: Request, brake: str, sending: bool) -> None:
    wait = context(request).auth_failures.blocked_for(brake)
    if wait:
        raise errors.ApiError(errors.AUTH_BLOCKED if sending else errors.MANAGE_AUTH_BLOCKED,
                              {"Retry-After": str(wait)})


def _counted(request: Request, principal: Principal, too_many: errors.SendError | errors.ManageError) -> Decision:
    rate = context(request).limiter.hit(principal.credential_id)
    if not rate.allowed:
        raise errors.ApiError(too_many, {**rate_headers(rate), "Retry-After": str(rate.reset_seconds)})
    return rate


async def send_caller(request: Request) -> Caller:
    """Dependency of the send paths: a principal allowed to send on this listener's stream."""
    try:
        principal = await authenticate(request, sending=True)
    except Rejected as r:
        raise errors.ApiError(errors.for_outcome(r.outcome)) from None
    rate = _counted(request, principal, errors.RATE_LIMITED)
    stream = stream_of(request)
    if not may_send(principal, stream):
        raise errors.ApiError(errors.UNAUTHORIZED, rate_headers(rate))
    return Caller(principal, stream, rate)


async def manage_caller(request: Request) -> Caller:
    """Dependency of the management paths: any valid token of the account (each route asks
    `permissions` what it may do; an account at its monthly limit may still manage its domains)."""
    try:
        principal = await authenticate(request, sending=False)
    except Rejected as r:
        raise errors.ApiError(errors.for_manage_auth(r.outcome)) from None
    rate = _counted(request, principal, errors.MANAGE_RATE_LIMITED)
    return Caller(principal, stream_of(request), rate)
