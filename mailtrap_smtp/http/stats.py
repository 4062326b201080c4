"""Stats API (MAILTRAP_COMPAT §7.2, §9 item 34), legacy `/api/accounts/{id}/stats[/group]` and
current `/api/stats[/group]` paths, group ∈ domains, categories, email_service_providers, date. A
token scoped to some domains or one stream gets the stats of those only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from .. import permissions
from ..core import stats as stats_uc
from ..core.suppressions import Invalid
from . import errors
from .principal import Caller, context, manage_caller
from .scope import STATS, own_account, query, readable_domains, readable_streams, refused, require, within_budget

router = APIRouter()
_JSON = "application/json; charset=utf-8"


def _request(request: Request, caller: Caller) -> stats_uc.StatsRequest:
    require(permissions.may_read(caller.principal))
    within_budget(request, caller, STATS)
    try:
        req = stats_uc.parse_query(query(request))
    except stats_uc.MissingParameter as e:
        raise errors.ApiError(errors.manage_missing(e.name)) from None
    except Invalid as e:
        raise refused(e) from None
    domains, streams = readable_domains(caller), readable_streams(caller)
    if domains is not None:
        req = replace(req, domain_ids=[d for d in (req.domain_ids or domains) if d in domains] or [-1])
    if streams is not None:
        req = replace(req, streams=[s for s in (req.streams or streams) if s in streams] or [""])
    return req


async def _answer(request: Request, caller: Caller, grouping: str | None) -> JSONResponse:
    req = _request(request, caller)
    pool, account_id = context(request).pool, caller.principal.account_id
    body: Any = (await stats_uc.totals(pool, account_id, req) if grouping is None
                 else await stats_uc.grouped(pool, account_id, req, grouping))
    return JSONResponse(body, media_type=_JSON)


@router.get("/api/accounts/{account_id}/stats")
async def legacy_totals(account_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    own_account(caller, account_id)
    return await _answer(request, caller, None)


@router.get("/api/accounts/{account_id}/stats/{grouping}")
async def legacy_grouped(account_id: int, grouping: str, request: Request,
                         caller: Caller = Depends(manage_caller)) -> JSONResponse:
    own_account(caller, account_id)
    if grouping not in stats_uc.GROUPINGS:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)
    return await _answer(request, caller, grouping)


@router.get("/api/stats")
async def current_totals(request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    return await _answer(request, caller, None)


@router.get("/api/stats/{grouping}")
async def current_grouped(grouping: str, request: Request, caller: Caller = Depends(manage_caller)) -> JSONResponse:
    if grouping not in stats_uc.GROUPINGS:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)
    return await _answer(request, caller, grouping)
