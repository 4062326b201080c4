"""Delivery with BDAT (RFC 3030) when the MX offers CHUNKING, with DATA when it does not.

aiosmtpd (the tests' MX sink) has no CHUNKING, so the MX here is a real Postfix from Debian, which
offers it (or not: `smtpd_discard_ehlo_keywords = chunking`), and relays what it received to the
sink. The whole path runs on real parts: a chunked submission over STARTTLS to our listener, DKIM
signing with a key published in the loopback DNS, the delivery worker, Postfix's smtpd (whose log
names the verb it was sent: `bdat=1` or `data=1`), Postfix's smtp client, the sink. What the sink
gets is Postfix's own Received header and then exactly the bytes we stored, and its signature
verifies (dkimpy against the loopback DNS).
"""

from __future__ import annotations

import os
import re
from typing import Any

import dkim as dkimpy
import pytest

from mailtrap_smtp import domainops, tokens
from mailtrap_smtp.app import smtp_service
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.headers import parse_header
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.store import accounts, credentials
from tests.delivery_util import FAST, enqueue, event_list, make_raw, states, wait_for
from tests.domain_util import dnsfunc_for
from tests.mx_sink import MxSink
from tests.postfix_util import Postfix, needs_postfix, relaying_main_cf
from tests.smtp_util import RawClient, reply_line, smtp_sections

pytestmark = needs_postfix


def _relaying_main_cf(sink_port: int, *, chunking: bool, extra: str = "") -> str:
    return relaying_main_cf(sink_port, ("" if chunking else "smtpd_discard_ehlo_keywords = chunking\n") + extra)


async def _submit_chunked(port: int, ctx: Any, token: str, msg: bytes) -> str:
    c = RawClient("127.0.0.1", port, ctx)
    await c.connect()
    try:
        assert await c.login(token) == reply_line("AUTH_OK")
        half = len(msg) // 2
        await c.send(b"MAIL FROM:<app@sender.test>\r\nRCPT TO:<user@dest.test>\r\n"
                     + b"BDAT %d\r\n" % half + msg[:half] + b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:])
        replies = [await c.reply() for _ in range(4)]
        assert replies[:3] == [reply_line("SENDER_OK"), reply_line("RECIPIENT_OK"),
                               reply_line("BDAT_CHUNK_OK", size=half)]
        return replies[3]
    finally:
        c.close()


@pytest.mark.parametrize("chunking", [True, False], ids=["mx-offers-chunking", "mx-without-chunking"])
async def test_delivered_byte_exact_and_dkim_verifiable(pool: Any, make_config: Any, dns_server: Any,
                                                        sink: MxSink, postfix: Postfix, client_ssl_context: Any,
                                                        chunking: bool) -> None:
    postfix.start(_relaying_main_cf(sink.port, chunking=chunking))
    cfg = make_config(**smtp_sections(None, delivery={**FAST, "routes": {"dest.test": f"127.0.0.1:{postfix.port}"}},
                                      dns={"nameservers": [dns_server.address], "timeout_seconds": 2.0}))
    kek = os.urandom(32)
    await accounts.create(pool, "acme", monthly_limit=100, max_message_size=1_000_000)
    report = await domainops.add_domain(pool, cfg, kek, "acme", "sender.test", skip_dns=True)
    for r in report.records:
        dns_server.add(r.name, r.type, r.value)
    acct = await accounts.get_by_name(pool, "acme")
    tok = tokens.generate()
    await credentials.create(pool, acct["id"], public_id=tok.public_id, digest=tok.digest, stream="transactional")

    # Dots that DATA would have to stuff, and a would-be terminator that is only text in BDAT.
    body = b"".join(b"line %d: " % i + b"x" * 70 + b"\r\n" for i in range(200))
    text = b".leading dot\r\n.\r\n" + body + b"..two dots\r\n"
    msg = b"From: App <app@sender.test>\r\nTo: user@dest.test\r\nSubject: chunked\r\n\r\n" + text
    smtp = smtp_service(cfg, pool, signer=KeyStore(pool, kek), process_index=0, port_override=0)
    await smtp.start()
    try:
        reply = await _submit_chunked(smtp.listeners[0].port, client_ssl_context, tok.token, msg)
    finally:
        await smtp.stop(1.0)
    assert reply.startswith("250 2.0.0 Ok: queued as ")
    message_id = reply.rsplit(" ", 1)[1]

    await DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    assert await states(pool, message_id) == {"user@dest.test": "delivered"}
    await wait_for(lambda: sink.received, timeout=60, interval=0.1)

    (got,) = sink.received
    stored = bytes(await pool.fetchval("SELECT raw FROM messages WHERE id = $1::uuid", message_id))
    assert stored.startswith(b"DKIM-Signature: ") and stored.endswith(b"\r\n\r\n" + text)
    # Postfix prepends exactly one header, its Received; everything after it is what we stored.
    assert got.data.endswith(stored)
    added = parse_header(got.data[: -len(stored)] + b"\r\n").fields
    assert [name for name, _ in added] == [b"received"] and b"by postfix.test (Postfix)" in added[0][1]
    assert dkimpy.verify(got.data, dnsfunc=dnsfunc_for(dns_server))
    verb = "bdat=1" if chunking else "data=1"
    assert re.search(rf"disconnect from \S+ ehlo=1 mail=1 rcpt=1 {verb} quit=1",
                     postfix.log.read_text(errors="replace"))


async def test_a_refused_chunk_bounces_the_recipients(pool: Any, make_config: Any, sink: MxSink,
                                                       postfix: Postfix) -> None:
    # Postfix without SIZE in its EHLO cannot refuse at MAIL: its 552 answers the BDAT chunk itself.
    postfix.start(_relaying_main_cf(sink.port, chunking=True,
                                    extra="message_size_limit = 10000\nsmtpd_discard_ehlo_keywords = size"))
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": f"127.0.0.1:{postfix.port}"}})
    body = b"".join(b"x" * 70 + b"\r\n" for _ in range(300))
    mid = await enqueue(pool, ["a@dest.test", "b@dest.test"], make_raw(body=body))
    await DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    assert await states(pool, mid) == {"a@dest.test": "bounced", "b@dest.test": "bounced"}
    bounces = [e for e in await event_list(pool, mid) if e[0] == "bounce"]
    assert sorted(rcpt or "" for _, rcpt, _ in bounces) == ["a@dest.test", "b@dest.test"]
    assert all(d["reply"].startswith("552 5.3.4 ") for _, _, d in bounces)
    assert re.search(r"disconnect from \S+ ehlo=1 mail=1 rcpt=2 bdat=0/1", postfix.log.read_text(errors="replace"))
    assert sink.received == []
