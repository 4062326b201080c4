"""BDAT (RFC 3030 CHUNKING) at submission, over real TLS and the real database.

A well-behaved chunking client (one chunk, several pipelined chunks, BDAT 0 LAST, a half-close after
LAST, idempotency, line ends) and every hostile framing: each asserts the exact reply, that the
chunk's octets were consumed and never run as commands (the smuggled MAIL/RCPT inside a chunk would
change the reply to the command after it), and that nothing was stored or charged.
"""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest

from mailtrap_smtp.smtp.chunking import parse, settle
from tests.delivery_util import wait_for
from tests.smtp_util import SENDER, Env, RawClient, authed, half_close, message, reply_line

QUEUED = "250 2.0.0 Ok: queued as "
# A chunk that, if it were ever read as commands, would start a transaction of its own.
SMUGGLED = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<victim@dest.test>\r\n".encode()


def complete(subject: str = "Hello", body: str = "Hi there.") -> bytes:
    """A message that needs no header added (Date, Message-ID), so it is stored as sent."""
    return message(subject=subject, body=body,
                   extra="Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n")


def bdat(chunk: bytes, *, last: bool = False) -> bytes:
    return b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk


async def begin(c: RawClient, rcpts: tuple[str, ...] = ("user@dest.test",)) -> None:
    assert await c.cmd(f"MAIL FROM:<{SENDER}>") == reply_line("SENDER_OK")
    for r in rcpts:
        assert await c.cmd(f"RCPT TO:<{r}>") == reply_line("RECIPIENT_OK")


async def stored(env: Env) -> list[bytes]:
    async with env.pool.acquire() as conn:
        return [bytes(r["raw"]) for r in await conn.fetch("SELECT raw FROM messages ORDER BY created_at")]


async def assert_not_smuggled(c: RawClient) -> None:
    """The discarded chunk (SMUGGLED) did not open a transaction: RCPT still needs a MAIL."""
    assert await c.cmd("RCPT TO:<other@dest.test>") == reply_line("NEED_MAIL")


# ------------------------------------------------------------------ pure parts

@pytest.mark.parametrize(("arg", "expected"), [
    (b"10", (10, False, True)), (b"0 LAST", (0, True, True)), (b"7 last", (7, True, True)),
    (b"0010 LAST", (10, True, True)), (b"5 FIRST", (5, False, False)), (b"5 LAST x", (5, False, False)),
    (b"5 LASTX", (5, False, False)), (b"5 ", (5, False, False)),
])
def test_parse_readable_sizes(arg: bytes, expected: tuple[int, bool, bool]) -> None:
    got = parse(arg)
    assert got is not None and (got.size, got.last, got.well_formed) == expected


@pytest.mark.parametrize("arg", [b"", b"x", b"-5", b"+5", b"5.0", b"0x10", b" 5", b"1" * 21,
                                 "\uff15".encode(), b"5\tLAST"])
def test_parse_unreadable_sizes(arg: bytes) -> None:
    assert parse(arg) is None


def test_settle_normalizes_bare_lf_only_when_asked() -> None:
    assert settle(b"a\nb\r\n", normalize=True) == b"a\r\nb\r\n"
    assert settle(b"a\nb\r\n", normalize=False) == b"a\nb\r\n"
    assert settle(b".\r\n..x\r\n", normalize=True) == b".\r\n..x\r\n"  # no dot-unstuffing in BDAT


# ------------------------------------------------------------------ well-behaved clients

async def test_ehlo_offers_chunking_after_tls_only(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    assert "CHUNKING" not in await c.cmd("EHLO client.test")
    await c.starttls()
    lines = [line[4:] for line in (await c.cmd("EHLO client.test")).split("\n")]
    assert "CHUNKING" in lines and "BINARYMIME" not in lines
    c.close()


async def test_one_chunk_is_stored_as_sent(smtp: Env) -> None:
    # Dots are data in BDAT: a lone "." line and a leading ".." reach the store untouched.
    msg = complete(body="line one\r\n.\r\n..two\r\n" + "x" * 900 + "\r\n") + SMUGGLED
    c = await authed(smtp)
    await begin(c)
    await c.send(bdat(msg, last=True))
    assert (await c.reply()).startswith(QUEUED)
    assert await c.cmd("NOOP") == reply_line("NOOP_OK")
    (raw,) = await stored(smtp)
    assert raw.endswith(msg) and raw.startswith(b"Received: from client.test ")
    assert await smtp.counts() == {"messages": 1, "recipients": 1, "used": 1, "events": 1}
    c.close()


async def test_pipelined_chunks_make_one_message(smtp: Env) -> None:
    # RFC 3030 §4.2: the whole transaction in one write; chunk edges inside a CRLF and a header.
    msg = complete(body="y" * 900 + "\r\n" + "y" * 900)
    cr = msg.index(b"\r\n") + 1
    parts = [msg[:cr], msg[cr:100], msg[100:]]
    wire = (f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@dest.test>\r\nRCPT TO:<b@dest.test>\r\n").encode()
    wire += bdat(parts[0]) + bdat(parts[1]) + bdat(parts[2]) + bdat(b"", last=True) + b"NOOP\r\n"
    c = await authed(smtp)
    await c.send(wire)
    got = [await c.reply() for _ in range(8)]
    assert got[:6] == [reply_line("SENDER_OK"), reply_line("RECIPIENT_OK"), reply_line("RECIPIENT_OK"),
                       reply_line("BDAT_CHUNK_OK", size=len(parts[0])),
                       reply_line("BDAT_CHUNK_OK", size=len(parts[1])),
                       reply_line("BDAT_CHUNK_OK", size=len(parts[2]))]
    assert got[6].startswith(QUEUED) and got[7] == reply_line("NOOP_OK")
    assert reply_line("BDAT_CHUNK_OK", size=12) == "250 2.0.0 Ok: 12 octets received"
    (raw,) = await stored(smtp)
    assert raw.endswith(msg)
    assert await smtp.counts() == {"messages": 1, "recipients": 2, "used": 2, "events": 1}
    c.close()


async def test_smtplib_sends_chunks(smtp: Env) -> None:
    # The standard library's client: EHLO, STARTTLS, AUTH and the envelope through its API; the
    # chunks through its public send()/getreply(), as a program adding BDAT to smtplib would.
    msg = complete(body="\r\n".join(f"line {i}" for i in range(500)))

    def client() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as s:
            s.starttls(context=smtp.ssl_context)
            s.login("api", smtp.token)
            assert s.has_extn("chunking") and s.has_extn("pipelining")
            s.mail(SENDER)
            s.rcpt("user@dest.test")
            cut = len(msg) // 3
            s.send(bdat(msg[:cut]) + bdat(msg[cut:], last=True))
            return [s.getreply(), s.getreply()]

    chunk, final = await asyncio.to_thread(client)
    assert chunk == (250, f"2.0.0 Ok: {len(msg) // 3} octets received".encode())
    assert final[0] == 250 and final[1].startswith(b"2.0.0 Ok: queued as ")
    (raw,) = await stored(smtp)
    assert raw.endswith(msg)


async def test_bdat_and_data_transactions_share_a_session(smtp: Env) -> None:
    c = await authed(smtp)
    await begin(c)
    await c.send(bdat(message(subject="by bdat"), last=True))
    assert (await c.reply()).startswith(QUEUED)
    await begin(c)
    assert (await c.cmd("DATA")).startswith("354 ")
    await c.send(message(subject="by data") + b".\r\n")
    assert (await c.reply()).startswith(QUEUED)
    assert await smtp.counts() == {"messages": 2, "recipients": 2, "used": 2, "events": 2}
    c.close()


async def test_idempotency_key_holds_across_bdat_and_data(smtp: Env) -> None:
    msg = message(extra="X-Idempotency-Key: bdat-1\r\n")
    c = await authed(smtp)
    await begin(c)
    await c.send(bdat(msg, last=True))
    first = await c.reply()
    await begin(c)
    await c.send(bdat(msg[:10]) + bdat(msg[10:], last=True))
    assert await c.reply() == reply_line("BDAT_CHUNK_OK", size=10)
    assert await c.reply() == first
    await begin(c)
    assert (await c.cmd("DATA")).startswith("354 ")
    await c.send(msg + b".\r\n")
    assert await c.reply() == first and first.startswith(QUEUED)
    assert await smtp.counts() == {"messages": 1, "recipients": 1, "used": 1, "events": 1}
    c.close()


async def test_half_close_after_last_chunk_keeps_the_message(smtp: Env) -> None:
    c = await authed(smtp)
    await begin(c)
    await c.send(bdat(message()[:20]) + bdat(message()[20:], last=True))
    half_close(c)
    assert await c.reply() == reply_line("BDAT_CHUNK_OK", size=20)
    assert (await c.reply()).startswith(QUEUED)  # our write side stays open (smtp/halfclose.py)
    assert await c.closed()
    assert await smtp.counts() == {"messages": 1, "recipients": 1, "used": 1, "events": 1}


async def test_rset_between_chunks_discards_the_partial_message(smtp: Env) -> None:
    c = await authed(smtp)
    await begin(c)
    await c.send(bdat(b"From: <" + SENDER.encode() + b">\r\nSubject: partial\r\n"))
    assert await c.reply() == reply_line("BDAT_CHUNK_OK", size=43)
    assert await c.cmd("RSET") == reply_line("RESET_OK")
    await c.send(bdat(b"more\r\n", last=True))
    assert await c.reply() == reply_line("NEED_MAIL")
    await begin(c)
    await c.send(bdat(complete(subject="whole"), last=True))
    assert (await c.reply()).startswith(QUEUED)
    (raw,) = await stored(smtp)
    assert b"partial" not in raw and raw.endswith(complete(subject="whole"))
    c.close()


async def test_bare_lf_in_bdat_is_stored_as_crlf(smtp: Env) -> None:
    # The same line-end policy as DATA (smtp.bare_newline = "normalize"): stored, signed and relayed
    # with CRLF only.
    c = await authed(smtp)
    await begin(c)
    await c.send(bdat(complete().replace(b"\r\n", b"\n"), last=True))
    assert (await c.reply()).startswith(QUEUED)
    (raw,) = await stored(smtp)
    assert raw.endswith(complete()) and raw.count(b"\n") == raw.count(b"\r\n")
    c.close()


# ------------------------------------------------------------------ hostile framing

@pytest.mark.parametrize(("setup", "chunk", "expected"), [
    ("none", SMUGGLED, "NEED_MAIL"),
    ("mail", SMUGGLED, "NEED_RCPT"),
    ("rcpt", b"x" * 3000, "SIZE_EXCEEDED"),                      # one chunk over the account's 2000
    ("rcpt", b"From: <a@example.com>\r\n\r\nhi\r\n", "BDAT_SYNTAX"),  # bad end marker (below)
], ids=["no-mail", "no-rcpt", "over-size", "bad-end-marker"])
async def test_refused_chunk_is_consumed_then_refused(smtp_factory: Any, setup: str, chunk: bytes,
                                                      expected: str) -> None:
    env = await smtp_factory(account={"max_message_size": 2000})
    c = await authed(env)
    if setup != "none":
        assert await c.cmd(f"MAIL FROM:<{SENDER}>") == reply_line("SENDER_OK")
    if setup == "rcpt":
        assert await c.cmd("RCPT TO:<a@dest.test>") == reply_line("RECIPIENT_OK")
    marker = b" FIRST" if expected == "BDAT_SYNTAX" else b" LAST"
    await c.send(b"BDAT %d%s\r\n" % (len(chunk), marker) + chunk)
    assert await c.reply() == reply_line(expected)
    await assert_not_smuggled(c)  # consumed, not run; and the failed transaction is gone
    assert await c.cmd("NOOP") == reply_line("NOOP_OK")
    await env.assert_nothing_stored()
    c.close()


async def test_total_across_chunks_is_limited(smtp_factory: Any) -> None:
    env = await smtp_factory(account={"max_message_size": 2000})
    c = await authed(env)
    await begin(c)
    # Pipelined after the refused chunk: a LAST chunk that must be discarded too (RFC 3030 §2).
    await c.send(bdat(b"a" * 1500) + bdat(b"b" * 501) + bdat(SMUGGLED, last=True))
    assert await c.reply() == reply_line("BDAT_CHUNK_OK", size=1500)
    assert await c.reply() == reply_line("SIZE_EXCEEDED") == (
        "552 5.3.4 Message size exceeds fixed maximum message size")
    assert await c.reply() == reply_line("NEED_MAIL")
    await assert_not_smuggled(c)
    await env.assert_nothing_stored()
    c.close()


async def test_exactly_the_limit_is_accepted(smtp_factory: Any) -> None:
    env = await smtp_factory(account={"max_message_size": 2000})
    msg = message(body="z" * 500)
    msg += b"z" * 500 + b"\r\n" + b"z" * (2000 - len(msg) - 504) + b"\r\n"
    assert len(msg) == 2000
    c = await authed(env)
    await begin(c)
    await c.send(bdat(msg[:1000]) + bdat(msg[1000:], last=True))
    assert await c.reply() == reply_line("BDAT_CHUNK_OK", size=1000)
    # At the limit by the chunks' count; submission then adds its Received header to what it stores.
    assert (await c.reply()).startswith(QUEUED)
    c.close()


UNREADABLE = [b"BDAT", b"BDAT x LAST", b"BDAT -5 LAST", b"BDAT +5", b"BDAT 5.0", b"BDAT 0x10 LAST",
              b"BDAT  5 LAST", b"BDAT " + b"9" * 21 + b" LAST", "BDAT \uff15 LAST".encode(),
              b"BDAT 5\x00 LAST", b"BDAT 5 LAST" + b" " * 600, b"BDAT 5 LAST" + b" " * 20000,
              b"bdat 5\rRSET"]


@pytest.mark.parametrize("line", UNREADABLE, ids=[repr(v[:30]) for v in UNREADABLE])
async def test_unreadable_chunk_size_replies_and_closes(smtp: Env, line: bytes) -> None:
    c = await authed(smtp)
    await begin(c)
    await c.send(line + b"\r\n" + SMUGGLED + b"BDAT 5 LAST\r\nhello")
    assert await c.reply() == reply_line("BDAT_BAD_SIZE") == (
        "501 5.5.4 Syntax: BDAT chunk-size [LAST]: unreadable chunk size, closing connection")
    assert await c.closed()  # what followed was never read as commands
    await smtp.assert_nothing_stored()


async def test_bare_lf_bdat_line_closes_in_reject_mode(smtp_factory: Any) -> None:
    env = await smtp_factory(smtp={"bare_newline": "reject"})
    c = await authed(env)
    await begin(c)
    await c.send(b"BDAT 5 LAST\nhello")
    assert await c.reply() == reply_line("BDAT_BAD_SIZE")
    assert await c.closed()
    await env.assert_nothing_stored()


@pytest.mark.parametrize("when", ["before-tls", "helo-after-tls", "before-ehlo-after-tls"])
async def test_bdat_where_chunking_was_not_offered_closes(smtp: Env, when: str) -> None:
    c = smtp.raw()
    await c.connect()
    if when == "before-tls":
        await c.cmd("EHLO client.test")
    else:
        await c.cmd("EHLO client.test")
        await c.starttls()
        if when == "helo-after-tls":
            await c.cmd("HELO client.test")
    await c.send(bdat(SMUGGLED, last=True))
    assert await c.reply() == reply_line("BDAT_NOT_SUPPORTED")
    assert await c.closed()
    await smtp.assert_nothing_stored()


async def test_bdat_before_auth_is_consumed_then_refused(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    await c.cmd("EHLO client.test")
    await c.starttls()
    await c.cmd("EHLO client.test")
    await c.send(bdat(SMUGGLED, last=True) + b"NOOP\r\n")
    assert await c.reply() == reply_line("AUTH_REQUIRED")
    assert await c.reply() == reply_line("NOOP_OK")
    await smtp.assert_nothing_stored()
    c.close()


async def test_bdat_before_auth_larger_than_size_closes(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    await c.cmd("EHLO client.test")
    await c.starttls()
    await c.cmd("EHLO client.test")
    await c.send(b"BDAT %d LAST\r\n" % (smtp.cfg.limits.message_size + 1) + SMUGGLED)
    assert await c.reply() == reply_line("AUTH_REQUIRED")
    assert await c.closed()
    await smtp.assert_nothing_stored()


async def test_bdat_0_last_alone_is_an_empty_message(smtp: Env) -> None:
    # A valid command (RFC 3030 §2): the message it ends is empty, so it has no From: header.
    c = await authed(smtp)
    await begin(c)
    await c.send(b"BDAT 0 LAST\r\n")
    assert await c.reply() == reply_line("FROM_HEADER_COUNT")
    assert await c.cmd("NOOP") == reply_line("NOOP_OK")
    await smtp.assert_nothing_stored()
    c.close()


async def test_data_after_bdat_is_refused(smtp: Env) -> None:
    c = await authed(smtp)
    await begin(c)
    await c.send(bdat(message()[:30]))
    assert await c.reply() == reply_line("BDAT_CHUNK_OK", size=30)
    assert await c.cmd("DATA") == reply_line("DATA_AFTER_BDAT") == (
        "503 5.5.1 DATA cannot follow BDAT in the same transaction")
    await c.send(bdat(message()[30:], last=True))
    assert await c.reply() == reply_line("NEED_MAIL")  # the transaction was dropped with its chunks
    await smtp.assert_nothing_stored()
    c.close()


async def test_binarymime_is_not_accepted(smtp: Env) -> None:
    c = await authed(smtp)
    assert await c.cmd(f"MAIL FROM:<{SENDER}> BODY=BINARYMIME") == reply_line("BAD_PARAMETER")
    c.close()


@pytest.mark.parametrize("content", [b"\r\n.\r\nhello\r\n", b"a\rb\r\n", b"a\x00b\r\n"])
async def test_bare_cr_and_nul_in_bdat_are_refused(smtp: Env, content: bytes) -> None:
    # Message text (RFC 3030 without BINARYMIME): the same policy as DATA. A CRLF "." CRLF inside a
    # chunk is no terminator, only text (first case: accepted as one message).
    c = await authed(smtp)
    await begin(c)
    await c.send(bdat(message(body="x") + content + SMUGGLED, last=True))
    got = await c.reply()
    if b"\r\n.\r\n" in content:
        assert got.startswith(QUEUED)
        assert await smtp.counts() == {"messages": 1, "recipients": 1, "used": 1, "events": 1}
    else:
        assert got == reply_line("BARE_LINE_ENDING")
        await smtp.assert_nothing_stored()
    await assert_not_smuggled(c)
    c.close()


async def test_slow_chunk_is_cut_off_by_the_data_rate_floor(smtp_factory: Any) -> None:
    # A chunk announced far larger than what arrives, trickled: each read gets a byte before the
    # idle timeout, but the minimum data rate cuts it off (the size alone never makes us wait).
    env = await smtp_factory(smtp={"command_timeout_seconds": 0.5, "min_data_rate_bytes_per_second": 1000})
    c = await authed(env)
    await begin(c)
    await c.send(b"BDAT 99999999999999999999 LAST\r\n" + message())

    async def trickle() -> None:
        for _ in range(100):
            await c.send(b"x")
            await asyncio.sleep(0.1)

    task = asyncio.create_task(trickle())
    try:
        assert await c.reply(timeout=10) == reply_line("DATA_TOO_SLOW")
    finally:
        task.cancel()
    assert await c.closed()
    await env.assert_nothing_stored()


async def test_session_deadline_applies_to_chunk_reads(smtp_factory: Any) -> None:
    env = await smtp_factory(smtp={"session_deadline_seconds": 2.0, "min_data_rate_bytes_per_second": 0})
    c = await authed(env)
    await begin(c)
    await c.send(b"BDAT 5000 LAST\r\n" + b"x" * 10)
    assert await c.reply(timeout=10) == reply_line("SESSION_DEADLINE")
    assert await c.closed()
    await env.assert_nothing_stored()


async def test_disconnect_inside_a_chunk_stores_nothing(smtp: Env) -> None:
    c = await authed(smtp)
    await begin(c)
    await c.send(b"BDAT 5000 LAST\r\n" + message())
    await wait_for(lambda: _reading_a_chunk(smtp))
    c.close()
    await wait_for(lambda: not smtp.service._sessions)  # the session ended on the EOF
    await smtp.assert_nothing_stored()


def _reading_a_chunk(env: Env) -> bool:
    return any(s.chunks is not None for s in env.service._sessions)
