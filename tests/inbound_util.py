"""Shared pieces of the return-path and inbound-listener tests (no tests here): a message from a
DNS-verified sending domain, and a running inbound listener with a VERP address for it (the
`inbound` fixture, a plugin of tests/conftest.py)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.delivery import verp
from mailtrap_smtp.delivery.return_path import load_key
from mailtrap_smtp.inbound.server import InboundService
from mailtrap_smtp.store import domains, messages
from tests.delivery_util import PERIOD, account, event_list, make_raw
from tests.mx_sink import free_port
from tests.smtp_util import RawClient


async def enqueue_from_domain(pool: asyncpg.Pool[Any], rcpts: list[str], *, dns_skipped: bool = False) -> uuid.UUID:
    acct = await account(pool)
    dom = await domains.get_by_name(pool, "src.test")
    if dom is None:
        dom = await domains.create(pool, acct, "src.test", verification_token="mt7q2x", dns_skipped=dns_skipped)
    msg = messages.NewMessage(
        id=uuid.uuid4(), account_id=acct, credential_id=None, domain_id=int(dom["id"]), stream="transactional",
        mail_from="app@src.test", header_from="app@src.test", subject="hello", message_id_header=None,
        category=None, custom_variables=None, client_ip="127.0.0.1", raw=make_raw(), recipients=rcpts,
    )
    await messages.accept(pool, msg, PERIOD)
    return msg.id


async def recipient_ids(pool: asyncpg.Pool[Any], mid: uuid.UUID) -> dict[str, int]:
    return {r["rcpt"]: int(r["id"]) for r in await messages.recipients_of(pool, mid)}


RCPT = "gone@dest.test"
FBL = "fbl@rp.mx.service.test"


@dataclass
class Inbound:
    service: InboundService
    pool: Any
    key: bytes
    message_id: uuid.UUID
    recipient_id: int
    ctx: ssl.SSLContext

    @property
    def port(self) -> int:
        return self.service.ports[0]

    @property
    def verp(self) -> str:
        return verp.make(self.key, verp.Tag(self.message_id, self.recipient_id), "mt7q2x.src.test")

    async def feedback_events(self) -> list[tuple[str, str | None, Any]]:
        return [e for e in await event_list(self.pool, self.message_id) if e[0] != "reception"]

    def raw(self) -> RawClient:
        return RawClient("127.0.0.1", self.port, self.ctx)


@pytest.fixture
async def inbound(make_config: Any, pool: asyncpg.Pool[Any], client_ssl_context: ssl.SSLContext) -> Any:
    cfg = make_config(inbound={"listeners": [f"127.0.0.1:{free_port()}"], "max_message_size": 65536,
                               "max_recipients": 3, "feedback_addresses": [FBL]},
                      smtp={"max_errors": 5, "command_timeout_seconds": 5.0})
    mid = await enqueue_from_domain(pool, [RCPT, "other@dest.test"])
    svc = InboundService(cfg, pool)
    await svc.start()
    try:
        yield Inbound(svc, pool, load_key(cfg), mid, (await recipient_ids(pool, mid))[RCPT], client_ssl_context)
    finally:
        await svc.stop(1.0)


def smtplib_send(port: int, ctx: ssl.SSLContext, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("mx.reporter.test")
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s.starttls(context=ctx)
        s.ehlo("mx.reporter.test")
        assert not s.has_extn("starttls") and not s.has_extn("auth")
        return s.sendmail("", rcpts, raw)  # the null reverse path of every DSN (RFC 3464 §2)


async def send(inb: Inbound, raw: bytes, rcpts: list[str] | None = None) -> dict[str, tuple[int, bytes]]:
    return await asyncio.to_thread(smtplib_send, inb.port, inb.ctx, rcpts or [inb.verp], raw)




def forgeries(good: str) -> list[str]:
    """Return paths a forger would try: a flipped MAC character, no tag, postmaster, a short tag."""
    local, _, host = good.partition("@")
    text = local.partition("+")[2]
    flipped = text[:-1] + ("a" if text[-1] != "a" else "b")
    return [f"bounces+{flipped}@{host}", f"bounces@{host}", f"postmaster@{host}", f"bounces+{text[:-2]}@{host}"]
