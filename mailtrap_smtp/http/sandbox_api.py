"""Sandbox inboxes over the API (Mailtrap's testing host, MAILTRAP_COMPAT.md §1, §9 item 16):
`POST /api/send/{inbox_id}` and `/api/batch/{inbox_id}` keep the message for an inbox of the
account (never delivered, queued or charged) and answer one id per message; and
under `/api/accounts/{account_id}/inboxes/{inbox_id}/messages` the paths of the Python SDK's testing
API: the messages (up to 30 a page, newest first) in its `EmailMessage` shape, addressed by their
number, one message, marking it read, deleting it, its `.eml`, raw source, text and HTML bodies and
headers. Not served (we make no such analysis, and forward nothing): `spam_report`, `analyze`,
`forward`. The inboxes themselves (list, create, rename, clean, …): `inboxes_api.py`.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Query, Request, Response

from .. import headers
from ..core import sandbox
from ..outcomes import Rejected
from . import errors, mime
from .context import ApiContext
from .models import (
    MAX_BATCH_REQUESTS,
    BatchBody,
    BatchItem,
    BatchResponse,
    Mail,
    MessageUpdate,
    SandboxMessageOut,
    SendResponse,
    SmtpInformationOut,
    merged,
)
from .principal import Caller, context, manage_caller, rate_headers, send_caller
from .scope import account_access
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



MESSAGES = "/api/accounts/{account_id}/inboxes/{inbox_id}/messages"


def _message_out(base: str, m: sandbox.SandboxMessage) -> SandboxMessageOut:
    from_email, from_name = sandbox.first_address(m.header_from)
    to_email, to_name = sandbox.addresses(m.header_to)
    path = f"{base}/{m.number}"
    updated = m.updated_at or m.created_at
    return SandboxMessageOut(
        id=m.number, inbox_id=m.inbox_id, subject=sandbox.decoded(m.subject), sent_at=m.created_at.isoformat(),
        from_email=from_email or m.mail_from, from_name=from_name,
        to_email=to_email or ", ".join(m.recipients), to_name=to_name, email_size=m.size, is_read=m.is_read,
        created_at=m.created_at.isoformat(), updated_at=updated.isoformat(), html_body_size=m.html_size,
        text_body_size=m.text_size, human_size=sandbox.human_size(m.size), html_path=f"{path}/body.html",
        txt_path=f"{path}/body.txt", raw_path=f"{path}/body.raw", download_path=f"{path}/body.eml",
        html_source_path=f"{path}/body.htmlsource", blacklists_report_info=False,
        smtp_information=SmtpInformationOut(ok=True), message_id=str(m.id))


def _base(account_id: int, inbox_id: int) -> str:
    return MESSAGES.format(account_id=account_id, inbox_id=inbox_id)



async def _numbered(request: Request, caller: Caller, account_id: int, inbox_id: int,
                    number: int) -> tuple[sandbox.SandboxMessage, bytes]:
    try:
        return await sandbox.numbered(context(request).pool, caller.principal.account_id, inbox_id, number)
    except (sandbox.InboxNotFound, sandbox.SandboxMessageNotFound):
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None


@router.get(MESSAGES, response_model=list[SandboxMessageOut])
async def inbox_messages(account_id: int, inbox_id: int, request: Request, search: str | None = None,
                         last_id: int | None = Query(None, ge=1), page: int | None = Query(None, ge=1),
                         caller: Caller = Depends(manage_caller)) -> list[SandboxMessageOut]:
    """Up to 30 messages, newest first (Mailtrap's testing API: `last_id` wins over `page`)."""
    account_access(caller, account_id)
    try:
        kept = await sandbox.messages_page(context(request).pool, caller.principal.account_id, inbox_id,
                                           search=search, last_id=last_id, page=page or 1)
    except sandbox.InboxNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    return [_message_out(_base(account_id, inbox_id), m) for m in kept]


@router.get(MESSAGES + "/{number}", response_model=SandboxMessageOut)
async def show_message(account_id: int, inbox_id: int, number: int, request: Request,
                       caller: Caller = Depends(manage_caller)) -> SandboxMessageOut:
    account_access(caller, account_id)
    message, _ = await _numbered(request, caller, account_id, inbox_id, number)
    return _message_out(_base(account_id, inbox_id), message)


_TRUE, _FALSE = (True, "true"), (False, "false")


@router.patch(MESSAGES + "/{number}", response_model=SandboxMessageOut)
async def update_message(account_id: int, inbox_id: int, number: int, body: MessageUpdate, request: Request,
                         caller: Caller = Depends(manage_caller)) -> SandboxMessageOut:
    """Only `is_read` may change (as at Mailtrap)."""
    account_access(caller, account_id, change=True)
    value = (body.message or {}).get("is_read")
    if value not in _TRUE + _FALSE:
        raise errors.ApiError(errors.manage_invalid({"is_read": ["is invalid"]}))
    try:
        changed = await sandbox.mark_read(context(request).pool, caller.principal.account_id, inbox_id, number,
                                          value in _TRUE)
    except (sandbox.InboxNotFound, sandbox.SandboxMessageNotFound):
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    return _message_out(_base(account_id, inbox_id), changed)


@router.delete(MESSAGES + "/{number}", response_model=SandboxMessageOut)
async def delete_message(account_id: int, inbox_id: int, number: int, request: Request,
                         caller: Caller = Depends(manage_caller)) -> SandboxMessageOut:
    account_access(caller, account_id, change=True)
    try:
        gone = await sandbox.delete_message(context(request).pool, caller.principal.account_id, inbox_id, number)
    except (sandbox.InboxNotFound, sandbox.SandboxMessageNotFound):
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    return _message_out(_base(account_id, inbox_id), gone)


@router.get(MESSAGES + "/{number}/body.eml")
async def message_eml(account_id: int, inbox_id: int, number: int, request: Request,
                      caller: Caller = Depends(manage_caller)) -> Response:
    account_access(caller, account_id)
    message, raw = await _numbered(request, caller, account_id, inbox_id, number)
    return Response(raw, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="{message.id}.eml"'})


@router.get(MESSAGES + "/{number}/body.raw")
async def message_raw(account_id: int, inbox_id: int, number: int, request: Request,
                      caller: Caller = Depends(manage_caller)) -> Response:
    account_access(caller, account_id)
    _, raw = await _numbered(request, caller, account_id, inbox_id, number)
    return Response(raw, media_type="text/plain")


async def _body(request: Request, caller: Caller, account_id: int, inbox_id: int, number: int,
                html: bool) -> Response:
    account_access(caller, account_id)
    _, raw = await _numbered(request, caller, account_id, inbox_id, number)
    text, markup = sandbox.bodies(raw)
    found = markup if html else text
    if found is None:  # the message has no such body
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)
    return Response(found, media_type="text/html; charset=utf-8" if html else "text/plain; charset=utf-8")


@router.get(MESSAGES + "/{number}/body.txt")
async def message_text(account_id: int, inbox_id: int, number: int, request: Request,
                       caller: Caller = Depends(manage_caller)) -> Response:
    return await _body(request, caller, account_id, inbox_id, number, html=False)


@router.get(MESSAGES + "/{number}/body.html")
async def message_html(account_id: int, inbox_id: int, number: int, request: Request,
                       caller: Caller = Depends(manage_caller)) -> Response:
    """The HTML body as it was sent: Mailtrap formats it for display here, we do not."""
    return await _body(request, caller, account_id, inbox_id, number, html=True)


@router.get(MESSAGES + "/{number}/body.htmlsource")
async def message_html_source(account_id: int, inbox_id: int, number: int, request: Request,
                              caller: Caller = Depends(manage_caller)) -> Response:
    return await _body(request, caller, account_id, inbox_id, number, html=True)


@router.get(MESSAGES + "/{number}/mail_headers")
async def message_headers(account_id: int, inbox_id: int, number: int, request: Request,
                          caller: Caller = Depends(manage_caller)) -> dict[str, dict[str, str]]:
    """`{"headers": {name: value}}`: names in lower case, values decoded, repeated fields ", "-joined."""
    account_access(caller, account_id)
    _, raw = await _numbered(request, caller, account_id, inbox_id, number)
    fields: dict[str, str] = {}
    for name, whole in headers.parse_header(raw).fields:
        value = sandbox.decoded(" ".join(headers.field_value(whole).split()))
        key = name.decode("ascii", "replace")
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    return {"headers": fields}
