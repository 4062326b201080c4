"""Bounce categories, the retry schedule, SMTPUTF8, and operator retry of expired recipients."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.config import DeliveryConfig
from mailtrap_smtp.delivery import bounces
from mailtrap_smtp.delivery.client import envelope_problem
from mailtrap_smtp.delivery.retry import next_delay
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import queue
from tests.delivery_util import FAST, enqueue, event_list, later, rows, states
from tests.mx_sink import MxSink


@pytest.mark.parametrize(("line", "category"), [
    ("550 5.1.1 <x@y>: Recipient address rejected: User unknown", "bad_recipient"),
    ("550 5.1.10 RESOLVER.ADR.RecipientNotFound", "bad_domain"),
    ("553 5.1.3 Bad destination mailbox address syntax", "bad_recipient"),
    ("552 5.2.2 Mailbox full", "mailbox_full"),
    ("452 4.2.2 Over quota", "mailbox_full"),
    ("552 5.3.4 Message size exceeds fixed limit", "message_too_large"),
    ("550 5.7.1 Service unavailable; client host blocked using Spamhaus", "spam_block"),
    ("550 5.7.1 Relaying denied", "policy"),
    ("550 5.7.26 Unauthenticated email from x is not accepted due to DMARC policy", "authentication"),
    ("451 4.7.1 Greylisted, please try again later", "greylisted"),
    ("421 4.7.28 Our system has detected an unusual rate of unsolicited mail", "throttled"),
    ("421 4.7.0 Too many connections, slow down", "throttled"),
    ("550 5.1.7 Sender address rejected", "bad_sender"),
    ("554 5.6.0 Content rejected", "content_rejected"),
    ("550 No such user here", "bad_recipient"),
    ("552 Message too large", "message_too_large"),
    ("554 Transaction failed", "policy"),
    ("554 5.7.1 Client host rejected: listed on bl.example", "spam_block"),
    ("451 Local error in processing", "other"),
])
def test_classification(line: str, category: str) -> None:
    assert bounces.classify(bounces.parse_line(line)) == category


def test_enhanced_code_parsing() -> None:
    r = bounces.parse_line("550 5.1.1 User\nunknown")
    assert (r.code, r.enhanced, r.text) == (550, "5.1.1", "5.1.1 User unknown")
    assert bounces.parse_line("250 OK").enhanced is None


def test_retry_schedule_then_jittered_interval() -> None:
    cfg = DeliveryConfig(retry_schedule_seconds=[60, 300], retry_interval_min_seconds=7200,
                         retry_interval_max_seconds=14400)
    assert next_delay(1, cfg) == 60 and next_delay(2, cfg) == 300
    rng = random.Random(1)
    later_ = [next_delay(n, cfg, rng) for n in range(3, 50)]
    assert all(7200 <= d <= 14400 for d in later_) and len(set(later_)) > 10


def test_envelope_validation() -> None:
    assert envelope_problem("a@b.test") is None
    assert envelope_problem("", sender=True) is None
    assert envelope_problem("") is not None
    assert envelope_problem("jos\u00e9@exampl\u00e9.test") is None  # UTF-8 is fine (SMTPUTF8)


@pytest.mark.parametrize("bad", ["a\r\n@b.test", "a\x00@b", "a b@c", "<a@b>", "a\t@b", "a@b\x7f", "nodomain"])
def test_envelope_problem_refuses(bad: str) -> None:
    assert envelope_problem(bad) is not None


async def test_smtputf8_negotiated_for_non_ascii_address(make_config: Any, pool: asyncpg.Pool[Any]) -> None:
    with MxSink() as sink:
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
        svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
        mid = await enqueue(pool, ["jos\u00e9@dest.test", "plain@dest.test"])
        await svc.run_once()
        assert set((await states(pool, mid)).values()) == {"delivered"}
        assert "SMTPUTF8" in sink.received[0].mail_options
        assert sink.received[0].rcpts == ["jos\u00e9@dest.test", "plain@dest.test"]
        # ASCII only: no SMTPUTF8 asked for.
        mid2 = await enqueue(pool, ["plain@dest.test"])
        await svc.run_once()
        assert await states(pool, mid2) == {"plain@dest.test": "delivered"}
        assert "SMTPUTF8" not in sink.received[1].mail_options


async def test_retry_of_expired_recipient_gets_a_new_lifetime(make_config: Any, pool: asyncpg.Pool[Any]) -> None:
    with MxSink() as sink:
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address},
                                    "max_queue_lifetime_seconds": 60})
        svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5), clock=lambda: later(120))
        mid = await enqueue(pool, ["a@dest.test"])
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": "expired"}
        assert await queue.retry(pool, mid, now=later(120)) == 1
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": "delivered"}
        assert (await rows(pool, mid))["a@dest.test"]["attempts"] == 1
        assert [t for t, _, _ in await event_list(pool, mid)] == [
            "reception", "expiration", "manual_retry", "delivery"]


async def test_rcpt_drop_and_421_are_transient(make_config: Any, pool: asyncpg.Pool[Any]) -> None:
    with MxSink() as sink:
        sink.rcpt_replies["b@dest.test"] = "drop"
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
        svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
        mid = await enqueue(pool, ["a@dest.test", "b@dest.test"])
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": "queued", "b@dest.test": "queued"}
        assert not sink.received
        sink.rcpt_replies.clear()
        svc.clock = lambda: later(2)
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": "delivered", "b@dest.test": "delivered"}


async def test_idn_domain_with_ascii_local_part_goes_as_a_label(make_config: Any, pool: asyncpg.Pool[Any]) -> None:
    with MxSink() as sink:
        cfg = make_config(delivery={**FAST, "routes": {"b\u00fccher.test": sink.address}})
        svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
        mid = await enqueue(pool, ["info@B\u00fccher.test"])
        await svc.run_once()
        assert await states(pool, mid) == {"info@B\u00fccher.test": "delivered"}
        assert sink.received[0].rcpts == ["info@xn--bcher-kva.test"]
        assert "SMTPUTF8" not in sink.received[0].mail_options


async def test_utf8_header_fields_travel_under_smtputf8(make_config: Any, pool: asyncpg.Pool[Any]) -> None:
    from tests.delivery_util import make_raw

    with MxSink() as sink:
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
        svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
        raw = make_raw(subject="Gr\u00fc\u00dfe", body=b"plain\r\n")
        mid = await enqueue(pool, ["a@dest.test"], raw=raw)
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": "delivered"}
        opts = sink.received[0].mail_options
        assert "SMTPUTF8" in opts and "BODY=8BITMIME" in opts
        assert sink.received[0].data == raw
