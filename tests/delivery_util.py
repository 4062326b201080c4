"""Shared helpers for the delivery tests: enqueue through the real acceptance path, read back rows
and events, and the MX sink fixtures. A pytest plugin (tests/conftest.py `pytest_plugins`): its
fixtures (`sink`, `tls_sink`) need no import."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import accounts, events, messages
from tests.mx_sink import MxSink

PERIOD = dt.date(2026, 11, 1)
# Delivery settings that keep tests quick: short timeouts and retries.
FAST = {"mode": "mx", "connect_timeout_seconds": 2.0, "command_timeout_seconds": 5.0, "lease_seconds": 30.0,
        "poll_interval_seconds": 0.5, "retry_schedule_seconds": [1, 2],
        "retry_interval_min_seconds": 3, "retry_interval_max_seconds": 4}


@pytest.fixture
def sink() -> Any:
    """A real SMTP server (aiosmtpd, its own thread) standing in for the recipient's MX."""
    with MxSink() as s:
        yield s


@pytest.fixture
def tls_sink(cert_files: tuple[Path, Path]) -> Any:
    """The same, offering STARTTLS with the test CA's certificate."""
    with MxSink(tls_cert=cert_files) as s:
        yield s


def make_raw(subject: str = "hello", body: bytes = b"Hello there.\r\n", extra: bytes = b"") -> bytes:
    return (b"From: Sender <sender@src.test>\r\nTo: someone@dest.test\r\nSubject: " + subject.encode()
            + b"\r\nMessage-ID: <" + uuid.uuid4().hex.encode() + b"@src.test>\r\n" + extra + b"\r\n" + body)


async def account(pool: asyncpg.Pool[Any], name: str = "acme") -> int:
    row = await accounts.get_by_name(pool, name)
    if row is None:
        row = await accounts.create(pool, name, monthly_limit=1_000_000, max_message_size=10_000_000)
    return int(row["id"])


async def enqueue(pool: asyncpg.Pool[Any], rcpts: Sequence[str], raw: bytes | None = None,
                  mail_from: str = "bounces@src.test", *, smtputf8: bool = False,
                  tls_required: bool | None = None) -> uuid.UUID:
    acct = await account(pool)
    msg = messages.NewMessage(
        id=uuid.uuid4(), account_id=acct, credential_id=None, domain_id=None, stream="transactional",
        mail_from=mail_from, header_from="sender@src.test", subject="hello", message_id_header=None,
        category=None, custom_variables=None, client_ip="127.0.0.1", raw=raw or make_raw(),
        recipients=list(rcpts), smtputf8=smtputf8, tls_required=tls_required,
    )
    await messages.accept(pool, msg, PERIOD)
    await messages.notify_queue(pool)
    return msg.id


async def states(pool: asyncpg.Pool[Any], message_id: uuid.UUID) -> dict[str, str]:
    return {r["rcpt"]: r["state"] for r in await messages.recipients_of(pool, message_id)}


async def rows(pool: asyncpg.Pool[Any], message_id: uuid.UUID) -> dict[str, Any]:
    return {r["rcpt"]: r for r in await messages.recipients_of(pool, message_id)}


async def state_counts(pool: asyncpg.Pool[Any]) -> dict[str, int]:
    """Recipients per state, over every message."""
    rows = await pool.fetch("SELECT state, count(*) AS n FROM recipients GROUP BY state")
    return {r["state"]: r["n"] for r in rows}


async def event_list(pool: asyncpg.Pool[Any], message_id: uuid.UUID) -> list[tuple[str, str | None, Any]]:
    import json

    out = []
    for e in await events.for_message(pool, message_id):
        d = e["details"]
        out.append((e["type"], e["rcpt"], json.loads(d) if isinstance(d, str) else d))
    return out


async def wait_for(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def later(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)

def service(make_config: Any, pool: asyncpg.Pool[Any], routes: dict[str, str], **delivery: Any) -> DeliveryService:
    cfg = make_config(delivery={**FAST, "routes": routes, **delivery})
    return DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
