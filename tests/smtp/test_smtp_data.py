"""DATA: acceptance end to end, content checks, headers added/stripped, DKIM signing last, one
transaction, and "nothing stored, nothing charged" on every refusal."""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import uuid

import aiosmtplib
import dkim as dkimpy
import pytest

from mailtrap_smtp import dkim
from mailtrap_smtp.signing import key_aad
from mailtrap_smtp.store import domains
from tests.smtp_util import SENDER, Env, RawClient, message, reply_line, use_quota


async def send_aiosmtplib(env: Env, raw: bytes, rcpts: list[str], *, sender: str = SENDER) -> str:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=env.port, tls_context=env.ssl_context, start_tls=True)
    await client.connect()
    try:
        await client.login("api", env.token)
        _errors, resp = await client.sendmail(sender, rcpts, raw)
        return resp
    finally:
        await client.quit()


async def open_data(env: Env, rcpts: tuple[str, ...] = ("a@dest.test",)) -> RawClient:
    c = env.raw()
    await c.connect()
    assert await c.login(env.token) == reply_line("AUTH_OK")
    assert await c.cmd(f"MAIL FROM:<{SENDER}>") == reply_line("SENDER_OK")
    for r in rcpts:
        assert await c.cmd(f"RCPT TO:<{r}>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("DATA") == reply_line("START_DATA")
    return c


async def test_accept_stores_message_recipients_and_usage(smtp: Env) -> None:
    resp = await send_aiosmtplib(smtp, message(), ["a@dest.test", "b@dest.test"])
    assert resp.startswith("2.0.0 Ok: queued as ")
    msg_id = uuid.UUID(resp.rsplit(" ", 1)[1])
    row = await smtp.pool.fetchrow("SELECT * FROM messages WHERE id = $1", msg_id)
    assert row["mail_from"] == SENDER and row["header_from"] == SENDER and row["subject"] == "Hello"
    assert row["stream"] == "transactional" and str(row["client_ip"]) == "127.0.0.1"
    raw = bytes(row["raw"])
    assert raw.startswith(
        b"Received: from localhost ([127.0.0.1])\r\n\tby mx.service.test (mailtrap-smtp) with ESMTPSA")
    assert b"\r\nDate: " in raw and f"\r\nMessage-ID: <{msg_id}@mx.service.test>\r\n".encode() in raw
    assert row["message_id_header"] == f"<{msg_id}@mx.service.test>"
    assert await smtp.counts() == {"messages": 1, "recipients": 2, "used": 2, "events": 1}


async def test_smtplib_implicit_tls(smtp: Env) -> None:
    # smtplib blocks: run it in a thread while the service runs on this loop.
    def run() -> dict:
        with smtplib.SMTP_SSL("127.0.0.1", smtp.implicit_port, context=smtp.ssl_context, timeout=10) as s:
            s.login("smtp@mailtrap.io", smtp.token)
            return s.sendmail(SENDER, ["x@dest.test"], message(body="..leading dots\r\n.x"))

    assert await asyncio.to_thread(run) == {}
    raw = bytes(await smtp.pool.fetchval("SELECT raw FROM messages"))
    assert raw.endswith(b"\r\n\r\n..leading dots\r\n.x\r\n")  # dot-stuffing undone exactly once


async def test_existing_headers_kept_and_x_mt_headers_stripped(smtp: Env) -> None:
    extra = ("Message-ID: <mine@client.test>\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\n"
             "X-MT-Category: Password reset\r\nX-MT-Custom-Variables: {\"user_id\": \"45982\",\r\n \"batch\": 1}\r\n")
    await send_aiosmtplib(smtp, message(extra=extra), ["a@dest.test"])
    row = await smtp.pool.fetchrow("SELECT * FROM messages")
    raw = bytes(row["raw"])
    assert row["category"] == "Password reset"
    assert json.loads(row["custom_variables"]) == {"user_id": "45982", "batch": 1}
    assert row["message_id_header"] == "<mine@client.test>"
    assert b"X-MT-" not in raw and raw.count(b"Message-ID:") == 1 and raw.count(b"\r\nDate:") == 1


async def test_oversized_custom_variables_are_ignored(smtp: Env) -> None:
    big = '{"a": "' + "v" * 600 + '",\r\n "b": "' + "w" * 600 + '"}'  # valid JSON, folded, > 1000 bytes
    await send_aiosmtplib(smtp, message(extra=f"X-MT-Custom-Variables: {big}\r\nX-MT-Category: c\r\n"), ["a@dest.test"])
    row = await smtp.pool.fetchrow("SELECT * FROM messages")
    assert row["custom_variables"] is None and row["category"] == "c"
    assert b"X-MT-" not in bytes(row["raw"])


FROM_CASES = [
    ("no From", b"To: a@dest.test\r\n\r\nno from\r\n", "FROM_HEADER_COUNT"),
    ("two From", b"From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n", "FROM_HEADER_COUNT"),
    ("empty message", b"", "FROM_HEADER_COUNT"),
    ("other domain", b"From: a@other.test\r\n\r\nx\r\n", "FROM_HEADER_MISMATCH"),
    ("subdomain", b"From: a@sub.example.com\r\n\r\nx\r\n", "FROM_HEADER_MISMATCH"),
    ("two addresses", b"From: a@example.com, b@example.com\r\n\r\nx\r\n", "FROM_HEADER_MISMATCH"),
    ("not an address", b"From: not an address\r\n\r\nx\r\n", "FROM_HEADER_MISMATCH"),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in FROM_CASES], ids=[c[0] for c in FROM_CASES])
async def test_from_header_policy(smtp: Env, body: bytes, expected: str) -> None:
    c = await open_data(smtp)
    await c.send(body + b".\r\n")
    assert await c.reply() == reply_line(expected)
    assert reply_line(expected) == {
        "FROM_HEADER_COUNT": "550 5.6.0 Message must have exactly one From: header",
        "FROM_HEADER_MISMATCH": "550 5.7.1 From: Header does not match the sender's domain"}[expected]
    c.writer.close()
    await smtp.assert_nothing_stored()


async def test_from_on_another_sending_domain_of_the_account(smtp: Env) -> None:
    await domains.create(smtp.pool, smtp.account.id, "second.test", verification_token="t", dns_skipped=True)
    c = await open_data(smtp)
    # Another sending domain of the same account is fine, case-insensitively.
    await c.send(b"From: \"X\" <a@SECOND.test>\r\n\r\nx\r\n.\r\n")
    assert (await c.reply()).startswith("250 2.0.0 Ok: queued as ")
    c.writer.close()


async def test_oversized_message_rejected_after_final_dot(smtp_factory) -> None:
    env = await smtp_factory(account={"max_message_size": 2000})
    c = await open_data(env)
    await c.send(message(body="x" * 70 + "\r\n") * 1 + (b"y" * 70 + b"\r\n") * 100 + b".\r\n")
    assert await c.reply() == reply_line("SIZE_EXCEEDED")
    await env.assert_nothing_stored()
    # The session goes on and a message within the limit is accepted.
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
        await c.cmd(line)
    await c.send(message() + b".\r\n")
    assert (await c.reply()).startswith("250 2.0.0 ")
    c.writer.close()


async def test_long_text_line_rejected(smtp: Env) -> None:
    c = await open_data(smtp)
    await c.send(message(body="z" * 999) + b".\r\n")
    assert await c.reply() == reply_line("TEXT_LINE_TOO_LONG")
    await smtp.assert_nothing_stored()
    c.writer.close()


async def test_pipelined_transaction(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    await c.login(smtp.token)
    await c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@dest.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
    assert [await c.reply() for _ in range(4)] == [
        reply_line("SENDER_OK"), reply_line("RECIPIENT_OK"), reply_line("RECIPIENT_OK"), reply_line("START_DATA")]
    await c.send(message() + b".\r\nNOOP\r\n")
    assert (await c.reply()).startswith("250 2.0.0 Ok: queued as ")
    assert await c.reply() == reply_line("NOOP_OK")
    assert (await smtp.counts())["recipients"] == 2
    c.writer.close()


async def test_dkim_signed_last(smtp_factory) -> None:
    kek = os.urandom(32)
    env = await smtp_factory(kek=kek)
    dom = await domains.get_by_name(env.pool, "example.com")
    pem, pub = dkim.generate_key(dkim.RSA_SHA256)
    await domains.add_key(env.pool, dom["id"], selector="s1", algorithm=dkim.RSA_SHA256,
                          private_key_enc=dkim.encrypt_private_key(kek, pem, key_aad("example.com", "s1")),
                          public_key=pub, state="active")
    await send_aiosmtplib(env, message(extra="X-MT-Category: welcome\r\n"), ["a@dest.test"])
    raw = bytes(await env.pool.fetchval("SELECT raw FROM messages"))
    assert raw.startswith(b"DKIM-Signature: ")
    txt = dkim.dns_txt_value(dkim.RSA_SHA256, pub).encode()
    assert dkimpy.verify(raw, dnsfunc=lambda name, timeout=5: txt if name == b"s1._domainkey.example.com." else None)


class FailingSigner:
    async def sign(self, message: bytes, domain: str) -> bytes:
        raise RuntimeError("secret internal detail")


async def test_failure_before_commit_gives_451_and_stores_nothing(smtp_factory) -> None:
    env = await smtp_factory(signer=FailingSigner())
    c = await open_data(env)
    await c.send(message() + b".\r\n")
    reply = await c.reply()
    assert reply == reply_line("TEMPORARY_FAILURE") and "secret" not in reply
    await env.assert_nothing_stored()
    c.writer.close()


async def test_quota_exceeded_at_commit(smtp_factory) -> None:
    env = await smtp_factory(account={"monthly_limit": 2})
    c = await open_data(env, ("a@dest.test", "b@dest.test"))
    # Another session takes one recipient of the quota between RCPT and the end of DATA.
    await use_quota(env.pool, env.account.id, 1)
    await c.send(message() + b".\r\n")
    assert await c.reply() == "535 5.7.0 Monthly messages limit reached"
    assert await env.counts() == {"messages": 0, "recipients": 0, "used": 1, "events": 0}
    c.writer.close()


async def test_messages_per_connection(smtp_factory) -> None:
    env = await smtp_factory(limits={"messages_per_connection": 2})
    c = env.raw()
    await c.connect()
    await c.login(env.token)
    for _ in range(2):
        for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
            await c.cmd(line)
        await c.send(message() + b".\r\n")
        assert (await c.reply()).startswith("250 2.0.0 ")
    assert await c.cmd(f"MAIL FROM:<{SENDER}>") == reply_line("TOO_MANY_MESSAGES")
    assert await c.closed()


async def test_large_message_in_odd_pieces(smtp: Env) -> None:
    import random

    rnd = random.Random(7)
    lines = [b"From: <" + SENDER.encode() + b">", b"Subject: big", b""]
    alphabet = b"abc.\t " * 40
    for i in range(40_000):  # ~3 MB, with dot-stuffed lines and lines that look like terminators
        start = rnd.randrange(0, 100)
        lines.append(b"." * (i % 3) + alphabet[start:start + rnd.randrange(0, 120)])
    wire_lines = [(b"." + line) if line.startswith(b".") else line for line in lines]
    wire = b"\r\n".join(wire_lines) + b"\r\n.\r\n"
    c = await open_data(smtp)
    pos = 0
    while pos < len(wire):
        step = rnd.choice((1, 2, 3, 5, 4096, 70_000, 300_000, 300_000, 300_000))
        c.writer.write(wire[pos:pos + step])
        pos += step
        if step < 10:
            await c.writer.drain()
            await asyncio.sleep(0)
    await c.writer.drain()
    assert (await c.reply(timeout=20)).startswith("250 2.0.0 Ok: queued as ")
    raw = bytes(await smtp.pool.fetchval("SELECT raw FROM messages"))
    assert raw.endswith(b"\r\n".join(lines[3:]) + b"\r\n")
    c.writer.close()


async def test_group_commit_announcements_are_always_settled(smtp_factory) -> None:
    # Every DATA announces its message to the group commit (so a batch may wait for it); whatever
    # happens to the message, the announcement must be settled, or later batches would keep waiting.
    env = await smtp_factory(account={"max_message_size": 2000}, smtp={"max_errors": 100})
    batcher = env.service.submission._batcher
    c = await open_data(env)
    cases = [
        (message() + b".\r\n", "250 2.0.0 Ok: queued as "),  # accepted
        (b"From: a@other.test\r\n\r\nx\r\n.\r\n", reply_line("FROM_HEADER_MISMATCH")),  # refused by checks
        ((b"y" * 70 + b"\r\n") * 100 + b".\r\n", reply_line("SIZE_EXCEEDED")),  # refused while reading
    ]
    for body, expected in cases:
        await c.send(body)
        assert (await c.reply()).startswith(expected)
        for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
            await c.cmd(line)
    c.writer.close()  # and a client that disconnects in the middle of DATA
    for _ in range(100):
        if batcher._expected == 0:
            break
        await asyncio.sleep(0.01)
    assert batcher._expected == 0
    assert (await env.counts())["messages"] == 1
