"""SMTPUTF8 at delivery (RFC 6531 §3.2) against a real aiosmtpd MX with SMTPUTF8 on and off: the
per-recipient 5.6.7 bounce with its diagnostic, delivery under SMTPUTF8 byte for byte, ASCII and
legacy mail unchanged, U-label destination domains looked up and sent as A-labels; and a real
Postfix (smtputf8_enable yes / no) as the recipient's MTA."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.delivery import bounces
from mailtrap_smtp.delivery.client import SMTPUTF8_NOT_OFFERED
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from tests.delivery_util import FAST, enqueue, event_list, make_raw, states, wait_for
from tests.mx_sink import MxSink
from tests.postfix_util import Postfix, needs_postfix, relaying_main_cf
from tests.smtp_util import Env

UTF8_RAW = make_raw(subject="Gr\u00fc\u00dfe", body="H\u00e9llo\r\n".encode())


def routed(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> DeliveryService:
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
    return DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))


async def bounces_of(pool: asyncpg.Pool[Any], mid: Any) -> dict[str | None, dict[str, Any]]:
    return {r: d for t, r, d in await event_list(pool, mid) if t == "bounce"}


def not_offered(why: str) -> str:
    return SMTPUTF8_NOT_OFFERED.format(mx="127.0.0.1", why=why)


@pytest.fixture
def plain_sink() -> Any:
    """An MX that does not offer SMTPUTF8."""
    with MxSink(smtputf8=False) as s:
        yield s


async def test_utf8_recipient_bounces_567_ascii_one_is_delivered(make_config: Any, pool: asyncpg.Pool[Any],
                                                                 plain_sink: MxSink) -> None:
    svc = routed(make_config, pool, plain_sink)
    mid = await enqueue(pool, ["jos\u00e9@dest.test", "plain@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"jos\u00e9@dest.test": "bounced", "plain@dest.test": "delivered"}
    b = (await bounces_of(pool, mid))["jos\u00e9@dest.test"]
    assert b["reply"] == not_offered("the recipient address has a non-ASCII local part")
    assert b["reply"].startswith("553 5.6.7 ") and b["category"] == bounces.SMTPUTF8_UNSUPPORTED
    (got,) = plain_sink.received
    assert got.rcpts == ["plain@dest.test"] and "SMTPUTF8" not in got.mail_options


async def test_declared_utf8_headers_bounce_every_recipient_where_missing(
        make_config: Any, pool: asyncpg.Pool[Any], plain_sink: MxSink) -> None:
    svc = routed(make_config, pool, plain_sink)
    mid = await enqueue(pool, ["a@dest.test", "b@dest.test"], raw=UTF8_RAW, smtputf8=True)
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "bounced", "b@dest.test": "bounced"}
    for b in (await bounces_of(pool, mid)).values():
        assert b["reply"] == not_offered("the message has UTF-8 header fields (RFC 6532)")
        assert b["category"] == bounces.SMTPUTF8_UNSUPPORTED and b["mx"] == "127.0.0.1"
    assert not plain_sink.data_started  # nothing was sent


async def test_utf8_sender_bounces_where_missing(make_config: Any, pool: asyncpg.Pool[Any],
                                                 plain_sink: MxSink) -> None:
    svc = routed(make_config, pool, plain_sink)
    mid = await enqueue(pool, ["a@dest.test"], mail_from="j\u00f6rg@src.test")
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "bounced"}
    assert (await bounces_of(pool, mid))["a@dest.test"]["reply"] == not_offered(
        "the sender address has a non-ASCII local part")


async def test_utf8_message_delivered_under_smtputf8_byte_exact(make_config: Any, pool: asyncpg.Pool[Any],
                                                                sink: MxSink) -> None:
    svc = routed(make_config, pool, sink)
    mid = await enqueue(pool, ["jos\u00e9@dest.test"], raw=UTF8_RAW, mail_from="j\u00f6rg@src.test", smtputf8=True)
    await svc.run_once()
    assert await states(pool, mid) == {"jos\u00e9@dest.test": "delivered"}
    (got,) = sink.received
    assert "SMTPUTF8" in got.mail_options and "BODY=8BITMIME" in got.mail_options
    assert got.mail_from == "j\u00f6rg@src.test" and got.rcpts == ["jos\u00e9@dest.test"]
    assert got.data == UTF8_RAW


async def test_undeclared_8bit_headers_are_relayed_as_before(make_config: Any, pool: asyncpg.Pool[Any],
                                                             plain_sink: MxSink) -> None:
    svc = routed(make_config, pool, plain_sink)
    mid = await enqueue(pool, ["a@dest.test"], raw=UTF8_RAW, smtputf8=False)
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}
    (got,) = plain_sink.received
    assert "SMTPUTF8" not in got.mail_options and got.data == UTF8_RAW


async def test_ascii_message_unchanged_on_both_kinds_of_mx(make_config: Any, pool: asyncpg.Pool[Any],
                                                           sink: MxSink, plain_sink: MxSink) -> None:
    for mx in (sink, plain_sink):
        svc = routed(make_config, pool, mx)
        mid = await enqueue(pool, ["a@dest.test"])
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": "delivered"}
        (got,) = mx.received
        assert got.mail_options == [f"SIZE={len(got.data)}"]


async def test_u_label_domain_looked_up_and_sent_as_a_label(make_config: Any, pool: asyncpg.Pool[Any],
                                                            dns_server: Any, plain_sink: MxSink) -> None:
    dns_server.add("xn--bcher-kva.test", "MX", "10 mx.xn--bcher-kva.test.")
    dns_server.add("mx.xn--bcher-kva.test", "A", "127.0.0.1")
    cfg = make_config(delivery=FAST, dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0})
    svc = DeliveryService(cfg, pool, make_resolver(cfg.dns.nameservers, 1.0), mx_port=plain_sink.port)
    mid = await enqueue(pool, ["info@B\u00fccher.test", "other@xn--bcher-kva.test"])
    await svc.run_once()
    assert set((await states(pool, mid)).values()) == {"delivered"}
    # One destination however it was spelled: one transaction, A-labels only (no SMTPUTF8 needed).
    (got,) = plain_sink.received
    assert got.rcpts == ["info@xn--bcher-kva.test", "other@xn--bcher-kva.test"]
    assert "SMTPUTF8" not in got.mail_options
    names = {name for name, _, _ in dns_server.queries}
    assert "xn--bcher-kva.test." in names and all(n.isascii() for n in names)


@pytest.mark.parametrize(("line", "category"), [
    ("553 5.6.7 Non-ASCII addresses not permitted for that recipient", bounces.SMTPUTF8_UNSUPPORTED),
    ("554 5.6.0 Content rejected", bounces.CONTENT_REJECTED),
])
def test_remote_x67_is_classified(line: str, category: str) -> None:
    assert bounces.classify(bounces.parse_line(line)) == category


async def _submit(env: Env, sender: str, rcpt: str, body: bytes) -> None:
    def run() -> None:
        with smtplib.SMTP("127.0.0.1", env.port, timeout=10) as s:
            s.starttls(context=env.ssl_context)
            s.login("api", env.token)
            assert s.sendmail(sender, [rcpt], body, mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    await asyncio.to_thread(run)


@pytest.mark.parametrize("mx_offers", [True, False], ids=["mx-smtputf8", "mx-without-smtputf8"])
async def test_smtplib_to_the_mx_end_to_end(smtp: Env, make_config: Any, mx_offers: bool) -> None:
    rcpt = "j\u00f6rg@dest.test"
    body = (f"From: <app@example.com>\r\nTo: {rcpt}\r\nSubject: \u00dcbung\r\n\r\nb\u00fccher\r\n").encode()
    await _submit(smtp, "app@example.com", rcpt, body)
    with MxSink(smtputf8=mx_offers) as mx:
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": mx.address}})
        await DeliveryService(cfg, smtp.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
        state = await smtp.pool.fetchval("SELECT state FROM recipients")
        stored = bytes(await smtp.pool.fetchval("SELECT raw FROM messages"))
        if mx_offers:
            assert state == "delivered"
            (got,) = mx.received
            assert got.data == stored and got.rcpts == [rcpt] and "SMTPUTF8" in got.mail_options
        else:
            assert state == "bounced" and not mx.data_started
            detail = await smtp.pool.fetchval("SELECT details->>'reply' FROM events WHERE type = 'bounce'")
            assert detail == not_offered("the recipient address has a non-ASCII local part")


@needs_postfix
@pytest.mark.parametrize("enabled", [True, False], ids=["smtputf8_enable=yes", "smtputf8_enable=no"])
async def test_real_postfix_as_the_mx(make_config: Any, pool: asyncpg.Pool[Any], postfix: Postfix,
                                      sink: MxSink, enabled: bool) -> None:
    # Postfix accepts for dest.test and relays it on to the sink (which offers SMTPUTF8).
    postfix.start(relaying_main_cf(sink.port, f"smtputf8_enable = {'yes' if enabled else 'no'}"))
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": f"127.0.0.1:{postfix.port}"}})
    rcpt = "jos\u00e9@dest.test"
    mid = await enqueue(pool, [rcpt], raw=UTF8_RAW, smtputf8=True)
    await DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    if not enabled:
        assert await states(pool, mid) == {rcpt: "bounced"}
        assert (await bounces_of(pool, mid))[rcpt]["reply"] == not_offered(
            "the recipient address has a non-ASCII local part")
        return
    assert await states(pool, mid) == {rcpt: "delivered"}
    (got,) = await wait_for(lambda: list(sink.received), timeout=60, interval=0.2)
    # Postfix took it under SMTPUTF8 ("with UTF8SMTP", RFC 6531 §3.7.3) and passes it on the same
    # way: our header fields untouched (it adds Received and a missing Date), the body as sent.
    assert got.rcpts == [rcpt] and "SMTPUTF8" in got.mail_options
    head, body = UTF8_RAW.split(b"\r\n\r\n", 1)
    assert b"(Postfix) with UTF8SMTP id " in got.data and head + b"\r\n" in got.data
    assert got.data.endswith(b"\r\n\r\n" + body)


async def test_config_may_name_an_idn_destination_either_way(make_config: Any, pool: asyncpg.Pool[Any]) -> None:
    cfg = make_config(delivery={**FAST, "routes": {"B\u00fccher.test": "127.0.0.1:2526"},
                                "require_tls_domains": ["b\u00fccher.test", ".\u4f8b\u5b50.test"]})
    svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
    assert [t.port for t in await svc._targets("xn--bcher-kva.test")] == [2526]
    assert svc._requires_tls("xn--bcher-kva.test") and svc._requires_tls("a.xn--fsqu00a.test")
    assert not svc._requires_tls("xn--fsqu00a.test") and not svc._requires_tls("dest.test")
