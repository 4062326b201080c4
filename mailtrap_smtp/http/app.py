"""The FastAPI application: routers, and the handlers that make EVERY answer Mailtrap-shaped JSON.

No framework page ever reaches a client: malformed JSON, a wrong content type, a body that fails
the models, an unknown path (404), a wrong method (405) and any unexpected error (500) are all
answered in the shape of the path's family (`errors.py`): management paths with `{"error": …}`,
everything else with `{"success": false, "errors": […]}`. Internals go to the log only. (The one
HTML is the unsubscribe page a recipient opens, `unsubscribe.py`; its refusals are JSON too.)

`Edge` (pure ASGI, outermost) refuses bodies over `http.max_request_bytes` before they are read
whole, and records requests by route and status, and their latency.
"""

from __future__ import annotations

import email.message
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import metrics
from . import (
    dashboard,
    email_logs,
    errors,
    inboxes_api,
    manage,
    sandbox_api,
    send,
    stats,
    suppressions,
    templates_api,
    unsubscribe,
    webhooks_api,
)
from .context import ApiContext

log = logging.getLogger(__name__)

MANAGE_PREFIXES = ("/api/accounts", "/api/domains", "/api/suppressions", "/api/email_logs", "/api/stats",
                   "/api/webhooks")


def is_management(path: str) -> bool:
    return path.startswith(MANAGE_PREFIXES)


def respond(error: errors.SendError | errors.ManageError, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers=headers,
                        media_type="application/json; charset=utf-8")


def _for_path(path: str, send_error: errors.SendError, manage_error: errors.ManageError) -> Response:
    return respond(manage_error if is_management(path) else send_error)


def _json_content_type(value: str | None) -> bool:
    if not value:
        return False
    msg = email.message.Message()
    msg["content-type"] = value
    return msg.get_content_type() == "application/json" or msg.get_content_type().endswith("+json")


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = exc.errors()
    management = is_management(request.url.path)
    body_errors = any(tuple(d.get("loc", ()))[:1] == ("body",) for d in details)
    if body_errors and not _json_content_type(request.headers.get("content-type")):
        return respond(errors.ManageError(415, {"error": "Content-Type must be application/json"})
                       if management else errors.UNSUPPORTED_MEDIA_TYPE)
    if any(d.get("type") == "json_invalid" for d in details):
        return respond(errors.MANAGE_BAD_REQUEST if management else errors.INVALID_JSON)
    if management and any(tuple(d.get("loc", ()))[:1] == ("path",) for d in details):
        return respond(errors.MANAGE_NOT_FOUND)  # e.g. a non-numeric id: no such resource
    if any(tuple(d.get("loc", ())) == ("body",) for d in details):
        return respond(errors.MANAGE_BAD_REQUEST if management else errors.BODY_NOT_OBJECT)
    if management:
        fields: dict[str, list[str]] = {}
        for d in details:
            fields.setdefault(_field(tuple(d.get("loc", ()))), []).append("is invalid")
        return respond(errors.manage_invalid(fields))
    messages = list(dict.fromkeys(f"'{_field(tuple(d.get('loc', ())))}' is invalid" for d in details))
    return respond(errors.send_error(400, *messages))


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    return respond(exc.error, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    path = request.url.path
    if exc.status_code == 404:
        return _for_path(path, errors.NOT_FOUND, errors.MANAGE_NOT_FOUND)
    if exc.status_code == 405:
        return _for_path(path, errors.METHOD_NOT_ALLOWED, errors.MANAGE_METHOD_NOT_ALLOWED)
    text = str(exc.detail) if exc.status_code < 500 else "Internal server error"
    return _for_path(path, errors.send_error(exc.status_code, text),
                     errors.ManageError(exc.status_code, {"error": text}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("API request %s %s failed", request.method, request.url.path, exc_info=exc)
    return _for_path(request.url.path, errors.INTERNAL, errors.MANAGE_INTERNAL)


class Edge:
    """Outermost: read the request body up to `limit` bytes (past it: 413), then hand it on; count
    the request by route and status and time it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send_: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send_)
            return
        started = time.monotonic()
        status = "500"  # unless a response starts: an exception escaped to the framework's last handler

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send_(message)

        try:
            await self._limited(scope, receive, send_observed)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(route, str(scope.get("method", "")), status).inc()
            metrics.HTTP_LATENCY.labels(route).observe(time.monotonic() - started)

    async def _limited(self, scope: Scope, receive: Receive, send_: Send) -> None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send_)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send_)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_)

    async def _too_large(self, scope: Scope, receive: Receive, send_: Send) -> None:
        path = str(scope.get("path", ""))
        error = (errors.ManageError(413, {"error": "Request body too large"}) if is_management(path)
                 else errors.REQUEST_TOO_LARGE)
        # Connection: close, so the rest of an oversized body is not read as the next request.
        await respond(error, {"Connection": "close"})(scope, receive, send_)


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="mailtrap-smtp Email API", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.ctx = ctx
    app.include_router(send.router)
    app.include_router(manage.router)
    app.include_router(templates_api.router)
    app.include_router(sandbox_api.router)
    app.include_router(inboxes_api.router)
    for events_router in (suppressions.router, email_logs.router, stats.router):
        app.include_router(events_router)
    app.include_router(webhooks_api.router)
    app.include_router(unsubscribe.router)
    dashboard.install(app)  # the web dashboard under /dashboard (issue 15)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(errors.ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(Edge, limit=ctx.cfg.http.max_request_bytes)
    return app
