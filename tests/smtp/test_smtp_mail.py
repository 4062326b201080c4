"""MAIL FROM: sending-domain policy, SIZE, parameters, syntax."""

from __future__ import annotations

import pytest

from mailtrap_smtp.store import domains
from tests.smtp_util import Env, authed, create_account, reply_line

SENDER_CASES = [
    ("app@example.com", "SENDER_OK"),
    ("APP@EXAMPLE.COM", "SENDER_OK"),            # domains compare case-insensitively
    ("app@sub.example.com", "SENDER_DOMAIN_NOT_ALLOWED"),  # subdomains are separate domains
    ("app@other.test", "SENDER_DOMAIN_NOT_ALLOWED"),
    ("app@foreign.test", "SENDER_DOMAIN_NOT_ALLOWED"),     # another account's domain
    ("app@unverified.test", "SENDER_DOMAIN_NOT_ALLOWED"),
    ("", "SENDER_DOMAIN_NOT_ALLOWED"),             # null sender
]


async def test_sender_domain_policy(smtp_factory) -> None:
    smtp = await smtp_factory(smtp={"max_errors": 1000})
    other = await create_account(smtp.pool, "other", domain="foreign.test")
    await domains.create(smtp.pool, smtp.account.id, "unverified.test", verification_token="t")
    assert other.id != smtp.account.id
    c = await authed(smtp)
    for sender, expected in SENDER_CASES:
        assert await c.cmd(f"MAIL FROM:<{sender}>") == reply_line(expected), sender
        await c.cmd("RSET")
    c.writer.close()


async def test_mailtrap_exact_reply_text(smtp: Env) -> None:
    c = await authed(smtp)
    assert await c.cmd("MAIL FROM:<a@nope.test>") == "550 5.7.1 Sending from domain is not allowed"
    c.writer.close()


async def test_require_approval(smtp_factory) -> None:
    env = await smtp_factory(domains={"require_approval": True})
    # dns_skipped domains (development) pass; a verified but unapproved one does not.
    row = await domains.create(env.pool, env.account.id, "verified.test", verification_token="t")
    await env.pool.execute("UPDATE sending_domains SET state = 'verified' WHERE id = $1", row["id"])
    c = await authed(env)
    assert await c.cmd("MAIL FROM:<a@verified.test>") == reply_line("SENDER_DOMAIN_NOT_ALLOWED")
    await domains.approve(env.pool, row["id"])
    c.writer.close()
    c = await authed(env)  # the cache is per session: a new session sees the approval
    assert await c.cmd("MAIL FROM:<a@verified.test>") == reply_line("SENDER_OK")
    c.writer.close()


async def test_size_parameter(smtp_factory) -> None:
    env = await smtp_factory(account={"max_message_size": 5000})
    c = await authed(env)
    assert await c.cmd("MAIL FROM:<a@example.com> SIZE=5001") == reply_line("SIZE_EXCEEDED")
    assert reply_line("SIZE_EXCEEDED").startswith("552 5.3.4 ")
    assert await c.cmd("MAIL FROM:<a@example.com> SIZE=5000 BODY=8BITMIME") == reply_line("SENDER_OK")
    c.writer.close()


MAIL_CASES = [
    ("MAIL FROM:<a@example.com> FOO=bar", "UNSUPPORTED_PARAMETER"),
    ("MAIL FROM:<a@example.com> SMTPUTF8", "SENDER_OK"),            # RFC 6531 §3.4
    ("MAIL FROM:<a@example.com> SMTPUTF8=yes", "BAD_PARAMETER"),    # the parameter takes no value
    ("MAIL FROM:<a@example.com> SIZE=abc", "BAD_PARAMETER"),
    ("MAIL FROM:<a@example.com> SIZE=1 SIZE=2", "BAD_PARAMETER"),
    ("MAIL FROM:<a@example.com> BODY=BINARYMIME", "BAD_PARAMETER"),
    ("MAIL FROM:<a@example.com> X=\u00e9", "BAD_PARAMETER"),
    ("MAIL FROM:a@example.com", "SENDER_SYNTAX"),
    ("MAIL FROM:<a@@example.com>", "SENDER_SYNTAX"),
    ("MAIL FROM:<a b@example.com>", "SENDER_SYNTAX"),
    ("MAIL TO:<a@example.com>", "SYNTAX"),
    ("MAIL FROM:<\u00e9@example.com>", "SMTPUTF8_REQUIRED"),       # not declared
    ("MAIL FROM: <a@example.com>", "SENDER_OK"),
    ("MAIL FROM:<@relay.test:a@example.com>", "SENDER_OK"),
]


@pytest.mark.parametrize(("line", "expected"), MAIL_CASES, ids=[c[0] for c in MAIL_CASES])
async def test_mail_syntax(smtp: Env, line: str, expected: str) -> None:
    c = await authed(smtp)
    assert await c.cmd(line) == reply_line(expected)
    c.writer.close()
    if expected != "SENDER_OK":
        await smtp.assert_nothing_stored()


def test_enhanced_codes_per_rfc_3463() -> None:
    # Unknown command X.5.1, bad parameter X.5.4, bad sender X.1.7, bad recipient X.1.3, unknown parameter 555 5.5.4.
    assert [reply_line(n)[:9] for n in ("UNKNOWN_COMMAND", "BAD_PARAMETER", "SENDER_SYNTAX", "RECIPIENT_SYNTAX",
                                        "UNSUPPORTED_PARAMETER")] == [
        "500 5.5.1", "501 5.5.4", "501 5.1.7", "501 5.1.3", "555 5.5.4"]


async def test_nested_mail(smtp: Env) -> None:
    c = await authed(smtp)
    assert await c.cmd("MAIL FROM:<a@example.com>") == reply_line("SENDER_OK")
    assert await c.cmd("MAIL FROM:<a@example.com>") == reply_line("NESTED_MAIL")
    assert await c.cmd("RSET") == reply_line("RESET_OK")
    assert await c.cmd("MAIL FROM:<a@example.com>") == reply_line("SENDER_OK")
    c.writer.close()
