"""Webhook delivery to a real HTTP server on loopback: batches, order, signature, filters, retries,
deactivation, replay, isolation between webhooks, credentials in the URL, connect-time checks."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email
import email.policy
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import dkim as dkimpy
import httpx
import mailtrap
import pytest

from mailtrap_smtp import domainops
from mailtrap_smtp.config import WebhooksConfig
from mailtrap_smtp.consumers.webhook_alerts import WebhookAlerts
from mailtrap_smtp.core import webhooks
from mailtrap_smtp.hooks.delivery import WebhookDelivery, make_client
from mailtrap_smtp.outbox import OutboxRunner
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.store import accounts, queue
from tests.webhook_receiver import Receiver, closed_port
from tests.webhook_world import World


@dataclass
class Clock:
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Rig:
    """The webhook consumer on an outbox runner, with an injected clock, for one test."""

    world: World
    receiver: Receiver
    clock: Clock
    cfg: WebhooksConfig
    client: httpx.AsyncClient

    async def run(self) -> int:
        runner = OutboxRunner(self.world.pool, [WebhookDelivery(self.cfg, self.world.pool, self.client)],
                              concurrency=8, lease_seconds=60, clock=self.clock)
        return await runner.run_once()

    async def webhook(self, **spec: Any) -> dict[str, Any]:
        spec.setdefault("url", self.receiver.url())
        created = await webhooks.create(self.world.pool, self.world.account_id, webhooks.WebhookSpec(**spec),
                                        allow_private=True)
        return created.webhook


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def _cfg(**kw: Any) -> WebhooksConfig:
    return WebhooksConfig(**({"flush_seconds": 0.0, "timeout_seconds": 1.0, "allow_private_targets": True} | kw))


@pytest.fixture
async def rig(pool: asyncpg.Pool[Any], receiver: Receiver) -> AsyncIterator[Rig]:
    cfg = _cfg()
    client = make_client(cfg)
    yield Rig(await World.create(pool), receiver, Clock(), cfg, client)
    await client.aclose()


async def test_delivery_is_a_signed_json_batch_in_order(rig: Rig) -> None:
    w = await rig.webhook()
    await rig.world.delivered(3, category="welcome", custom_variables={"user_id": 7})
    await rig.run()
    assert len(rig.receiver.requests) == 1
    req = rig.receiver.requests[0]
    assert (req.method, req.path, req.headers["content-type"]) == ("POST", "/hook", "application/json")
    assert mailtrap.verify_signature(req.body, req.headers["mailtrap-signature"], w["signing_secret"]) is True
    assert not mailtrap.verify_signature(req.body + b" ", req.headers["mailtrap-signature"], w["signing_secret"])
    events = req.events()
    assert [e["event_id"] for e in events] == await rig.world.event_ids()
    # message_id is what the send API returned for that recipient (its public id), as in email logs
    public = {str(r["event_id"]): str(r["public_id"]) for r in await rig.world.pool.fetch(
        "SELECT e.event_id, r.public_id FROM events e JOIN recipients r ON r.id = e.recipient_id")}
    assert [e["message_id"] for e in events] == [public[e["event_id"]] for e in events]
    for e in events:
        assert set(e) == {"event", "message_id", "event_id", "email", "timestamp", "sending_stream",
                          "sending_domain_name", "category", "custom_variables"}
        assert (e["event"], e["email"], e["sending_stream"], e["sending_domain_name"]) == \
               ("delivery", "r0@dest.test", "transactional", "acme.test")
        assert (e["category"], e["custom_variables"]) == ("welcome", {"user_id": 7})
        assert isinstance(e["timestamp"], int)
    log = await webhooks.delivery_log(rig.world.pool, None, w["id"])
    assert [(a["status"], a["events"], a["acknowledged"], a["error"]) for a in log["attempts"]] == \
           [(200, 3, True, None)]
    assert log["failures"] == 0
    await rig.run()
    assert len(rig.receiver.requests) == 1  # acknowledged: never posted again


async def test_jsonlines_is_one_object_per_line_signed_over_the_raw_body(rig: Rig) -> None:
    w = await rig.webhook(payload_format="jsonlines")
    await rig.world.delivered(2)
    await rig.run()
    req = rig.receiver.requests[0]
    assert req.headers["content-type"] == "application/jsonl"
    assert req.body.count(b"\n") == 2 and not req.body.startswith(b"{\"events\"")
    assert mailtrap.verify_signature(req.body, req.headers["mailtrap-signature"], w["signing_secret"])
    assert [e["event_id"] for e in req.events()] == await rig.world.event_ids()


async def test_batches_hold_at_most_500_events_and_keep_the_order(rig: Rig) -> None:
    await rig.webhook()
    rids = await rig.world.send(1200)
    for i in range(0, 1200, 300):  # four delivery transactions
        await rig.world.finish(rids[i:i + 300])
    await rig.run()
    assert [len(r.events()) for r in rig.receiver.requests] == [500, 500, 200]
    assert [e["event_id"] for e in rig.receiver.events()] == await rig.world.event_ids()
    assert [e["email"] for e in rig.receiver.events()] == [f"r{i}@dest.test" for i in range(1200)]


async def test_soft_bounces_and_bounces_carry_the_response_and_category(rig: Rig) -> None:
    await rig.webhook(event_types=["soft_bounce", "bounce"])
    a, b, c = (await rig.world.send(1))[0], (await rig.world.send(1))[0], (await rig.world.send(1))[0]
    await rig.world.defer(a, "452 4.2.2 Mailbox full", {"category": "mailbox_full"})
    await rig.world.defer(b, "connection refused", {"category": "connection_failure"})  # no remote reply
    await rig.world.finish([a], queue.BOUNCED, "550 5.1.1 No such user", {"category": "bad_recipient"})
    await rig.world.finish([c])  # a delivery: not subscribed
    await rig.run()
    events = rig.receiver.events()
    assert [(e["event"], e.get("response"), e.get("response_code"), e.get("bounce_category")) for e in events] == [
        ("soft bounce", "4.2.2 Mailbox full", 452, "overquota"),
        ("bounce", "5.1.1 No such user", 550, "badrecipient"),
    ]


async def test_filters_by_stream_domain_and_account(rig: Rig) -> None:
    other_domain = await rig.world.add_domain("second.test")
    await rig.webhook(sending_stream="bulk", domain_id=other_domain)
    await rig.world.delivered(1, stream="bulk")                            # wrong domain
    await rig.world.delivered(1, stream="transactional", domain_id=other_domain)  # wrong stream
    wanted = await rig.world.delivered(2, stream="bulk", domain_id=other_domain)
    other = await World.create(rig.world.pool, "other")
    await other.delivered(2)                                                # another account
    await rig.run()
    events = rig.receiver.events()
    assert [e["email"] for e in events] == ["r0@dest.test"] * len(wanted)
    assert {(e["sending_stream"], e["sending_domain_name"]) for e in events} == {("bulk", "second.test")}


async def test_a_batch_that_is_not_full_waits_for_the_flush_time(rig: Rig) -> None:
    rig.cfg = _cfg(flush_seconds=30.0)
    await rig.webhook()
    await rig.world.delivered(3)
    await rig.run()
    assert rig.receiver.requests == []
    rig.clock.advance(31)
    await rig.run()
    assert [len(r.events()) for r in rig.receiver.requests] == [3]


async def test_a_full_batch_goes_at_once_and_the_rest_waits(rig: Rig) -> None:
    rig.cfg = _cfg(flush_seconds=30.0, batch_size=5)
    await rig.webhook()
    await rig.world.delivered(7)
    await rig.run()
    assert [len(r.events()) for r in rig.receiver.requests] == [5]
    rig.clock.advance(31)
    await rig.run()
    assert [len(r.events()) for r in rig.receiver.requests] == [5, 2]
    assert [e["event_id"] for e in rig.receiver.events()] == await rig.world.event_ids()


@pytest.mark.parametrize(("status", "error"), [
    (500, "HTTP 500"), (404, "HTTP 404"), (201, "HTTP 201"), (204, "HTTP 204"), (301, "HTTP 301"),
    (429, "HTTP 429"), ("hang", "no response within 1 s"),
])
async def test_anything_but_200_is_retried_after_5_minutes_with_the_same_events(
        rig: Rig, status: int | str, error: str) -> None:
    rig.receiver.statuses = [status, 200]
    w = await rig.webhook()
    await rig.world.delivered(2)
    await rig.run()
    assert len(rig.receiver.requests) == 1
    log = await webhooks.delivery_log(rig.world.pool, None, w["id"])
    assert [(a["status"], a["error"], a["acknowledged"]) for a in log["attempts"]] == \
           [(status if isinstance(status, int) else None, error, False)]
    assert (log["failures"], log["last_error"]) == (1, error)
    assert log["next_attempt_at"] == rig.clock.now + dt.timedelta(seconds=300)
    rig.clock.advance(299)
    await rig.run()
    assert len(rig.receiver.requests) == 1
    rig.clock.advance(1)
    await rig.run()
    assert len(rig.receiver.requests) == 2
    first, second = (r.events() for r in rig.receiver.requests)
    assert [e["event_id"] for e in second] == [e["event_id"] for e in first] == await rig.world.event_ids()
    assert (await webhooks.delivery_log(rig.world.pool, None, w["id"]))["failures"] == 0


async def test_a_refused_connection_is_a_failed_attempt(rig: Rig) -> None:
    w = await rig.webhook(url=f"http://127.0.0.1:{closed_port()}/hook")
    await rig.world.delivered(1)
    await rig.run()
    log = await webhooks.delivery_log(rig.world.pool, None, w["id"])
    assert [(a["status"], a["acknowledged"]) for a in log["attempts"]] == [(None, False)]
    assert log["attempts"][0]["error"].startswith("ConnectError")


async def test_deactivated_after_40_retries_and_resumed_only_by_an_update(rig: Rig, caplog: Any) -> None:
    assert rig.cfg.retry_limit == 40  # the default, Mailtrap's
    rig.receiver.statuses = [500]
    w = await rig.webhook()
    await rig.world.delivered(2)
    caplog.set_level(logging.INFO, "mailtrap_smtp.hooks.delivery")
    for _ in range(41):  # the first attempt and 40 retries, 5 minutes apart
        await rig.run()
        rig.clock.advance(300)
    assert len(rig.receiver.requests) == 41
    got = await webhooks.get(rig.world.pool, None, w["id"])
    assert got["active"] is False
    events = await rig.world.pool.fetch("SELECT details FROM events WHERE type = 'webhook_deactivated'")
    assert len(events) == 1 and f'"webhook_id": {w["id"]}' in events[0]["details"]
    assert any("deactivated after 41 failed attempts" in r.getMessage() for r in caplog.records)
    rig.clock.advance(3600)
    await rig.world.delivered(1)
    await rig.run()
    assert len(rig.receiver.requests) == 41  # paused: no attempt at all
    rig.receiver.statuses = [200]
    rig.receiver.requests.clear()
    await webhooks.update(rig.world.pool, None, w["id"], webhooks.WebhookChanges(active=True), allow_private=True)
    await rig.run()
    # Resumed where it stopped: nothing was dropped while it was off.
    assert [e["event_id"] for e in rig.receiver.events()] == await rig.world.event_ids()


async def test_a_failing_webhook_never_delays_another(rig: Rig) -> None:
    broken = await rig.webhook(url=f"http://127.0.0.1:{closed_port()}/hook")
    hanging = Receiver(statuses=["hang"])
    await hanging.start()
    try:
        await rig.webhook(url=hanging.url())
        healthy = await rig.webhook()
        await rig.world.delivered(2)
        await rig.run()
        assert [e["event_id"] for e in rig.receiver.events()] == await rig.world.event_ids()
        assert len(hanging.requests) == 1
        assert (await webhooks.delivery_log(rig.world.pool, None, broken["id"]))["failures"] == 1
        assert (await webhooks.delivery_log(rig.world.pool, None, healthy["id"]))["failures"] == 0
    finally:
        await hanging.stop()


async def test_a_slow_receiver_within_the_timeout_is_delivered(rig: Rig) -> None:
    rig.receiver.delay = 0.5
    w = await rig.webhook()
    await rig.world.delivered(1)
    await rig.run()
    log = await webhooks.delivery_log(rig.world.pool, None, w["id"])
    assert [a["acknowledged"] for a in log["attempts"]] == [True]
    assert isinstance(log["attempts"][0]["latency_ms"], int)


async def test_basic_auth_in_the_url_is_sent_and_never_logged(rig: Rig, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    rig.receiver.statuses = [500, 200]
    w = await rig.webhook(url=rig.receiver.url(userinfo="hookuser:s3cr%40t"))
    await rig.world.delivered(1)
    await rig.run()
    rig.clock.advance(300)
    await rig.run()
    for req in rig.receiver.requests:
        assert req.headers["authorization"] == "Basic " + base64.b64encode(b"hookuser:s3cr@t").decode()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "s3cr" not in text and "hookuser" not in text
    assert f"webhook {w['id']} (http://127.0.0.1:{rig.receiver.port}/hook)" in text
    log = await webhooks.delivery_log(rig.world.pool, None, w["id"])
    assert all("s3cr" not in str(a) for a in log["attempts"])


async def test_an_address_refused_at_connect_time_is_never_contacted(rig: Rig) -> None:
    """A URL that passed its check (here: saved while private targets were allowed, as a name that
    later resolves elsewhere would) is checked again after resolution, inside the connect."""
    strict = WebhooksConfig(flush_seconds=0.0, timeout_seconds=1.0, allow_private_targets=False)
    client = make_client(strict)
    try:
        w = await rig.webhook(url=f"http://localhost:{rig.receiver.port}/hook")
        await rig.world.delivered(1)
        runner = OutboxRunner(rig.world.pool, [WebhookDelivery(strict, rig.world.pool, client)], clock=rig.clock)
        await runner.run_once()
    finally:
        await client.aclose()
    assert rig.receiver.requests == []
    log = await webhooks.delivery_log(rig.world.pool, None, w["id"])
    assert [(a["error"], a["acknowledged"]) for a in log["attempts"]] == \
           [("ConnectError: url: the host is not a public address", False)]


async def test_replay_from_an_event_id_or_a_time(rig: Rig) -> None:
    w = await rig.webhook()
    await rig.world.delivered(2)
    rig.clock.advance(1)
    await rig.run()
    ids = await rig.world.event_ids()
    assert [e["event_id"] for e in rig.receiver.events()] == ids
    rig.receiver.requests.clear()
    await webhooks.replay(rig.world.pool, None, w["id"], event_id=uuid.UUID(ids[1]))
    await rig.run()
    assert [e["event_id"] for e in rig.receiver.events()] == ids[1:]
    rig.receiver.requests.clear()
    first_at = await rig.world.pool.fetchval("SELECT min(created_at) FROM events WHERE type = 'delivery'")
    await webhooks.replay(rig.world.pool, None, w["id"], since=first_at)
    await rig.run()
    assert [e["event_id"] for e in rig.receiver.events()] == ids


async def test_https_to_a_name_verifies_the_certificate_for_that_name(rig: Rig, cert_files: tuple[Any, Any],
                                                                      ca: Any) -> None:
    """The connection goes to the address checked after resolution, and TLS still checks the
    certificate (and sends SNI) for the host name of the URL."""
    import ssl

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert_files[0]), str(cert_files[1]))
    tls_receiver = Receiver(tls=server_ctx)
    await tls_receiver.start()
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    client = make_client(rig.cfg, verify=trusting)
    untrusting = make_client(rig.cfg)
    try:
        good = await rig.webhook(url=tls_receiver.url(host="localhost"))
        await rig.world.delivered(1)
        await OutboxRunner(rig.world.pool, [WebhookDelivery(rig.cfg, rig.world.pool, client)],
                           clock=rig.clock).run_once()
        assert [len(r.events()) for r in tls_receiver.requests] == [1]
        assert [a["acknowledged"] for a in (await webhooks.delivery_log(rig.world.pool, None, good["id"]))["attempts"]]\
            == [True]
        tls_receiver.requests.clear()
        bad = await rig.webhook(url=tls_receiver.url(host="localhost"))
        await rig.world.delivered(1)
        await OutboxRunner(rig.world.pool, [WebhookDelivery(rig.cfg, rig.world.pool, untrusting)],
                           clock=rig.clock).run_once()
        log = await webhooks.delivery_log(rig.world.pool, None, bad["id"])
        assert log["attempts"][0]["acknowledged"] is False
        assert "CERTIFICATE_VERIFY_FAILED" in log["attempts"][0]["error"]
    finally:
        await client.aclose()
        await untrusting.aclose()
        await tls_receiver.stop()


async def test_a_new_url_is_tried_at_once_not_after_the_retry_time(rig: Rig) -> None:
    w = await rig.webhook(url=f"http://127.0.0.1:{closed_port()}/hook")
    await rig.world.delivered(1)
    await rig.run()
    assert (await webhooks.delivery_log(rig.world.pool, None, w["id"]))["failures"] == 1
    await webhooks.update(rig.world.pool, None, w["id"], webhooks.WebhookChanges(url=rig.receiver.url()),
                          allow_private=True)
    await rig.run()
    assert [e["event_id"] for e in rig.receiver.events()] == await rig.world.event_ids()


async def test_the_cursor_of_a_webhook_deleted_with_its_account_is_dropped(rig: Rig) -> None:
    w = await rig.webhook()
    await rig.world.pool.execute("DELETE FROM accounts WHERE id = $1", rig.world.account_id)
    other = await World.create(rig.world.pool, "other")
    await other.delivered(1)  # events exist after the orphan cursor's position
    assert await rig.run() == 1
    assert await rig.world.pool.fetchval("SELECT count(*) FROM outbox_cursors WHERE name = $1",
                                         f"webhook:{w['id']}") == 0
    assert await rig.run() == 0 and rig.receiver.requests == []


async def test_an_inactive_webhooks_cursor_found_unpaused_is_paused(rig: Rig) -> None:
    w = await rig.webhook()
    await rig.world.pool.execute("UPDATE webhooks SET active = false WHERE id = $1", w["id"])  # not via the store
    await rig.world.delivered(1)
    assert await rig.run() == 1
    assert await rig.world.pool.fetchval("SELECT paused FROM outbox_cursors WHERE name = $1", f"webhook:{w['id']}")
    assert await rig.run() == 0 and rig.receiver.requests == []


async def test_two_processes_never_post_the_same_webhooks_events_twice(rig: Rig) -> None:
    """Leases: with two runners (two processes, or nodes) one webhook has one holder at a time."""
    rig.receiver.delay = 0.05  # POSTs overlap with the other runner's claims
    hooks = [await rig.webhook() for _ in range(4)]
    rids = await rig.world.send(1200)
    for i in range(0, 1200, 200):
        await rig.world.finish(rids[i:i + 200])
    a, b = (OutboxRunner(rig.world.pool, [WebhookDelivery(rig.cfg, rig.world.pool, rig.client)], concurrency=2,
                         clock=rig.clock) for _ in range(2))
    assert await asyncio.gather(a.run_once(), b.run_once()) == [2, 2]  # they split the four webhooks
    ids = await rig.world.event_ids()
    for w in hooks:
        log = await webhooks.delivery_log(rig.world.pool, None, w["id"])
        assert sum(x["events"] for x in log["attempts"]) == len(ids)
    assert sorted(e["event_id"] for e in rig.receiver.events()) == sorted(ids * len(hooks))


async def _fail_until_deactivated(rig: Rig, w: dict[str, Any]) -> None:
    rig.receiver.statuses = [500]
    await rig.world.delivered(1)
    for _ in range(41):  # the first attempt and 40 retries, 5 minutes apart
        await rig.run()
        rig.clock.advance(300)
    assert (await webhooks.get(rig.world.pool, None, w["id"]))["active"] is False


async def _alerts(pool: asyncpg.Pool[Any]) -> list[Any]:
    return list(await pool.fetch("""SELECT m.*, r.rcpt, r.state FROM messages m JOIN recipients r ON r.message_id = m.id
                                      WHERE m.category = 'webhook_alert'"""))


async def test_a_deactivation_emails_the_alert_address_once_dkim_signed(rig: Rig, make_config: Any) -> None:
    cfg = make_config(notifications={"from": "alerts@operator.test"})
    kek = os.urandom(32)
    await accounts.create(rig.world.pool, "operator", monthly_limit=1000, max_message_size=1_000_000)
    report = await domainops.add_domain(rig.world.pool, cfg, kek, "operator", "operator.test", skip_dns=True)
    txt = {f"{r.name}.".encode(): r.value.encode() for r in report.records if r.type == "TXT"}
    await rig.world.pool.execute("UPDATE accounts SET alert_email = 'owner@alerts.test' WHERE id = $1",
                                 rig.world.account_id)
    w = await rig.webhook(url=rig.receiver.url(userinfo="hookuser:s3cr%40t") + "?token=qsecret")
    await _fail_until_deactivated(rig, w)
    alerts = [OutboxRunner(rig.world.pool, [WebhookAlerts(cfg, KeyStore(rig.world.pool, kek))])
              for _ in range(2)]  # two nodes: the cursor's lease gives the event to one
    await asyncio.gather(*(a.run_once() for a in alerts))
    await asyncio.gather(*(a.run_once() for a in alerts))
    sent = await _alerts(rig.world.pool)
    assert len(sent) == 1
    m = sent[0]
    operator = await accounts.get_by_name(rig.world.pool, "operator")
    assert (m["rcpt"], m["state"], m["mail_from"], m["account_id"]) == \
           ("owner@alerts.test", "queued", "alerts@operator.test", operator["id"])
    raw = bytes(m["raw"])
    assert raw.startswith(b"DKIM-Signature: ") and b"d=operator.test" in raw.split(b"\r\n\r\n")[0]
    assert dkimpy.verify(raw, dnsfunc=lambda name, timeout=5: txt.get(name if name.endswith(b".") else name + b"."))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert (parsed["From"], parsed["To"], parsed["Subject"]) == \
           ("alerts@operator.test", "owner@alerts.test", f"Webhook {w['id']} of account acme was deactivated")
    text = parsed.get_body().get_content()  # type: ignore[union-attr]
    assert f"({rig.receiver.url()}) of account acme was deactivated after 41 failed" in text.replace("\n", " ")
    assert b"hookuser" not in raw and b"s3cr" not in raw and b"qsecret" not in raw


async def test_a_deactivation_without_alert_address_is_event_and_log_only(rig: Rig, make_config: Any,
                                                                           caplog: Any) -> None:
    cfg = make_config(notifications={"from": "alerts@operator.test"})
    kek = os.urandom(32)
    await accounts.create(rig.world.pool, "operator", monthly_limit=1000, max_message_size=1_000_000)
    await domainops.add_domain(rig.world.pool, cfg, kek, "operator", "operator.test", skip_dns=True)
    caplog.set_level(logging.INFO, "mailtrap_smtp.hooks.delivery")
    w = await rig.webhook()
    await _fail_until_deactivated(rig, w)
    await OutboxRunner(rig.world.pool, [WebhookAlerts(cfg, KeyStore(rig.world.pool, kek))]).run_once()
    assert await _alerts(rig.world.pool) == []
    assert await rig.world.pool.fetchval("SELECT count(*) FROM events WHERE type = 'webhook_deactivated'") == 1
    assert await rig.world.pool.fetchval("SELECT count(*) FROM messages") == 1  # only the world's own message
    assert any(f"webhook {w['id']} ({rig.receiver.url()}) deactivated after 41" in r.getMessage()
               for r in caplog.records)
