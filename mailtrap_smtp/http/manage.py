"""Management paths on every API listener (Mailtrap's `mailtrap.io` host, MAILTRAP_COMPAT.md §4.3,
§9 items 19-21): the account, and its sending domains (list, create, get, delete, re-check on demand),
under both the legacy `/api/accounts/{account_id}/sending_domains` and the current `/api/domains`
paths. Errors use the management shapes (`errors.MANAGE_*`). The domain rules are `domainops`'s.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from .. import domainops, permissions
from ..core.refusal import Refused
from ..store.types import Record
from . import errors
from .context import ApiContext
from .domain_view import domain_out
from .models import AccountOut, DomainList, DomainOut, NewSendingDomain
from .principal import Caller, context, manage_caller
from .scope import own_account, require

router = APIRouter()

ADMIN_ACCESS_LEVEL = 1000  # Mailtrap's access level of an account admin (100: viewer)
VIEWER_ACCESS_LEVEL = 100




async def _view(ctx: ApiContext, caller: Caller, row: Record) -> DomainOut:
    records = await domainops.expected_for(ctx.pool, ctx.cfg, row)
    return domain_out(row, records, require_approval=ctx.cfg.domains.require_approval,
                      may_manage=permissions.may_manage(caller.principal, int(row["id"])))


def _readable(caller: Caller, domain_id: int) -> bool:
    return permissions.may_read(caller.principal, domain_id=domain_id)


async def _domain(ctx: ApiContext, caller: Caller, domain_id: int) -> Record:
    """One of the account's domains that this token may see (else 404: it is not there for it)."""
    require(permissions.may_read(caller.principal))  # a send-only token reads nothing
    row = await domainops.domain_of_account(ctx.pool, caller.principal.account_id, domain_id)
    if row is None or not _readable(caller, domain_id):
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)
    return row


@router.get("/api/accounts", response_model=list[AccountOut])
async def accounts(caller: Caller = Depends(manage_caller)) -> list[AccountOut]:
    p = caller.principal
    level = ADMIN_ACCESS_LEVEL if permissions.may_manage(p) else VIEWER_ACCESS_LEVEL
    return [AccountOut(id=p.account_id, name=p.account_name, access_levels=[level])]


async def _list(request: Request, caller: Caller) -> DomainList:
    ctx = context(request)
    who = caller.principal
    require(permissions.may_read(who) or permissions.may_manage(who) or (who.domain_ids is not None
             and who.level is not permissions.Level.SEND))
    rows = await domainops.list_domains(ctx.pool, who.account_name)
    return DomainList(data=[await _view(ctx, caller, await _domain(ctx, caller, int(r["id"])))
                            for r in rows if _readable(caller, int(r["id"]))])


async def _create(request: Request, caller: Caller, body: NewSendingDomain) -> DomainOut:
    require(permissions.may_manage(caller.principal))  # account-wide: an unscoped admin token
    ctx = context(request)
    fields = body.sending_domain or body.domain
    name = (fields.domain_name if fields is not None else None) or ""
    if not name.strip():
        raise errors.ApiError(errors.manage_invalid({"domain_name": ["can't be blank"]}))
    try:
        report = await domainops.add_domain(ctx.pool, ctx.cfg, ctx.kek, caller.principal.account_name, name)
    except Refused as e:
        raise errors.ApiError(errors.for_refusal(e, "domain_name")) from None
    return await _view(ctx, caller, await _domain(ctx, caller, int(report.domain["id"])))


async def _get(request: Request, caller: Caller, domain_id: int) -> DomainOut:
    ctx = context(request)
    return await _view(ctx, caller, await _domain(ctx, caller, domain_id))


async def _delete(request: Request, caller: Caller, domain_id: int) -> Response:
    await _domain(context(request), caller, domain_id)
    require(permissions.may_manage(caller.principal, domain_id))
    if not await domainops.delete_domain(context(request).pool, caller.principal.account_id, domain_id):
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)
    return Response(status_code=204)


async def _check(request: Request, caller: Caller, domain_id: int) -> DomainOut:
    """Re-check the domain's DNS now (Mailtrap's "Re-check" button), then answer the domain."""
    ctx = context(request)
    row = await _domain(ctx, caller, domain_id)
    require(permissions.may_manage(caller.principal, domain_id))
    await domainops.verify_domain(ctx.pool, ctx.cfg, ctx.resolver, str(row["name"]))
    return await _view(ctx, caller, await _domain(ctx, caller, domain_id))


# Legacy paths (Python SDK 2.11, Ruby SDK): the account in the path must be the token's.

@router.get("/api/accounts/{account_id}/sending_domains", response_model=DomainList)
async def legacy_list(account_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> DomainList:
    own_account(caller, account_id)
    return await _list(request, caller)


@router.post("/api/accounts/{account_id}/sending_domains", response_model=DomainOut)
async def legacy_create(account_id: int, body: NewSendingDomain, request: Request,
                        caller: Caller = Depends(manage_caller)) -> DomainOut:
    own_account(caller, account_id)
    return await _create(request, caller, body)


@router.get("/api/accounts/{account_id}/sending_domains/{domain_id}", response_model=DomainOut)
async def legacy_get(account_id: int, domain_id: int, request: Request,
                     caller: Caller = Depends(manage_caller)) -> DomainOut:
    own_account(caller, account_id)
    return await _get(request, caller, domain_id)


@router.delete("/api/accounts/{account_id}/sending_domains/{domain_id}", status_code=204)
async def legacy_delete(account_id: int, domain_id: int, request: Request,
                        caller: Caller = Depends(manage_caller)) -> Response:
    own_account(caller, account_id)
    return await _delete(request, caller, domain_id)


@router.post("/api/accounts/{account_id}/sending_domains/{domain_id}/check", response_model=DomainOut)
async def legacy_check(account_id: int, domain_id: int, request: Request,
                       caller: Caller = Depends(manage_caller)) -> DomainOut:
    own_account(caller, account_id)
    return await _check(request, caller, domain_id)


# Current paths (OAS): the account is the token's.

@router.get("/api/domains", response_model=DomainList)
async def current_list(request: Request, caller: Caller = Depends(manage_caller)) -> DomainList:
    return await _list(request, caller)


@router.post("/api/domains", response_model=DomainOut)
async def current_create(body: NewSendingDomain, request: Request,
                         caller: Caller = Depends(manage_caller)) -> DomainOut:
    return await _create(request, caller, body)


@router.get("/api/domains/{domain_id}", response_model=DomainOut)
async def current_get(domain_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> DomainOut:
    return await _get(request, caller, domain_id)


@router.delete("/api/domains/{domain_id}", status_code=204)
async def current_delete(domain_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> Response:
    return await _delete(request, caller, domain_id)


@router.post("/api/domains/{domain_id}/check", response_model=DomainOut)
async def current_check(domain_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> DomainOut:
    return await _check(request, caller, domain_id)
