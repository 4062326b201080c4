"""RCPT TO: path syntax and RFC 5321 §4.5.3.1 lengths, recipient cap, duplicates, advisory quota."""

from __future__ import annotations

import pytest

from tests.smtp_util import Env, RawClient, reply_line, use_quota


async def in_transaction(env: Env) -> RawClient:
    c = env.raw()
    await c.connect()
    assert await c.login(env.token) == reply_line("AUTH_OK")
    assert await c.cmd("MAIL FROM:<app@example.com>") == reply_line("SENDER_OK")
    return c


RCPT_CASES = [
    ("user@dest.test", "RECIPIENT_OK"),
    ('"quoted user"@dest.test', "RECIPIENT_OK"),
    ("user@[192.0.2.1]", "RECIPIENT_OK"),
    ("user@[IPv6:2001:db8::1]", "RECIPIENT_OK"),
    ("a" * 64 + "@dest.test", "RECIPIENT_OK"),
    ("a" * 65 + "@dest.test", "RECIPIENT_TOO_LONG"),               # local part > 64
    ("u@" + ".".join(["a" * 63] * 3) + "." + "b" * 62, "RECIPIENT_TOO_LONG"),  # path > 256
    ("u@" + "a" * 64 + ".test", "RECIPIENT_SYNTAX"),               # label > 63
    ("user@-bad.test", "RECIPIENT_SYNTAX"),
    ("user@dest..test", "RECIPIENT_SYNTAX"),
    ("user.@dest.test", "RECIPIENT_SYNTAX"),
    ("user", "RECIPIENT_SYNTAX"),
    ("", "RECIPIENT_SYNTAX"),
    ("us\ter@dest.test", "RECIPIENT_SYNTAX"),
    ("us\x01er@dest.test", "BAD_CHARACTERS"),
    ("j\u00f6rg@dest.test", "SMTPUTF8_REQUIRED"),                   # MAIL did not declare SMTPUTF8
    ("user@[999.0.0.1]", "RECIPIENT_SYNTAX"),
]


@pytest.mark.parametrize(("rcpt", "expected"), RCPT_CASES, ids=[repr(c[0])[:40] for c in RCPT_CASES])
async def test_rcpt_syntax(smtp: Env, rcpt: str, expected: str) -> None:
    c = await in_transaction(smtp)
    assert await c.cmd(f"RCPT TO:<{rcpt}>") == reply_line(expected)
    c.writer.close()


async def test_rcpt_parameters_and_sequence(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    await c.login(smtp.token)
    assert await c.cmd("RCPT TO:<a@dest.test>") == reply_line("NEED_MAIL")
    assert await c.cmd("DATA") == reply_line("NEED_MAIL")
    await c.cmd("MAIL FROM:<app@example.com>")
    assert await c.cmd("DATA") == reply_line("NEED_RCPT")
    assert await c.cmd("RCPT TO:<a@dest.test> NOTIFY=NEVER") == reply_line("UNSUPPORTED_PARAMETER")
    c.writer.close()


async def test_recipient_cap_counts_duplicates_once(smtp_factory) -> None:
    env = await smtp_factory(limits={"recipients_per_message": 3})
    c = await in_transaction(env)
    for r in ("a@dest.test", "b@dest.test", "A@DEST.TEST", "a@DEST.test", "b@dest.test"):
        assert await c.cmd(f"RCPT TO:<{r}>") == reply_line("RECIPIENT_OK"), r
    assert await c.cmd("RCPT TO:<d@dest.test>") == "452 4.5.3 Too many recipients"
    await c.send("DATA\r\n")
    assert (await c.reply()).startswith("354")
    await c.send(b"From: <app@example.com>\r\n\r\nhi\r\n.\r\n")
    assert (await c.reply()).startswith("250 2.0.0 Ok: queued as ")
    # Local parts are case-sensitive (A@DEST.TEST is another mailbox); domains are not.
    assert await env.counts() == {"messages": 1, "recipients": 3, "used": 3, "events": 1}
    rows = await env.pool.fetch("SELECT rcpt FROM recipients ORDER BY id")
    assert [r["rcpt"] for r in rows] == ["a@dest.test", "b@dest.test", "A@DEST.TEST"]
    c.writer.close()


async def test_advisory_quota_at_rcpt(smtp_factory) -> None:
    env = await smtp_factory(account={"monthly_limit": 5})
    await use_quota(env.pool, env.account.id, 3)
    c = await in_transaction(env)
    assert await c.cmd("RCPT TO:<a@dest.test>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("RCPT TO:<b@dest.test>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("RCPT TO:<c@dest.test>") == "535 5.7.0 Monthly messages limit reached"
    c.writer.close()
