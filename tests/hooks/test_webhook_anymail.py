"""django-anymail's Mailtrap tracking webhook view (a consumer no one here wrote) receives what we
POST and turns each event into the right AnymailTrackingEvent."""

from __future__ import annotations

from typing import Any

import asyncpg
import django
import pytest
from django.conf import settings

from mailtrap_smtp.config import WebhooksConfig
from mailtrap_smtp.core import webhooks
from mailtrap_smtp.events import Event
from mailtrap_smtp.hooks.delivery import WebhookDelivery, make_client
from mailtrap_smtp.outbox import OutboxRunner
from mailtrap_smtp.store import events as events_store
from mailtrap_smtp.store import queue
from tests.webhook_receiver import Received, Receiver
from tests.webhook_world import World

if not settings.configured:
    # One Django configuration per test process: the same as tests/http/test_http_sdk.py's (its anymail
    # sending backend), whichever module configures it first.
    settings.configure(EMAIL_BACKEND="anymail.backends.mailtrap.EmailBackend", ANYMAIL={}, USE_TZ=True)
    django.setup()

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import AnymailTrackingEvent, EventType, RejectReason, tracking
from anymail.webhooks.mailtrap import MailtrapTrackingWebhookView
from django.test import RequestFactory


def _view_events(req: Received, secret: str, got: list[AnymailTrackingEvent]) -> int:
    """POST `req` as received to anymail's view; its status (the events it signals go to `got`)."""

    def handler(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kw: Any) -> None:
        got.append(event)

    tracking.connect(handler, weak=False)
    try:
        request = RequestFactory().post("/anymail/mailtrap/tracking/", data=req.body,
                                        content_type=req.headers["content-type"],
                                        HTTP_MAILTRAP_SIGNATURE=req.headers["mailtrap-signature"])
        response = MailtrapTrackingWebhookView.as_view(tracking_secret=secret)(request)
    finally:
        tracking.disconnect(handler)
    return int(response.status_code)


async def test_anymail_turns_our_events_into_the_right_tracking_events(pool: asyncpg.Pool[Any]) -> None:
    receiver = Receiver()
    await receiver.start()
    cfg = WebhooksConfig(flush_seconds=0.0, allow_private_targets=True, timeout_seconds=5.0)
    client = make_client(cfg)
    try:
        world = await World.create(pool)
        secret = (await webhooks.create(pool, world.account_id, webhooks.WebhookSpec(url=receiver.url()),
                                        allow_private=True)).webhook["signing_secret"]
        delivered = (await world.send(1, category="welcome", custom_variables={"user_id": "42"}))[0]
        await world.finish([delivered])
        deferred = (await world.send(1))[0]
        await world.defer(deferred, "451 4.7.1 Greylisted, try again later", {"category": "greylisted"})
        bounced = (await world.send(1))[0]
        await world.finish([bounced], queue.BOUNCED, "550 5.1.1 No such user", {"category": "bad_recipient"})
        suppressed = (await world.send(1))[0]
        mid = await pool.fetchval("SELECT message_id FROM recipients WHERE id = $1", suppressed)
        await events_store.record(pool, Event.SUPPRESSED, account_id=world.account_id, domain_id=world.domain_id,
                                  message_id=mid, recipient_id=suppressed,
                                  details={"reason": "Recipient in suppression list. Reason: hard bounce"})
        complained = (await world.send(1))[0]
        await world.finish([complained])
        cmid = await pool.fetchval("SELECT message_id FROM recipients WHERE id = $1", complained)
        await events_store.record(pool, Event.SPAM, account_id=world.account_id, domain_id=world.domain_id,
                                  message_id=cmid, recipient_id=complained,
                                  details={"source": "inbound", "feedback_type": "abuse"})
        runner = OutboxRunner(pool, [WebhookDelivery(cfg, pool, client)])
        await runner.run_once()
    finally:
        await client.aclose()
        await receiver.stop()
    assert len(receiver.requests) == 1
    got: list[AnymailTrackingEvent] = []
    assert _view_events(receiver.requests[0], secret, got) == 200
    mids = {r: str(await pool.fetchval("SELECT public_id FROM recipients WHERE id = $1", r))
            for r in (delivered, deferred, bounced, suppressed, complained)}
    assert [(e.event_type, e.message_id, e.recipient, e.reject_reason, e.mta_response) for e in got] == [
        (EventType.DELIVERED, mids[delivered], "r0@dest.test", None, None),
        (EventType.DEFERRED, mids[deferred], "r0@dest.test", RejectReason.OTHER, "4.7.1 Greylisted, try again later"),
        (EventType.BOUNCED, mids[bounced], "r0@dest.test", RejectReason.BOUNCED, "5.1.1 No such user"),
        (EventType.REJECTED, mids[suppressed], "r0@dest.test", RejectReason.BLOCKED, None),
        (EventType.DELIVERED, mids[complained], "r0@dest.test", None, None),
        (EventType.COMPLAINED, mids[complained], "r0@dest.test", RejectReason.SPAM, None),
    ]
    assert (got[0].tags, got[0].metadata) == (["welcome"], {"user_id": "42"})
    assert [e.event_id for e in got] == [e["event_id"] for e in receiver.requests[0].events()]
    assert all(e.timestamp is not None for e in got)


@pytest.mark.parametrize("tamper", ["body", "secret"])
async def test_anymail_refuses_a_payload_whose_signature_does_not_match(pool: asyncpg.Pool[Any], tamper: str) -> None:
    receiver = Receiver()
    await receiver.start()
    cfg = WebhooksConfig(flush_seconds=0.0, allow_private_targets=True, timeout_seconds=5.0)
    client = make_client(cfg)
    try:
        world = await World.create(pool)
        secret = (await webhooks.create(pool, world.account_id, webhooks.WebhookSpec(url=receiver.url()),
                                        allow_private=True)).webhook["signing_secret"]
        await world.delivered(1)
        await OutboxRunner(pool, [WebhookDelivery(cfg, pool, client)]).run_once()
    finally:
        await client.aclose()
        await receiver.stop()
    req = receiver.requests[0]
    if tamper == "body":
        req = Received(req.method, req.path, req.headers, req.body.replace(b"delivery", b"bounce"))
    # Django answers 400 to this exception (a SuspiciousOperation); no tracking signal is sent.
    got: list[AnymailTrackingEvent] = []
    with pytest.raises(AnymailWebhookValidationFailure, match="incorrect signature"):
        _view_events(req, secret if tamper == "body" else "0" * 32, got)
    assert got == []
