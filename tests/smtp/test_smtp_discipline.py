"""Protocol discipline (RFC 5321, 3207, 2920, 3030): each case asserts the exact reply, whether the
session was closed, and that nothing was stored or charged."""

from __future__ import annotations

import pytest

from tests.smtp_util import SENDER, Env, authed, message, reply_line

ENVELOPE = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@dest.test>\r\n"


@pytest.mark.parametrize("command", [f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA", "AUTH PLAIN AGFwaQB4"])
async def test_after_starttls_the_client_must_ehlo_again(smtp: Env, command: str) -> None:
    c = smtp.raw()
    await c.connect()
    await c.cmd("EHLO client.test")
    await c.starttls()
    assert await c.cmd(command) == reply_line("EHLO_FIRST") == "503 5.5.1 Send EHLO first"
    assert (await c.cmd("EHLO client.test")).startswith("250-mx.service.test\n")
    c.writer.close()
    await smtp.assert_nothing_stored()


async def test_implicit_tls_session_must_ehlo_before_mail(smtp: Env) -> None:
    c = smtp.raw(implicit=True)
    await c.connect()
    assert await c.cmd(f"MAIL FROM:<{SENDER}>") == reply_line("EHLO_FIRST")
    c.writer.close()


@pytest.mark.parametrize(("burst", "replies_before"), [
    # The message right behind DATA, before the 354 (no PIPELINING needed for that).
    ("DATA\r\n" + message().decode() + ".\r\n", []),
    # DATA not the last command of a pipelined group (RFC 2920 §3.1).
    (ENVELOPE + "DATA\r\nNOOP\r\n", ["SENDER_OK", "RECIPIENT_OK"]),
    (ENVELOPE + "DATA\r\n" + message().decode() + ".\r\nQUIT\r\n", ["SENDER_OK", "RECIPIENT_OK"]),
], ids=["data-right-behind-DATA", "command-after-DATA", "whole-transaction-in-one-write"])
async def test_data_before_354_is_improper_pipelining(smtp: Env, burst: str, replies_before: list[str]) -> None:
    c = await authed(smtp)
    if not replies_before:
        for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>"):
            await c.cmd(line)
    await c.send(burst)
    for name in replies_before:
        assert await c.reply() == reply_line(name)
    assert await c.reply() == reply_line("IMPROPER_PIPELINING") == (
        "554 5.5.0 Improper use of SMTP command pipelining: closing connection")
    assert await c.closed()
    await smtp.assert_nothing_stored()


async def test_improper_pipelining_without_esmtp(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    await c.cmd("HELO client.test")
    await c.starttls()
    await c.cmd("HELO client.test")
    await c.send("DATA\r\nFrom: x\r\n")
    assert await c.reply() == reply_line("IMPROPER_PIPELINING")
    assert await c.closed()


async def test_pipelined_group_ending_in_data_is_fine(smtp: Env) -> None:
    c = await authed(smtp)
    await c.send(ENVELOPE + "DATA\r\n")
    assert [await c.reply() for _ in range(3)] == [reply_line("SENDER_OK"), reply_line("RECIPIENT_OK"),
                                                  reply_line("START_DATA")]
    await c.send(message() + b".\r\n")
    assert (await c.reply()).startswith("250 2.0.0 Ok: queued as ")
    c.writer.close()


@pytest.mark.parametrize("first", ["GET / HTTP/1.1", "POST /login HTTP/1.0", "HEAD / HTTP/1.1", "PUT /x HTTP/1.1",
                                   "CONNECT mx.example:25 HTTP/1.1", "get / HTTP/1.1"])
async def test_http_request_closes_at_once(smtp: Env, first: str) -> None:
    c = smtp.raw()
    await c.connect()
    await c.send(first + "\r\nHost: mx.service.test\r\n\r\n")
    assert await c.reply() == reply_line("NON_SMTP_COMMAND") == (
        "221 2.7.0 Error: not an SMTP command: closing connection")
    assert await c.closed()


@pytest.mark.parametrize("verb", ["NOOP", "RSET", "VRFY a", "HELP"])
async def test_junk_command_limit(smtp: Env, verb: str) -> None:
    c = smtp.raw(implicit=True)
    await c.connect()
    await c.send(f"{verb}\r\n" * 100)  # Postfix's default: 100 are fine
    expected = reply_line({"NOOP": "NOOP_OK", "RSET": "RESET_OK", "VRFY": "VRFY", "HELP": "HELP"}[verb.split()[0]])
    for _ in range(100):
        assert await c.reply() == expected
    assert await c.cmd(verb) == reply_line("TOO_MANY_JUNK_COMMANDS") == (
        "421 4.7.0 Too many NOOP, RSET, VRFY or HELP commands: closing connection")
    assert await c.closed()


async def test_junk_count_starts_again_after_each_accepted_message(smtp_factory) -> None:
    env = await smtp_factory(smtp={"junk_command_limit": 3})
    c = await authed(env)
    for _ in range(2):
        for _ in range(3):
            assert await c.cmd("RSET") == reply_line("RESET_OK")
        for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
            await c.cmd(line)
        await c.send(message() + b".\r\n")
        assert (await c.reply()).startswith("250 2.0.0 Ok: queued as ")
    for verb in ("NOOP", "VRFY x", "HELP"):
        await c.cmd(verb)
    assert await c.cmd("RSET") == reply_line("TOO_MANY_JUNK_COMMANDS")
    assert await c.closed()
    assert (await env.counts())["messages"] == 2
