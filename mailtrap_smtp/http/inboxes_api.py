"""Sandbox inboxes themselves over the Python SDK's testing API (mailtrap 2.11 `testing_api.inboxes`):
list, get, create, rename, delete, clean (delete every message) and mark all read, each answering the
SDK's `Inbox` shape filled from what we keep (README's API section says what each field holds).

We have no projects: every account has one implicit project whose id is the account's id, so the
SDK's create path `/api/accounts/{account_id}/projects/{project_id}/inboxes` takes only that id (any
other is Not Found). Not served (we have no per-inbox SMTP credentials or email addresses):
`reset_credentials`, `toggle_email_username`, `reset_email_username`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request

from .. import permissions
from ..core import sandbox
from ..core.refusal import Refused
from . import errors
from .models import InboxOut, InboxParams, InboxPermissions
from .principal import Caller, context, manage_caller
from .scope import account_access

router = APIRouter()

INBOXES = "/api/accounts/{account_id}/inboxes"
INBOX = INBOXES + "/{inbox_id}"


def _inbox_out(request: Request, caller: Caller, inbox: sandbox.Inbox) -> InboxOut:
    """The SDK's Inbox: real counts and limits; "", 0, false or [] where we have no such thing."""
    may_manage = permissions.may_manage(caller.principal)
    last = inbox.last_message_at.isoformat() if inbox.last_message_at is not None else None
    return InboxOut(
        id=inbox.id, name=inbox.name, username="", max_size=0, status="active", email_username="",
        email_username_enabled=False, sent_messages_count=0, forwarded_messages_count=0,
        used=inbox.messages > 0, forward_from_email_address="", project_id=caller.principal.account_id,
        domain="", pop3_domain="", email_domain="", api_domain=request.headers.get("host", ""),
        emails_count=inbox.messages, emails_unread_count=inbox.unread, smtp_ports=[], pop3_ports=[],
        max_message_size=caller.principal.max_message_size,
        permissions=InboxPermissions(can_read=permissions.may_read(caller.principal), can_update=may_manage,
                                     can_destroy=may_manage, can_leave=False),
        password=None, last_message_sent_at=last, created_at=inbox.created_at.isoformat())




def _name(body: InboxParams, *, updating: bool) -> str:
    """The requested name; 422 for anything we cannot do (an email username: we have none)."""
    fields: dict[str, Any] = body.inbox or {}
    if updating and fields.get("email_username") is not None:
        raise errors.ApiError(errors.manage_invalid({"email_username": ["is not supported"]}))
    name = fields.get("name")
    if not isinstance(name, str):
        raise errors.ApiError(errors.manage_invalid({"name": ["can't be blank"]}))
    return name


@router.get(INBOXES, response_model=list[InboxOut])
async def inboxes(account_id: int, request: Request, caller: Caller = Depends(manage_caller)) -> list[InboxOut]:
    account_access(caller, account_id)
    rows = await sandbox.list_inboxes(context(request).pool, caller.principal.account_id)
    return [_inbox_out(request, caller, i) for i in rows]


@router.get(INBOX, response_model=InboxOut)
async def show_inbox(account_id: int, inbox_id: int, request: Request,
                     caller: Caller = Depends(manage_caller)) -> InboxOut:
    account_access(caller, account_id)
    try:
        inbox = await sandbox.get_inbox(context(request).pool, caller.principal.account_id, inbox_id)
    except Refused as e:
        raise errors.ApiError(errors.for_refusal(e, "inbox")) from None
    return _inbox_out(request, caller, inbox)


@router.post("/api/accounts/{account_id}/projects/{project_id}/inboxes", response_model=InboxOut)
async def create_inbox(account_id: int, project_id: int, body: InboxParams, request: Request,
                       caller: Caller = Depends(manage_caller)) -> InboxOut:
    """The account's one implicit project has the account's id; there is no other."""
    account_access(caller, account_id, change=True)
    if project_id != caller.principal.account_id:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND)
    try:
        inbox = await sandbox.create_inbox(context(request).pool, caller.principal.account_id,
                                           _name(body, updating=False))
    except Refused as e:
        raise errors.ApiError(errors.for_refusal(e, "name")) from None
    return _inbox_out(request, caller, inbox)


@router.patch(INBOX, response_model=InboxOut)
async def update_inbox(account_id: int, inbox_id: int, body: InboxParams, request: Request,
                       caller: Caller = Depends(manage_caller)) -> InboxOut:
    """Only the name may change (we keep no email username)."""
    account_access(caller, account_id, change=True)
    name = _name(body, updating=True)
    try:
        inbox = await sandbox.rename_inbox(context(request).pool, caller.principal.account_id, inbox_id, name)
    except Refused as e:
        raise errors.ApiError(errors.for_refusal(e, "name")) from None
    return _inbox_out(request, caller, inbox)


async def _changed(request: Request, caller: Caller, account_id: int,
                   change: Callable[[Any, int], Awaitable[sandbox.Inbox]]) -> InboxOut:
    """An admin's change to one of the account's inboxes, answered with the inbox after it."""
    account_access(caller, account_id, change=True)
    try:
        inbox = await change(context(request).pool, caller.principal.account_id)
    except Refused as e:
        raise errors.ApiError(errors.for_refusal(e, "inbox")) from None
    return _inbox_out(request, caller, inbox)


@router.delete(INBOX, response_model=InboxOut)
async def delete_inbox(account_id: int, inbox_id: int, request: Request,
                       caller: Caller = Depends(manage_caller)) -> InboxOut:
    """The inbox as it was, with all its messages gone."""
    return await _changed(request, caller, account_id, lambda pool, acct: sandbox.delete_inbox(pool, acct, inbox_id))


@router.patch(INBOX + "/clean", response_model=InboxOut)
async def clean_inbox(account_id: int, inbox_id: int, request: Request,
                      caller: Caller = Depends(manage_caller)) -> InboxOut:
    return await _changed(request, caller, account_id, lambda pool, acct: sandbox.clean_inbox(pool, acct, inbox_id))


@router.patch(INBOX + "/all_read", response_model=InboxOut)
async def mark_all_read(account_id: int, inbox_id: int, request: Request,
                        caller: Caller = Depends(manage_caller)) -> InboxOut:
    return await _changed(request, caller, account_id,
                          lambda pool, acct: sandbox.mark_all_read(pool, acct, inbox_id))
