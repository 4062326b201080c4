"""Internationalised addresses in the send API's JSON: the same mailbox rule as SMTP
(`mailbox.py`), written as UTF-8 header fields (RFC 6532), U-label sender domains matched as
A-labels, and every hostile address a 400 in Mailtrap's shape with nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mailtrap_smtp.domains import normalize_domain
from mailtrap_smtp.store import domains
from tests.http_util import SENDER, ApiEnv, minimal


async def _send(api: ApiEnv, body: dict[str, Any] | bytes) -> Any:
    async with api.client() as c:
        if isinstance(body, bytes):  # JSON text httpx would not write (a lone surrogate escape)
            return await c.post("/api/send", content=body,
                                headers={**api.auth(), "Content-Type": "application/json"})
        return await c.post("/api/send", json=body, headers=api.auth())


async def _message(api: ApiEnv) -> Any:
    return await api.pool.fetchrow("SELECT mail_from, raw, smtputf8 FROM messages")


async def test_utf8_recipient_is_written_as_utf8_and_flagged(api: ApiEnv) -> None:
    r = await _send(api, minimal(to=[{"email": "j\u00f6rg@dest.test", "name": "J\u00f6rg"}],
                                 cc=[{"email": "\u7528\u6237@\u4f8b\u5b50.test"}]))
    assert r.status_code == 200, r.text
    row = await _message(api)
    raw = bytes(row["raw"])
    assert row["smtputf8"] is True
    assert "<j\u00f6rg@dest.test>\r\n".encode() in raw  # the address itself in UTF-8 (RFC 6532 §3.2)
    assert b"To: =?utf-8?" in raw  # the display name still an RFC 2047 encoded word
    assert "Cc: \u7528\u6237@\u4f8b\u5b50.test\r\n".encode() in raw
    rcpts = [x["rcpt"] for x in await api.pool.fetch("SELECT rcpt FROM recipients ORDER BY id")]
    assert rcpts == ["j\u00f6rg@dest.test", "\u7528\u6237@\u4f8b\u5b50.test"]


async def test_u_label_sender_domain_is_the_a_label_domain(api: ApiEnv) -> None:
    await domains.create(api.pool, api.account.id, normalize_domain("b\u00fccher.example"),
                         verification_token="t", dns_skipped=True)
    r = await _send(api, minimal(**{"from": {"email": "info@B\u00fccher.example"}}))
    assert r.status_code == 200, r.text
    row = await _message(api)
    assert row["mail_from"] == "info@B\u00fccher.example" and row["smtputf8"] is True


async def test_ascii_mail_is_not_flagged(api: ApiEnv) -> None:
    r = await _send(api, minimal(subject="Gr\u00fc\u00dfe", to=[{"email": "r@x.test", "name": "R\u00e9my"}]))
    assert r.status_code == 200, r.text
    row = await _message(api)
    assert row["smtputf8"] is False and bytes(row["raw"]).split(b"\r\n\r\n")[0].isascii()


HOSTILE = [
    ("lone-surrogate", "\\ud800@x.test"),
    ("nul", "a\\u0000b@x.test"),
    ("bidi-override", "\\u202eresu@x.test"),
    ("zero-width-space", "a\\u200bb@x.test"),
    ("no-break-space", "a\\u00a0b@x.test"),
    ("c1-control", "a\\u0085b@x.test"),
    ("local-66-octets-33-chars", "\\u00e9" * 33 + "@x.test"),
    ("domain-mixed-direction", "user@a\\u05d0.test"),
    ("domain-symbol", "user@i\\u2665.test"),
    ("dot-dot", "j\\u00f6..rg@x.test"),
]


@pytest.mark.parametrize("address", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
async def test_hostile_address_is_400_and_nothing_stored(api: ApiEnv, address: str) -> None:
    text = json.dumps(minimal()).replace('"r@x.test"', f'"{address}"').encode()
    assert address.encode() in text
    r = await _send(api, text)
    assert r.status_code == 400, r.text
    assert r.json() == {"success": False, "errors": ["'to' address is invalid"]}
    await api.assert_nothing_stored()


async def test_hostile_sender_is_400(api: ApiEnv) -> None:
    r = await _send(api, minimal(**{"from": {"email": "\u202e" + SENDER}}))
    assert r.status_code == 400 and r.json() == {"success": False, "errors": ["'from' address is invalid"]}
    await api.assert_nothing_stored()
