"""Sandbox inboxes over the API (Mailtrap's testing host, MAILTRAP_COMPAT.md §1, §9 item 16):
`POST /api/send/{inbox_id}` and `/api/batch/{inbox_id}` keep the message for an inbox of the
account (never delivered, queued or charged) and answer one id per message; the inbox list, its
messages and each message as `.eml` under `/api/accounts/{account_id}/inboxes…`.
"""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, Depends, Request, Response

from .. import permissions, sandbox
from ..core.refusal import Refused
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
    p = caller.principal
    try:
        ids = await sandbox.keep(ctx.pool, account_id=p.account_id, max_message_size=p.max_message_size,
                                 inbox_id=inbox_id, hostname=ctx.cfg.server.hostname,
                                 messages=[sandbox.Kept(mail.sender.email, mime.envelope_recipients(mail), raw)])
    except sandbox.InboxNotFound:
        return errors.NOT_FOUND
    except Rejected as r:
        return errors.for_outcome(r.outcome)
    return [str(i) for i in ids]


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


async def _inbox(ctx: ApiContext, caller: Caller, inbox_id: int) -> object | None:
    try:
        return await sandbox.inbox_of(ctx.pool, caller.principal.account_id, inbox_id)
    except sandbox.InboxNotFound:
        return None


def _readable(caller: Caller, account_id: int) -> None:
    if account_id != caller.principal.account_id or not permissions.may_read(caller.principal):
        raise errors.ApiError(errors.MANAGE_FORBIDDEN)


@router.get("/api/accounts/{account_id}/inboxes", response_model=list[InboxOut])
async def inboxes(account_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> list[InboxOut]:
    _readable(caller, account_id)
    rows = await sandbox.list_inboxes(context(request).pool, caller.principal.account_name)
    return [InboxOut(id=r["id"], name=r["name"], emails_count=r["messages"], created_at=r["created_at"].isoformat())
            for r in rows]


@router.get("/api/accounts/{account_id}/inboxes/{inbox_id}/messages", response_model=list[SandboxMessageOut])
async def inbox_messages(account_id: int, inbox_id: int, request: Request,
                         caller: Caller = Depends(manage_caller)) -> list[SandboxMessageOut]:
    _readable(caller, account_id)
    ctx = context(request)
    if await _inbox(ctx, caller, inbox_id) is None:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)
    base = f"/api/accounts/{account_id}/inboxes/{inbox_id}/messages"
    return [SandboxMessageOut(id=str(r["id"]), inbox_id=inbox_id, subject=r["subject"], from_email=r["mail_from"],
                              to_email=", ".join(r["recipients"]), email_size=r["size"],
                              sent_at=r["created_at"].isoformat(), created_at=r["created_at"].isoformat(),
                              download_path=f"{base}/{r['id']}/body.eml")
            for r in await sandbox.messages_of(ctx.pool, inbox_id)]


@router.get("/api/accounts/{account_id}/inboxes/{inbox_id}/messages/{message_id}/body.eml")
async def message_eml(account_id: int, inbox_id: int, message_id: uuid.UUID, request: Request,
                      caller: Caller = Depends(manage_caller)) -> Response:
    _readable(caller, account_id)
    try:
        row = await sandbox.message(context(request).pool, message_id, caller.principal.account_id)
    except Refused:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    if int(row["inbox_id"]) != inbox_id:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)
    return Response(bytes(row["raw"]), media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="{message_id}.eml"'})
