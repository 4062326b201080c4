"""Email logs API (MAILTRAP_COMPAT §7.1, §9 item 33), legacy `/api/accounts/{id}/email_logs` and
current `/api/email_logs` paths: the list (`{"messages", "total_count", "next_page_cursor"}`), one
message with `events` and a signed `raw_message_url`, that URL itself, and the export
(`/api/email_logs/export?format=csv|jsonl`, streamed, beyond Mailtrap). A token reads the logs
of its own domains and streams only (`permissions.may_read`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .. import permissions
from ..core import email_logs as logs
from ..core.suppressions import Invalid, NotFound, parse_id
from . import errors
from .principal import Caller, context, manage_caller
from .scope import (
    EMAIL_LOG_GET,
    EMAIL_LOGS_LIST,
    own_account,
    query,
    readable_domains,
    readable_streams,
    refused,
    require,
    within_budget,
)

router = APIRouter()
_JSON = "application/json; charset=utf-8"
_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl"}


def _urls(request: Request) -> logs.RawUrls:
    return logs.RawUrls(context(request).kek, str(request.base_url), logs.RAW_URL_TTL_SECONDS)


def _request(request: Request, caller: Caller, params: dict[str, list[str]] | None = None) -> logs.ListRequest:
    require(permissions.may_read(caller.principal))
    try:
        req = logs.parse_query(params if params is not None else query(request))
    except Invalid as e:
        raise refused(e) from None
    return logs.scoped(req, domain_ids=readable_domains(caller), streams=readable_streams(caller))


async def _list(request: Request, caller: Caller) -> JSONResponse:
    req = _request(request, caller)
    within_budget(request, caller, EMAIL_LOGS_LIST)
    try:
        page = await logs.list_logs(context(request).pool, caller.principal.account_id, req)
    except (Invalid, NotFound) as e:
        raise refused(e) from None
    return JSONResponse(page, media_type=_JSON)


async def _show(request: Request, caller: Caller, message_id: str) -> JSONResponse:
    require(permissions.may_read(caller.principal))
    within_budget(request, caller, EMAIL_LOG_GET)
    try:
        msg = await logs.show(context(request).pool, caller.principal.account_id, parse_id(message_id),
                              raw_url=_urls(request))
    except (Invalid, NotFound) as e:
        raise refused(e) from None
    visible = permissions.may_read(caller.principal, stream=msg["sending_stream"],
                                   domain_id=msg["domain_id"] if msg["domain_id"] is not None else -1)
    if not visible:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)
    return JSONResponse(msg, media_type=_JSON)


async def _export(request: Request, caller: Caller) -> StreamingResponse:
    params = dict(query(request))
    fmt = (params.pop("format", None) or ["csv"])[-1]
    req = _request(request, caller, params)
    within_budget(request, caller, EMAIL_LOGS_LIST)  # an export is a (long) list
    try:
        logs.check_format(fmt)
    except Invalid as e:
        raise refused(e) from None
    lines: AsyncIterator[str] = logs.export(context(request).pool, caller.principal.account_id, req, fmt)
    return StreamingResponse(lines, media_type=_MEDIA[fmt],
                             headers={"Content-Disposition": f'attachment; filename="email_logs.{fmt}"'})


@router.get("/api/email_logs/{message_id}/raw")
async def raw(message_id: str, request: Request) -> Response:
    """The stored message behind a `raw_message_url`: the signature is the credential (no token)."""
    one: dict[str, Any] = {k: v[-1] for k, v in query(request).items() if v}
    try:
        entry = parse_id(message_id)
    except NotFound:
        raise errors.ApiError(errors.MANAGE_LINK_INVALID) from None
    if not _urls(request).valid(entry, str(one.get("expires", "")), str(one.get("signature", "")),
                                dt.datetime.now(dt.UTC)):
        raise errors.ApiError(errors.MANAGE_LINK_INVALID)
    try:
        body = await logs.raw_message_any(context(request).pool, entry)
    except NotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    return Response(body, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="{entry}.eml"'})


@router.get("/api/accounts/{account_id}/email_logs")
async def legacy_list(account_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    own_account(caller, account_id)
    return await _list(request, caller)


@router.get("/api/accounts/{account_id}/email_logs/export")
async def legacy_export(account_id: int, request: Request,
                        caller: Caller = Depends(manage_caller)) -> StreamingResponse:
    own_account(caller, account_id)
    return await _export(request, caller)


@router.get("/api/accounts/{account_id}/email_logs/{message_id}")
async def legacy_show(account_id: int, message_id: str, request: Request,
                      caller: Caller = Depends(manage_caller)) -> JSONResponse:
    own_account(caller, account_id)
    return await _show(request, caller, message_id)


@router.get("/api/email_logs")
async def current_list(request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    return await _list(request, caller)


@router.get("/api/email_logs/export")
async def current_export(request: Request, caller: Caller = Depends(manage_caller)) -> StreamingResponse:
    return await _export(request, caller)


@router.get("/api/email_logs/{message_id}")
async def current_show(message_id: str, request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    return await _show(request, caller, message_id)
