"""Webhooks: the account's webhooks, create one (its signing secret is shown on the answer page
only), one webhook's delivery log and retry state, send a test event, pause and resume. Rules: `core.webhooks`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ... import domainops
from ...core import webhook_test, webhooks
from .web import PREFIX, Missing, Viewer, back, parse_int, posted, render, text, viewer

router = APIRouter(prefix=PREFIX)


async def _page(request: Request, who: Viewer, *, created: dict[str, object] | None = None,
                error: str | None = None, status: int = 200) -> Response:
    async with who.ctx.pool.acquire() as conn:
        found = await webhooks.list_webhooks(conn, who.account_id)
    domains = await domainops.list_domains(who.ctx.pool, who.principal.account_name)
    return render(request, who, "webhooks.html", status, title="Webhooks", webhooks=found, domains=domains,
                  event_types=webhooks.EVENT_TYPES, formats=webhooks.PAYLOAD_FORMATS, streams=webhooks.STREAMS,
                  created=created, error=error)


@router.get("/webhooks")
async def webhooks_page(request: Request, who: Viewer = Depends(viewer)) -> Response:
    return await _page(request, who)


@router.post("/webhooks")
async def create(request: Request, who: Viewer = Depends(viewer)) -> Response:
    form = await posted(request, who)
    types = [t for t in form.getlist("event_types") if isinstance(t, str)]
    domain = text(form, "domain_id")
    spec = webhooks.WebhookSpec(
        url=text(form, "url").strip(), payload_format=text(form, "payload_format", "json"),
        sending_stream=text(form, "sending_stream") or None, event_types=types or None,
        domain_id=int(domain) if domain.isdigit() else None)
    try:
        async with who.ctx.pool.acquire() as conn:
            made = await webhooks.create(conn, who.account_id, spec,
                                         allow_private=who.ctx.cfg.webhooks.allow_private_targets)
    except webhooks.InvalidWebhook as e:
        return await _page(request, who, error=str(e), status=422)
    return await _page(request, who, created=made.webhook)


@router.get("/webhooks/{webhook_id}")
async def webhook_page(webhook_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    wid = parse_int(webhook_id)
    try:
        async with who.ctx.pool.acquire() as conn:
            hook = await webhooks.get(conn, who.account_id, wid)
            log = await webhooks.delivery_log(conn, who.account_id, wid)
    except webhooks.WebhookNotFound:
        raise Missing from None
    return render(request, who, "webhook.html", title=f"Webhook {wid}", hook=hook, log=log)


@router.post("/webhooks/{webhook_id}/active")
async def set_active(webhook_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    wid = parse_int(webhook_id)
    form = await posted(request, who)
    active = text(form, "active") == "true"
    try:
        async with who.ctx.pool.acquire() as conn:
            await webhooks.update(conn, who.account_id, wid, webhooks.WebhookChanges(active=active),
                                  allow_private=who.ctx.cfg.webhooks.allow_private_targets)
    except webhooks.WebhookNotFound:
        raise Missing from None
    return back(f"/webhooks/{wid}", "Resumed." if active else "Paused.")


@router.post("/webhooks/{webhook_id}/test")
async def send_test(webhook_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    wid = parse_int(webhook_id)
    await posted(request, who)
    try:
        attempt = await webhook_test.send_test(who.ctx.pool, who.ctx.cfg.webhooks, who.account_id, wid)
    except webhooks.WebhookNotFound:
        raise Missing from None
    outcome = "acknowledged (HTTP 200)" if attempt.acknowledged else f"failed: {attempt.error}"
    return back(f"/webhooks/{wid}", f"Test event sent: {outcome}.", failed=not attempt.acknowledged)
