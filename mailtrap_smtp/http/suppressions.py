"""Suppressions API (MAILTRAP_COMPAT §6, §9 item 22), legacy `/api/accounts/{id}/suppressions` and
current `/api/suppressions` paths: GET a bare array (search by `email`, `start_time`, `end_time`,
`last_id`), POST 201 `{"data": Suppression}` (admin only), DELETE /{id} the bare object."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from .. import permissions
from ..core import suppressions as sup
from . import errors
from .principal import Caller, context, manage_caller
from .scope import SUPPRESSIONS, own_account, query, readable_domains, refused, require, within_budget

router = APIRouter()
_JSON = "application/json; charset=utf-8"


def _admin(caller: Caller) -> None:
    """Changes are for admin tokens (§6 "Admin only"); one scoped to domains changes only theirs."""
    require(caller.principal.level is permissions.Level.ADMIN)


async def _list(request: Request, caller: Caller) -> JSONResponse:
    require(permissions.may_read(caller.principal))
    within_budget(request, caller, SUPPRESSIONS)
    q = query(request)
    one = {k: v[-1] for k, v in q.items() if v}
    try:
        rows = await sup.search(
            context(request).pool, caller.principal.account_id, email=one.get("email") or None,
            start_time=sup.parse_time("start_time", one.get("start_time")),
            end_time=sup.parse_time("end_time", one.get("end_time")),
            last_id=sup.parse_id(one["last_id"]) if one.get("last_id") else None,
            domain_ids=readable_domains(caller))
    except (sup.Invalid, sup.NotFound) as e:
        raise refused(e) from None
    return JSONResponse(rows, media_type=_JSON)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise errors.ApiError(errors.MANAGE_BAD_REQUEST) from None
    if not isinstance(body, dict):
        raise errors.ApiError(errors.MANAGE_BAD_REQUEST)
    inner = body.get("suppression")
    return inner if isinstance(inner, dict) else body


async def _create(request: Request, caller: Caller) -> JSONResponse:
    _admin(caller)
    within_budget(request, caller, SUPPRESSIONS)
    body = await _body(request)
    entry = sup.Entry(body.get("email"), body.get("domain_id"), body.get("sending_stream", "any"),
                      body.get("type") or sup.MANUAL_IMPORT)
    if isinstance(entry.domain_id, int) and not permissions.may_manage(caller.principal, entry.domain_id):
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)  # not one of this token's domains
    try:
        obj = await sup.add_one(context(request).pool, caller.principal.account_id, entry)
    except (sup.Invalid, sup.NotFound) as e:
        raise refused(e) from None
    return JSONResponse({"data": obj}, status_code=201, media_type=_JSON)


async def _delete(request: Request, caller: Caller, suppression_id: str) -> JSONResponse:
    _admin(caller)
    within_budget(request, caller, SUPPRESSIONS)
    try:
        sid = sup.parse_id(suppression_id)
        pool = context(request).pool
        found = await sup.domain_of(pool, caller.principal.account_id, sid)
        if not permissions.may_manage(caller.principal, found):
            raise sup.NotFound(suppression_id)
        obj = await sup.delete(pool, caller.principal.account_id, sid)
    except (sup.Invalid, sup.NotFound) as e:
        raise refused(e) from None
    return JSONResponse(obj, media_type=_JSON)


@router.get("/api/accounts/{account_id}/suppressions")
async def legacy_list(account_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    own_account(caller, account_id)
    return await _list(request, caller)


@router.post("/api/accounts/{account_id}/suppressions", status_code=201)
async def legacy_create(account_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    own_account(caller, account_id)
    return await _create(request, caller)


@router.delete("/api/accounts/{account_id}/suppressions/{suppression_id}")
async def legacy_delete(account_id: int, suppression_id: str, request: Request,
                        caller: Caller = Depends(manage_caller)) -> JSONResponse:
    own_account(caller, account_id)
    return await _delete(request, caller, suppression_id)


@router.get("/api/suppressions")
async def current_list(request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    return await _list(request, caller)


@router.post("/api/suppressions", status_code=201)
async def current_create(request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    return await _create(request, caller)


@router.delete("/api/suppressions/{suppression_id}")
async def current_delete(suppression_id: str, request: Request,
                         caller: Caller = Depends(manage_caller)) -> JSONResponse:
    return await _delete(request, caller, suppression_id)
