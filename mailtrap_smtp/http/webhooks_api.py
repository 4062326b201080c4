"""Webhooks under the legacy `/api/accounts/{account_id}/webhooks[/{id}]` (Python SDK 2.11) and the
current `/api/webhooks[/{id}]` paths (MAILTRAP_COMPAT.md §5.3, §9 item 24): list, create (the
signing secret in that answer only), get, update (PATCH), delete, each `{"data": ...}`, over the
webhook use cases (`core/webhooks.py`). Reading needs a read or admin token; changing an admin
token of every domain. Errors use the management shapes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from .. import permissions
from ..core import webhooks
from . import errors
from .principal import Caller, context, manage_caller

router = APIRouter()
LEGACY = "/api/accounts/{account_id}/webhooks"
CURRENT = "/api/webhooks"


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore")


class NewWebhookFields(_Shape):
    url: str | None = None
    webhook_type: str | None = None
    active: bool | None = None
    payload_format: str | None = None
    sending_stream: str | None = None
    event_types: list[str] | None = None
    domain_id: int | None = None
    inbound_inbox_id: int | None = None


class WebhookChangeFields(_Shape):
    url: str | None = None
    active: bool | None = None
    payload_format: str | None = None
    event_types: list[str] | None = None
    inbound_inbox_id: int | None = None


class NewWebhook(_Shape):
    webhook: NewWebhookFields | None = None


class WebhookChange(_Shape):
    webhook: WebhookChangeFields | None = None


def _allowed(caller: Caller, *, change: bool, account_id: int | None = None) -> int:
    who = caller.principal
    if account_id is not None and account_id != who.account_id:
        raise errors.ApiError(errors.MANAGE_FORBIDDEN)
    if not (permissions.may_manage(who) if change else permissions.may_read(who) or permissions.may_manage(who)):
        raise errors.ApiError(errors.MANAGE_FORBIDDEN)
    return int(who.account_id)


def _invalid(e: webhooks.InvalidWebhook) -> errors.ApiError:
    return errors.ApiError(errors.manage_invalid({e.field: [e.reason]}))


async def _list(request: Request, caller: Caller, account_id: int | None) -> dict[str, Any]:
    acct = _allowed(caller, change=False, account_id=account_id)
    return {"data": await webhooks.list_webhooks(context(request).pool, acct)}


async def _create(request: Request, caller: Caller, body: NewWebhook, account_id: int | None) -> dict[str, Any]:
    acct = _allowed(caller, change=True, account_id=account_id)
    f = body.webhook
    if f is None or not f.url:
        raise errors.ApiError(errors.manage_invalid({"url": ["can't be blank"]}))
    if not f.webhook_type:
        raise errors.ApiError(errors.manage_invalid({"webhook_type": ["can't be blank"]}))
    if f.inbound_inbox_id is not None:
        raise errors.ApiError(errors.manage_invalid({"inbound_inbox_id": ["only for inbound_receiving webhooks"]}))
    spec = webhooks.WebhookSpec(url=f.url, webhook_type=f.webhook_type, active=True if f.active is None else f.active,
                                payload_format=f.payload_format or "json", sending_stream=f.sending_stream,
                                event_types=f.event_types, domain_id=f.domain_id)
    ctx = context(request)
    try:
        created = await webhooks.create(ctx.pool, acct, spec, allow_private=ctx.cfg.webhooks.allow_private_targets)
    except webhooks.InvalidWebhook as e:
        raise _invalid(e) from None
    return {"data": created.webhook}


async def _get(request: Request, caller: Caller, webhook_id: int, account_id: int | None) -> dict[str, Any]:
    acct = _allowed(caller, change=False, account_id=account_id)
    try:
        return {"data": await webhooks.get(context(request).pool, acct, webhook_id)}
    except webhooks.WebhookNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None


async def _update(request: Request, caller: Caller, webhook_id: int, body: WebhookChange,
                  account_id: int | None) -> dict[str, Any]:
    acct = _allowed(caller, change=True, account_id=account_id)
    f = body.webhook or WebhookChangeFields()
    changes = webhooks.WebhookChanges(url=f.url, active=f.active, payload_format=f.payload_format,
                                      event_types=f.event_types)
    ctx = context(request)
    try:
        return {"data": await webhooks.update(ctx.pool, acct, webhook_id, changes,
                                              allow_private=ctx.cfg.webhooks.allow_private_targets)}
    except webhooks.WebhookNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    except webhooks.InvalidWebhook as e:
        raise _invalid(e) from None


async def _delete(request: Request, caller: Caller, webhook_id: int, account_id: int | None) -> dict[str, Any]:
    acct = _allowed(caller, change=True, account_id=account_id)
    try:
        return {"data": await webhooks.delete(context(request).pool, acct, webhook_id)}
    except webhooks.WebhookNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None


@router.get(LEGACY)
async def legacy_list(account_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _list(request, caller, account_id)


@router.post(LEGACY)
async def legacy_create(account_id: int, body: NewWebhook, request: Request,
                        caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _create(request, caller, body, account_id)


@router.get(LEGACY + "/{webhook_id}")
async def legacy_get(account_id: int, webhook_id: int, request: Request,
                     caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _get(request, caller, webhook_id, account_id)


@router.patch(LEGACY + "/{webhook_id}")
async def legacy_update(account_id: int, webhook_id: int, body: WebhookChange, request: Request,
                        caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _update(request, caller, webhook_id, body, account_id)


@router.delete(LEGACY + "/{webhook_id}")
async def legacy_delete(account_id: int, webhook_id: int, request: Request,
                        caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _delete(request, caller, webhook_id, account_id)


@router.get(CURRENT)
async def current_list(request: Request, caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _list(request, caller, None)


@router.post(CURRENT)
async def current_create(body: NewWebhook, request: Request, caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _create(request, caller, body, None)


@router.get(CURRENT + "/{webhook_id}")
async def current_get(webhook_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _get(request, caller, webhook_id, None)


@router.patch(CURRENT + "/{webhook_id}")
async def current_update(webhook_id: int, body: WebhookChange, request: Request,
                         caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _update(request, caller, webhook_id, body, None)


@router.delete(CURRENT + "/{webhook_id}")
async def current_delete(webhook_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> dict[str, Any]:
    return await _delete(request, caller, webhook_id, None)
