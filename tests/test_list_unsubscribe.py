"""RFC 8058 one-click unsubscribe, end to end: a bulk message submitted over SMTP (smtplib, STARTTLS)
carries DKIM-signed List-Unsubscribe headers; the HTTPS POST records an `unsubscribe` event, the
outbox consumer an `unsubscription` suppression, and the next message to the address is rejected."""

from __future__ import annotations

import asyncio
import json
import os
import re
import smtplib
import uuid
from dataclasses import dataclass
from typing import Any

import dkim as dkimpy
import httpx
import pytest

from mailtrap_smtp import dkim, outbox
from mailtrap_smtp.app import http_service
from mailtrap_smtp.consumers.auto_suppressions import AutoSuppressions
from mailtrap_smtp.core import accounts as accounts_core
from mailtrap_smtp.core import event_names
from mailtrap_smtp.delivery import verp
from mailtrap_smtp.http.server import HttpService
from mailtrap_smtp.signing import KeyStore, key_aad
from mailtrap_smtp.store import domains
from tests.smtp_util import SENDER, Env, message

PUBLIC_HOST = "api.service.test:8443"
RCPT = "sub@dest.test"
URL = re.compile(rb"List-Unsubscribe: <https://api\.service\.test:8443/unsubscribe/([a-z2-7]{64})>\r\n")
POST_HEADER = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
NOT_FOUND = {"success": False, "errors": ["Not Found"]}


@dataclass
class World:
    smtp: Env
    api: HttpService
    dkim_txt: bytes

    @property
    def pool(self) -> Any:
        return self.smtp.pool

    def client(self) -> httpx.AsyncClient:
        base = f"https://127.0.0.1:{self.api.listeners[0].port}"
        return httpx.AsyncClient(base_url=base, verify=self.smtp.ssl_context, timeout=30)

    async def send(self, *rcpts: str, extra: str = "") -> bytes:
        """Submit over STARTTLS with smtplib (it blocks: a thread); the stored bytes."""
        def run() -> None:
            with smtplib.SMTP("127.0.0.1", self.smtp.port, timeout=10) as s:
                s.starttls(context=self.smtp.ssl_context)
                s.login("smtp@mailtrap.io", self.smtp.token)
                assert s.sendmail(SENDER, list(rcpts), message(to=", ".join(rcpts), extra=extra)) == {}
        await asyncio.to_thread(run)
        return bytes(await self.pool.fetchval("SELECT raw FROM messages ORDER BY created_at DESC, id LIMIT 1"))

    def verify(self, raw: bytes) -> bool:
        return bool(dkimpy.verify(raw, dnsfunc=lambda name, timeout=5: self.dkim_txt
                                  if name == b"s1._domainkey.example.com." else None))

    async def state(self) -> dict[str, Any]:
        """What the unsubscribe may have changed: its events and the suppressions."""
        return {
            "unsubscribe": await self.pool.fetchval("SELECT count(*) FROM events WHERE type = 'unsubscribe'"),
            "suppressions": [tuple(r) for r in await self.pool.fetch(
                "SELECT email, type, sending_stream FROM suppressions ORDER BY email")],
        }

    async def suppress(self) -> None:
        runner = outbox.OutboxRunner(self.pool, [AutoSuppressions()])
        await runner.run_once()
        await runner.run_once()


@pytest.fixture
async def world(smtp_factory: Any, pool: Any) -> Any:
    kek = os.urandom(32)
    http = {"listeners": [{"address": "127.0.0.1", "port": 3, "stream": "host"}], "public_host": PUBLIC_HOST}
    env = await smtp_factory(kek=kek, account={"stream": "bulk"}, http=http)
    dom = await domains.get_by_name(pool, "example.com")
    pem, pub = dkim.generate_key(dkim.RSA_SHA256)
    await domains.add_key(pool, dom["id"], selector="s1", algorithm=dkim.RSA_SHA256,
                          private_key_enc=dkim.encrypt_private_key(kek, pem, key_aad("example.com", "s1")),
                          public_key=pub, state="active")
    await accounts_core.set_list_unsubscribe(pool, "acme", True)
    api = http_service(env.cfg, pool, signer=KeyStore(pool, kek), kek=kek, port_override=0)
    await api.start()
    yield World(env, api, dkim.dns_txt_value(dkim.RSA_SHA256, pub).encode())
    await api.stop(1.0)


def token_of(raw: bytes) -> str:
    found = URL.search(raw)
    assert found is not None, raw[:2000]
    return found.group(1).decode()


def signed_names(raw: bytes) -> set[str]:
    sig = re.search(rb"DKIM-Signature:(.*?)\r\n(?! )", raw, re.S | re.I)
    assert sig is not None
    h = re.search(rb"h=([^;]+)", re.sub(rb"\s", b"", sig.group(1)))
    assert h is not None
    return {n.decode().lower() for n in h.group(1).split(b":")}


async def test_bulk_one_click_unsubscribes_and_suppresses(world: World) -> None:
    raw = await world.send(RCPT)
    token = token_of(raw)
    assert POST_HEADER in raw and raw.count(b"List-Unsubscribe:") == 1
    assert world.verify(raw)
    assert {"list-unsubscribe", "list-unsubscribe-post"} <= signed_names(raw)  # RFC 8058 §4
    async with world.client() as c:
        page = await c.get(f"/unsubscribe/{token}")  # what a link scanner does: nothing changes
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<form method="post">' in page.text and 'name="List-Unsubscribe" value="One-Click"' in page.text
        assert await world.state() == {"unsubscribe": 0, "suppressions": []}
        r = await c.post(f"/unsubscribe/{token}", **ONE_CLICK)
        assert r.status_code == 200
        again = await c.post(f"/unsubscribe/{token}", **ONE_CLICK)  # a retry: still unsubscribed, once
        assert again.status_code == 200
    await world.suppress()
    assert await world.state() == {"unsubscribe": 1, "suppressions": [(RCPT, "unsubscription", "bulk")]}
    ev = await world.pool.fetchrow("SELECT e.type, e.details, r.rcpt FROM events e JOIN recipients r "
                                   "ON r.id = e.recipient_id WHERE e.type = 'unsubscribe'")
    assert (ev["rcpt"], json.loads(ev["details"])) == (RCPT, {"source": "one_click"})
    assert event_names.spelling(ev["type"], {}) == event_names.UNSUBSCRIBE
    # The next bulk message to the address: accepted, its recipient rejected (Mailtrap's `reject`).
    await world.send(RCPT)
    nxt = await world.pool.fetchrow(
        "SELECT r.state, e.type, e.details FROM recipients r JOIN events e ON e.recipient_id = r.id "
        "WHERE e.type = 'suppressed'")
    assert nxt is not None and nxt["state"] == "rejected"
    assert event_names.spelling(nxt["type"], json.loads(nxt["details"])) == event_names.REJECT
    assert json.loads(nxt["details"])["reason"] == "Recipient in suppression list. Reason: unsubscription"


async def test_multipart_one_click_body(world: World) -> None:
    token = token_of(await world.send(RCPT))
    async with world.client() as c:
        r = await c.post(f"/unsubscribe/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200
    assert (await world.state())["unsubscribe"] == 1


def _forgeries(token: str, message_id: uuid.UUID, recipient_id: int) -> dict[str, str]:
    flipped = ("b" if token[10] == "a" else "a")
    return {
        "one character changed": token[:10] + flipped + token[11:],
        "MAC of another key": verp.unsubscribe_token(os.urandom(32), message_id, uuid.uuid4()),
        "VERP tag of the same message": verp.encode_tag(b"k" * 32, verp.Tag(message_id, recipient_id)),
        "truncated": token[:-1],
        "one character more": token + "a",
        "not base32": "!" * 64,
        "empty-ish": "x",
    }


@pytest.mark.parametrize("case", ["one character changed", "MAC of another key", "VERP tag of the same message",
                                  "truncated", "one character more", "not base32", "empty-ish"])
async def test_forged_token_is_404_and_records_nothing(world: World, case: str) -> None:
    token = token_of(await world.send(RCPT))
    row = await world.pool.fetchrow("SELECT id, message_id FROM recipients")
    forged = _forgeries(token, row["message_id"], row["id"])[case]
    async with world.client() as c:
        for r in (await c.post(f"/unsubscribe/{forged}", **ONE_CLICK), await c.get(f"/unsubscribe/{forged}")):
            assert (r.status_code, r.json()) == (404, NOT_FOUND)
    await world.suppress()
    assert await world.state() == {"unsubscribe": 0, "suppressions": []}


async def test_token_of_a_deleted_message_is_404(world: World) -> None:
    token = token_of(await world.send(RCPT))
    await world.pool.execute("DELETE FROM messages")
    async with world.client() as c:
        r = await c.post(f"/unsubscribe/{token}", **ONE_CLICK)
    assert (r.status_code, r.json()) == (404, NOT_FOUND)
    assert await world.state() == {"unsubscribe": 0, "suppressions": []}


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-www-form-urlencoded", b""),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=one-click"),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click&List-Unsubscribe=One-Click"),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click&&"),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=\xff"),
    ("application/json", b'{"List-Unsubscribe": "One-Click"}'),
    ("text/plain", b"List-Unsubscribe=One-Click"),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nOne-Click\r\n--b--\r\n'),
    ("multipart/form-data; boundary=b", b"List-Unsubscribe=One-Click"),
])
async def test_wrong_post_body_is_400_and_records_nothing(world: World, content_type: str, body: bytes) -> None:
    token = token_of(await world.send(RCPT))
    async with world.client() as c:
        r = await c.post(f"/unsubscribe/{token}", content=body, headers={"Content-Type": content_type})
    assert (r.status_code, r.json()) == (400, {"success": False, "errors": ["Body must be List-Unsubscribe=One-Click"]})
    await world.suppress()
    assert await world.state() == {"unsubscribe": 0, "suppressions": []}


async def test_no_header_on_transactional_stream(smtp_factory: Any, pool: Any) -> None:
    env = await smtp_factory(account={"stream": "transactional"}, http={"public_host": PUBLIC_HOST})
    await accounts_core.set_list_unsubscribe(pool, "acme", True)
    world = World(env, None, b"")  # type: ignore[arg-type]
    raw = await world.send(RCPT)
    assert b"List-Unsubscribe" not in raw


async def test_no_header_when_the_account_has_not_enabled_it(world: World) -> None:
    await accounts_core.set_list_unsubscribe(world.pool, "acme", False)
    assert b"List-Unsubscribe" not in await world.send(RCPT)


async def test_no_header_on_a_bulk_message_to_several_recipients(world: World) -> None:
    # One signed header cannot name each of several recipients (list_unsubscribe.py).
    raw = await world.send(RCPT, "other@dest.test")
    assert b"List-Unsubscribe" not in raw and world.verify(raw)


async def test_the_clients_own_list_unsubscribe_is_kept(world: World) -> None:
    own = "List-Unsubscribe: <mailto:unsub@example.com>\r\n"
    raw = await world.send(RCPT, extra=own)
    assert raw.count(b"List-Unsubscribe") == 1 and own.encode() in raw and world.verify(raw)


async def test_the_send_api_adds_the_headers_too(world: World) -> None:
    # The same Submission use case serves the API: a bulk send (Host "bulk.…") gets them as SMTP does.
    body = {"from": {"email": SENDER}, "to": [{"email": RCPT}], "subject": "s", "text": "t"}
    async with world.client() as c:
        r = await c.post("/api/send", json=body, headers={"Host": "bulk.api.service.test",
                                                         "Authorization": f"Bearer {world.smtp.token}"})
    assert r.status_code == 200, r.text
    raw = bytes(await world.pool.fetchval("SELECT raw FROM messages"))
    token = token_of(raw)
    assert POST_HEADER in raw and world.verify(raw)
    async with world.client() as c:
        assert (await c.post(f"/unsubscribe/{token}", **ONE_CLICK)).status_code == 200
    assert (await world.state())["unsubscribe"] == 1
