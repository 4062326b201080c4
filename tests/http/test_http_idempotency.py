"""Idempotency-Key on the send API: a repeat within 24 h gets the first answer (same status, body,
ids) and sends and charges nothing; a repeat while the first is in flight gets 409; keys are per
token; concurrent requests with one key (in one process or two) store exactly one message."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http_util import SENDER, ApiEnv, minimal
from tests.paths import ROOT
from tests.serve_util import free_port as _free_port
from tests.serve_util import wait_port as _wait_port
from tests.smtp_util import create_account


async def test_repeat_gets_the_first_answer_and_charges_nothing(api: ApiEnv) -> None:
    body = minimal(to=[{"email": "a@x.test"}, {"email": "b@x.test"}])
    async with api.client() as c:
        first = await c.post("/api/send", json=body, headers={**api.auth(), "Idempotency-Key": "order-1"})
        again = await c.post("/api/send", json=body, headers={**api.auth(), "Idempotency-Key": "order-1"})
        other = await c.post("/api/send", json=body, headers={**api.auth(), "Idempotency-Key": "order-2"})
    assert first.status_code == again.status_code == other.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert other.json()["message_ids"] != first.json()["message_ids"]
    assert await api.counts() == {"messages": 2, "recipients": 4, "used": 4}


async def test_a_refusal_is_kept_too(api: ApiEnv) -> None:
    async with api.client() as c:
        first = await c.post("/api/send", json=minimal(subject=None), headers={**api.auth(), "Idempotency-Key": "k"})
        # The same key with a now valid body still gets the first answer: the key names the request.
        again = await c.post("/api/send", json=minimal(), headers={**api.auth(), "Idempotency-Key": "k"})
    assert (first.status_code, again.status_code) == (400, 400)
    assert again.json() == {"success": False, "errors": ["'subject' is required"]}
    await api.assert_nothing_stored()


async def test_keys_are_per_token(api: ApiEnv) -> None:
    second = await api.new_token()
    async with api.client() as c:
        a = await c.post("/api/send", json=minimal(), headers={**api.auth(), "Idempotency-Key": "same"})
        b = await c.post("/api/send", json=minimal(), headers={**api.auth(second), "Idempotency-Key": "same"})
    assert a.json()["message_ids"] != b.json()["message_ids"]
    assert await api.counts() == {"messages": 2, "recipients": 2, "used": 2}


async def test_batch_is_idempotent(api: ApiEnv) -> None:
    body = {"base": {"from": {"email": SENDER}, "subject": "S", "text": "T"},
            "requests": [{"to": [{"email": "a@x.test"}]}, {"to": [{"email": "b@x.test"}]}]}
    async with api.client() as c:
        first = await c.post("/api/batch", json=body, headers={**api.auth(), "Idempotency-Key": "batch-1"})
        again = await c.post("/api/batch", json=body, headers={**api.auth(), "Idempotency-Key": "batch-1"})
    assert again.json() == first.json()
    assert await api.counts() == {"messages": 2, "recipients": 2, "used": 2}


async def test_concurrent_requests_with_one_key_store_one_message(api: ApiEnv) -> None:
    async with api.client() as c:
        answers = await asyncio.gather(*(c.post("/api/send", json=minimal(),
                                                headers={**api.auth(), "Idempotency-Key": "race"})
                                         for _ in range(8)))
    ok = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code == 409]
    assert len(ok) + len(busy) == 8 and ok
    assert len({tuple(a.json()["message_ids"]) for a in ok}) == 1
    assert all(a.json() == {"success": False, "errors": ["A request with this Idempotency-Key is still in progress"]}
               for a in busy)
    assert await api.counts() == {"messages": 1, "recipients": 1, "used": 1}


@pytest.mark.parametrize("key", [b"", b"x" * 257, "caf\u00e9".encode()])
async def test_invalid_keys(api: ApiEnv, key: bytes) -> None:
    async with api.client() as c:
        r = await c.post("/api/send", json=minimal(), headers={**api.auth(), "Idempotency-Key": key})
    assert (r.status_code, r.json()) == (
        400, {"success": False, "errors": ["Idempotency-Key must be 1 to 256 printable ASCII characters"]})
    await api.assert_nothing_stored()


async def test_same_key_from_two_processes_at_once(pool: Any, make_config: Any, tmp_path: Path,
                                                   client_ssl_context: ssl.SSLContext) -> None:
    port = _free_port()
    make_config(http={"listeners": [{"address": "127.0.0.1", "port": port, "stream": "transactional"}]})
    acct = await create_account(pool)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"), "serve", "--role", "http",
        "--processes", "2", stderr=asyncio.subprocess.DEVNULL, cwd=ROOT)
    try:
        await _wait_port(port, proc)
        await asyncio.sleep(1.0)  # both processes listening
        clients = [httpx.AsyncClient(verify=client_ssl_context, timeout=30) for _ in range(8)]
        try:
            answers = await asyncio.gather(*(
                c.post(f"https://127.0.0.1:{port}/api/send", json=minimal(),
                       headers={"Authorization": f"Bearer {acct.token}", "Idempotency-Key": "two-processes"})
                for c in clients))
        finally:
            for c in clients:
                await c.aclose()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.wait()
    assert {a.status_code for a in answers} <= {200, 409} and any(a.status_code == 200 for a in answers)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages") == 1
