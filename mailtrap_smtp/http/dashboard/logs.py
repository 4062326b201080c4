"""Email logs: search and filters (the logs use case's: recipient, sender, subject, status, stream,
time range), newest first, paginated by the use case's cursor (`search_after`, never OFFSET); one
message's page with its timeline (core/timeline.py: each attempt's MX, reply, TLS and delays) and
raw message; its HTML part shown only in a sandboxed frame."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ...core import email_logs, timeline
from ...core.suppressions import Invalid, NotFound
from . import message_view
from .web import PREFIX, Missing, Viewer, render, viewer

router = APIRouter(prefix=PREFIX)
PAGE_SIZE = 25  # rows per page: a phone screen or two
TEXT_FILTERS = ("to", "from", "subject")  # searched with ci_contain, as the logs list allows
CHOICE_FILTERS = {"status": email_logs.STATUSES, "sending_stream": email_logs.STREAMS,
                  "events": email_logs.LOG_EVENT_TYPES}


def _params(request: Request) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The page's form fields → the logs use case's query convention (MAILTRAP_COMPAT §7.1)."""
    q = request.query_params
    shown = {k: q.get(k, "").strip() for k in (*TEXT_FILTERS, *CHOICE_FILTERS, "sent_after", "sent_before")}
    params: dict[str, list[str]] = {}
    for name in TEXT_FILTERS:
        if shown[name]:
            params[f"filters[{name}][operator]"] = ["ci_contain"]
            params[f"filters[{name}][value]"] = [shown[name]]
    for name in CHOICE_FILTERS:
        if shown[name]:
            params[f"filters[{name}][operator]"] = ["include_event" if name == "events" else "equal"]
            params[f"filters[{name}][value]"] = [shown[name]]
    for name in ("sent_after", "sent_before"):
        if shown[name]:
            params[f"filters[{name}]"] = [shown[name]]
    if q.get("search_after"):
        params["search_after"] = [q.get("search_after", "")]
    return params, shown


@router.get("/logs")
async def logs_page(request: Request, who: Viewer = Depends(viewer)) -> Response:
    params, shown = _params(request)
    try:
        req = email_logs.parse_query(params)
        async with who.ctx.pool.acquire() as conn:
            page = await email_logs.list_logs(conn, who.account_id, req, page_size=PAGE_SIZE)
    except Invalid as e:
        return render(request, who, "logs.html", 422, title="Email logs", found=None, shown=shown,
                      choices=CHOICE_FILTERS, error=str(e), next_query=None)
    next_query = None
    if page["next_page_cursor"]:
        keep = {k: v for k, v in shown.items() if v}
        next_query = {**keep, "search_after": page["next_page_cursor"]}
    return render(request, who, "logs.html", title="Email logs", found=page, shown=shown, choices=CHOICE_FILTERS,
                  error=None, next_query=next_query)


def _entry(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Missing from None


async def _raw(who: Viewer, entry: uuid.UUID) -> bytes | None:
    async with who.ctx.pool.acquire() as conn:
        try:
            return await email_logs.raw_message(conn, who.account_id, entry)
        except NotFound:
            return None


@router.get("/logs/{entry_id}")
async def message_page(entry_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    entry = _entry(entry_id)
    async with who.ctx.pool.acquire() as conn:
        try:
            msg = await email_logs.show(conn, who.account_id, entry, extras=True)
            steps = await timeline.timeline(conn, who.account_id, entry)
        except NotFound:
            raise Missing from None
    raw = await _raw(who, entry)
    return render(request, who, "message.html", title=str(msg["subject"] or "(no subject)"), msg=msg, steps=steps,
                  raw=None if raw is None else message_view.as_text(raw),
                  has_html=raw is not None and message_view.html_part(raw) is not None)


@router.get("/logs/{entry_id}/raw")
async def raw_page(entry_id: str, who: Viewer = Depends(viewer)) -> Response:
    entry = _entry(entry_id)
    raw = await _raw(who, entry)
    if raw is None:
        raise Missing
    return message_view.eml_answer(raw, str(entry))


@router.get("/logs/{entry_id}/html")
async def html_part(entry_id: str, who: Viewer = Depends(viewer)) -> Response:
    raw = await _raw(who, _entry(entry_id))
    html = None if raw is None else message_view.html_part(raw)
    if html is None:
        raise Missing
    return message_view.html_answer(html)
