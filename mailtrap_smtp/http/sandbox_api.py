"""Sandbox inboxes over the API (Mailtrap's testing host, MAILTRAP_COMPAT.md §1, §9 item 16):
`POST /api/send/{inbox_id}` and `/api/batch/{inbox_id}` keep the message for an inbox of the
account (never delivered, queued or charged) and answer one id per message; the inbox list, its
messages and each message as `.eml` under `/api/accounts/{account_id}/inboxes…`.
"""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, Depends, Request, Response

from .. import permissions
from ..core import sandbox
from ..outcomes import Rejected
from . import errors, mime
from .context import ApiContext
from .models import (
    MAX_BATCH_REQUESTS,
    BatchBody,
    BatchItem,
    BatchResponse,
    InboxOut,
    Mail,
    SandboxMessageOut,
    SendResponse,
    merged,
)
from .principal import Caller, context, manage_caller, rate_headers, send_caller
from .send import MailtrapJSON, prepare, success_headers

router = APIRouter()


async def _keep_one(ctx: ApiContext, caller: Caller, inbox_id: int, mail: Mail) -> list[str] | errors.SendError:
    prepared = await prepare(ctx, caller, mail)
    if isinstance(prepared, errors.SendError):
        return prepared
    mail, raw = prepared
    assert mail.sender is not None and mail.sender.email is not None
    try:
        kept = await sandbox.keep(ctx.pool, caller.principal, inbox_id, mail_from=mail.sender.email,
                                  recipients=mime.envelope_recipients(mail), raw=raw)
    except sandbox.InboxNotFound:
        return errors.NOT_FOUND
    except Rejected as r:
        return errors.for_outcome(r.outcome)
    return [str(kept)]


@router.post("/api/send/{inbox_id}", response_model=SendResponse, response_class=MailtrapJSON)
async def sandbox_send(inbox_id: int, mail: Mail, request: Request,
                       caller: Caller = Depends(send_caller)) -> MailtrapJSON:
    result = await _keep_one(context(request), caller, inbox_id, mail)
    if isinstance(result, errors.SendError):
        raise errors.ApiError(result, rate_headers(caller.rate))
    return MailtrapJSON(SendResponse(message_ids=result).model_dump(), headers=success_headers(caller, 0))


@router.post("/api/batch/{inbox_id}", response_model=BatchResponse, response_class=MailtrapJSON)
async def sandbox_batch(inbox_id: int, body: BatchBody, request: Request,
                        caller: Caller = Depends(send_caller)) -> MailtrapJSON:
    if not body.requests:
        raise errors.ApiError(errors.send_error(400, "empty field: 'requests'"), rate_headers(caller.rate))
    if len(body.requests) > MAX_BATCH_REQUESTS:
        raise errors.ApiError(errors.send_error(400, f"'requests' must have at most {MAX_BATCH_REQUESTS} items"),
                              rate_headers(caller.rate))
    ctx = context(request)
    if await _inbox(ctx, caller, inbox_id) is None:
        raise errors.ApiError(errors.NOT_FOUND, rate_headers(caller.rate))
    results = await asyncio.gather(*(_keep_one(ctx, caller, inbox_id, merged(body.base, r)) for r in body.requests))
    items = [BatchItem(success=False, errors=list(r.messages)) if isinstance(r, errors.SendError)
             else BatchItem(success=True, message_ids=r) for r in results]
    return MailtrapJSON(BatchResponse(responses=items).model_dump(exclude_none=True),
                        headers=success_headers(caller, 0))


async def _inbox(ctx: ApiContext, caller: Caller, inbox_id: int) -> sandbox.Inbox | None:
    try:
        return await sandbox.get_inbox(ctx.pool, caller.principal.account_id, inbox_id)
    except sandbox.InboxNotFound:
        return None


def _readable(caller: Caller, account_id: int) -> None:
    if account_id != caller.principal.account_id or not permissions.may_read(caller.principal):
        raise errors.ApiError(errors.MANAGE_FORBIDDEN)


@router.get("/api/accounts/{account_id}/inboxes", response_model=list[InboxOut])
async def inboxes(account_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> list[InboxOut]:
    _readable(caller, account_id)
    rows = await sandbox.list_inboxes(context(request).pool, caller.principal.account_id)
    return [InboxOut(id=i.id, name=i.name, emails_count=i.messages, created_at=i.created_at.isoformat()) for i in rows]


@router.get("/api/accounts/{account_id}/inboxes/{inbox_id}/messages", response_model=list[SandboxMessageOut])
async def inbox_messages(account_id: int, inbox_id: int, request: Request,
                         caller: Caller = Depends(manage_caller)) -> list[SandboxMessageOut]:
    _readable(caller, account_id)
    try:
        kept = await sandbox.list_messages(context(request).pool, caller.principal.account_id, inbox_id)
    except sandbox.InboxNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    base = f"/api/accounts/{account_id}/inboxes/{inbox_id}/messages"
    return [SandboxMessageOut(id=str(m.id), inbox_id=inbox_id, subject=m.subject, from_email=m.mail_from,
                              to_email=", ".join(m.recipients), email_size=m.size,
                              sent_at=m.created_at.isoformat(), created_at=m.created_at.isoformat(),
                              download_path=f"{base}/{m.id}/body.eml")
            for m in kept]


@router.get("/api/accounts/{account_id}/inboxes/{inbox_id}/messages/{message_id}/body.eml")
async def message_eml(account_id: int, inbox_id: int, message_id: uuid.UUID, request: Request,
                      caller: Caller = Depends(manage_caller)) -> Response:
    _readable(caller, account_id)
    try:
        eml = await sandbox.message_eml(context(request).pool, caller.principal.account_id, message_id)
    except sandbox.SandboxMessageNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    return Response(eml, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="{message_id}.eml"'})
