"""X-Idempotency-Key over SMTP: a repeat within 24 h gets the first `250 … queued as <id>` and
nothing is stored or charged; a refusal is not kept; an invalid key is refused; the API honours the
same header in its `headers` field, through the same use case."""

from __future__ import annotations

import aiosmtplib
import pytest

from tests import smtp_util
from tests.http_util import ApiEnv, minimal
from tests.smtp_util import SENDER, Env, message

smtp = smtp_util.smtp  # fixture
smtp_factory = smtp_util.smtp_factory  # fixture


async def _send(env: Env, raw: bytes) -> str:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=env.port, tls_context=env.ssl_context, start_tls=True)
    await client.connect()
    try:
        await client.login("api", env.token)
        try:
            _errors, resp = await client.sendmail(SENDER, ["a@dest.test", "b@dest.test"], raw)
        except aiosmtplib.SMTPDataError as e:
            return f"{e.code} {e.message}"
        return resp
    finally:
        await client.quit()


async def test_repeat_gets_the_first_reply_and_stores_nothing(smtp: Env) -> None:
    first = await _send(smtp, message(extra="X-Idempotency-Key: invoice-42\r\n"))
    again = await _send(smtp, message(extra="X-Idempotency-Key: invoice-42\r\n", body="changed"))
    other = await _send(smtp, message(extra="X-Idempotency-Key: invoice-43\r\n"))
    assert first.startswith("2.0.0 Ok: queued as ") and again == first and other != first
    assert await smtp.counts() == {"messages": 2, "recipients": 4, "used": 4, "events": 2}


async def test_a_refused_message_does_not_keep_its_key(api_factory) -> None:
    env: ApiEnv = await api_factory(account={"monthly_limit": 2})
    three = minimal(to=[{"email": f"r{i}@x.test"} for i in range(3)], headers={"X-Idempotency-Key": "k"})
    two = minimal(to=[{"email": f"r{i}@x.test"} for i in range(2)], headers={"X-Idempotency-Key": "k"})
    async with env.client() as c:
        refused = await c.post("/api/send", json=three, headers=env.auth())  # over the limit at the commit
        assert (refused.status_code, refused.json()["errors"]) == (403, ["Monthly messages limit reached"])
        async with env.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 0
        ok = await c.post("/api/send", json=two, headers=env.auth())  # the same key, now it fits
    assert ok.status_code == 200
    assert await env.counts() == {"messages": 1, "recipients": 2, "used": 2}


@pytest.mark.parametrize("header", ["X-Idempotency-Key: " + "x" * 257,
                                    "X-Idempotency-Key: a\r\nX-Idempotency-Key: b"])
async def test_invalid_keys_are_refused(smtp: Env, header: str) -> None:
    reply = await _send(smtp, message(extra=header + "\r\n"))
    assert reply == "550 5.6.0 X-Idempotency-Key must be 1 to 256 printable ASCII characters"
    await smtp.assert_nothing_stored()


async def test_api_headers_field_uses_the_same_key(api: ApiEnv) -> None:
    body = minimal(headers={"X-Idempotency-Key": "from-json"})
    async with api.client() as c:
        first = await c.post("/api/send", json=body, headers=api.auth())
        again = await c.post("/api/send", json=body, headers=api.auth())
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert await api.counts() == {"messages": 1, "recipients": 1, "used": 1}
