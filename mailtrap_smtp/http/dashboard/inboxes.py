"""Sandbox inboxes: the account's inboxes, create one, an inbox's messages (newest first), and one
message: its header fields, text, HTML in a sandboxed frame with no network, and raw (`.eml`).
Rules: `core.sandbox`."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ...core import sandbox
from ...core.refusal import Refused
from . import message_view
from .web import PREFIX, Missing, Viewer, back, parse_int, posted, render, text, viewer

router = APIRouter(prefix=PREFIX)


async def _list(request: Request, who: Viewer, error: str | None = None, status: int = 200) -> Response:
    async with who.ctx.pool.acquire() as conn:
        found = await sandbox.list_inboxes(conn, who.account_id)
    return render(request, who, "inboxes.html", status, title="Sandbox inboxes", inboxes=found, error=error)


@router.get("/inboxes")
async def inboxes_page(request: Request, who: Viewer = Depends(viewer)) -> Response:
    return await _list(request, who)


@router.post("/inboxes")
async def create(request: Request, who: Viewer = Depends(viewer)) -> Response:
    form = await posted(request, who)
    try:
        async with who.ctx.pool.acquire() as conn:
            made = await sandbox.create_inbox(conn, who.account_id, text(form, "name"))
    except Refused as e:
        return await _list(request, who, str(e), 422)
    return back(f"/inboxes/{made.id}", f"Inbox {made.name!r} created: send to it with POST /api/send/{made.id}.")


@router.get("/inboxes/{inbox_id}")
async def inbox_page(inbox_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    try:
        async with who.ctx.pool.acquire() as conn:
            inbox = await sandbox.get_inbox(conn, who.account_id, parse_int(inbox_id))
            messages = await sandbox.list_messages(conn, who.account_id, inbox.id)
    except sandbox.InboxNotFound:
        raise Missing from None
    return render(request, who, "inbox.html", title=inbox.name, inbox=inbox, messages=messages)


async def _eml(who: Viewer, inbox_id: str, message_id: str) -> tuple[int, uuid.UUID, bytes]:
    """The message, if the inbox and the message are the account's (else `Missing`)."""
    try:
        key = uuid.UUID(message_id)
        async with who.ctx.pool.acquire() as conn:
            inbox = await sandbox.get_inbox(conn, who.account_id, parse_int(inbox_id))
            return inbox.id, key, await sandbox.message_eml(conn, who.account_id, key)
    except (ValueError, sandbox.InboxNotFound, sandbox.SandboxMessageNotFound):
        raise Missing from None


@router.get("/inboxes/{inbox_id}/messages/{message_id}")
async def message_page(inbox_id: str, message_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    box, key, raw = await _eml(who, inbox_id, message_id)
    fields = message_view.header_fields(raw)
    subject = next((v for k, v in fields if k.lower() == "subject"), "(no subject)")
    return render(request, who, "inbox_message.html", title=subject, inbox_id=box, message_id=key, fields=fields,
                  text_body=message_view.text_part(raw), has_html=message_view.html_part(raw) is not None,
                  raw=message_view.as_text(raw))


@router.get("/inboxes/{inbox_id}/messages/{message_id}/html")
async def message_html(inbox_id: str, message_id: str, who: Viewer = Depends(viewer)) -> Response:
    html = message_view.html_part((await _eml(who, inbox_id, message_id))[2])
    if html is None:
        raise Missing
    return message_view.html_answer(html)


@router.get("/inboxes/{inbox_id}/messages/{message_id}/raw")
async def message_raw(inbox_id: str, message_id: str, who: Viewer = Depends(viewer)) -> Response:
    _, key, raw = await _eml(who, inbox_id, message_id)
    return message_view.eml_answer(raw, str(key))
