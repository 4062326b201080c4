"""The whole path: SMTP submission → durable queue → MX found in DNS → delivered, DKIM-verifiable.

Real parts throughout: the service's own SMTP listener over STARTTLS, an aiosmtplib client, the
embedded PostgreSQL, the delivery worker woken by NOTIFY, the loopback DNS server for MX, A and the
published DKIM key, an aiosmtpd sink as the recipient's MX, and the CLI's `queue show`.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiosmtplib
import dkim as dkimpy
import pytest

from mailtrap_smtp import cli, domainops, tokens
from mailtrap_smtp.app import smtp_service
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.store import accounts, credentials
from tests.delivery_util import FAST
from tests.domain_util import dnsfunc_for
from tests.mx_sink import MxSink
from tests.smtp_util import smtp_sections


async def test_accepted_over_smtp_arrives_signed_at_the_mx_from_dns(
        pool: Any, make_config: Any, dns_server: Any, sink: MxSink, client_ssl_context: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_config(**smtp_sections(None, delivery={**FAST, "mx_port": sink.port},
                                      dns={"nameservers": [dns_server.address], "timeout_seconds": 2.0}))
    kek = os.urandom(32)
    await accounts.create(pool, "acme", monthly_limit=100, max_message_size=1_000_000)
    report = await domainops.add_domain(pool, cfg, kek, "acme", "sender.test", skip_dns=True)
    for r in report.records:  # the customer publishes what `domain add` printed
        dns_server.add(r.name, r.type, r.value)
    acct = await accounts.get_by_name(pool, "acme")
    tok = tokens.generate()
    await credentials.create(pool, acct["id"], public_id=tok.public_id, digest=tok.digest, stream="transactional")
    dns_server.add("dest.test", "MX", "10 mx.dest.test.")
    dns_server.add("mx.dest.test", "A", "127.0.0.1")

    smtp = smtp_service(cfg, pool, signer=KeyStore(pool, kek), process_index=0, port_override=0)
    delivery = DeliveryService(cfg, pool, make_resolver(cfg.dns.nameservers, 2.0))
    await smtp.start()
    await delivery.start()
    try:
        body = (b"From: App <app@sender.test>\r\nTo: user@dest.test\r\nSubject: End to end\r\n\r\n"
                b".leading dot survives\r\nHello.\r\n")
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp.listeners[0].port, tls_context=client_ssl_context,
                                 start_tls=True)
        await client.connect()
        await client.login("api", tok.token)
        errors, reply = await client.sendmail("app@sender.test", ["user@dest.test"], body)
        await client.quit()
        assert errors == {} and reply.startswith("2.0.0 Ok: queued as ")
        message_id = reply.rsplit(" ", 1)[1]
        for _ in range(100):  # woken by NOTIFY; bounded wait, no timing assertion
            if sink.received:
                break
            await asyncio.sleep(0.1)
    finally:
        await delivery.stop(2.0)
        await smtp.stop(1.0)

    (got,) = sink.received
    assert got.mail_from == "app@sender.test" and got.rcpts == ["user@dest.test"]
    assert b"\r\n.leading dot survives\r\n" in got.data
    stored = await pool.fetchval("SELECT raw FROM messages WHERE id = $1::uuid", message_id)
    assert got.data == bytes(stored)  # relayed byte for byte as stored
    assert got.data.startswith(b"DKIM-Signature: ")
    assert dkimpy.verify(got.data, dnsfunc=dnsfunc_for(dns_server))

    code = await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), "queue", "show", message_id,
                                              "--json"])
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert [e["type"] for e in shown["events"]] == ["reception", "delivery"]
    assert shown["recipients"][0]["state"] == "delivered"
    assert shown["events"][1]["details"]["mx"] == "mx.dest.test"
