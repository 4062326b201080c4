"""SMTPUTF8 at submission (RFC 6531, RFC 6532): EHLO, MAIL ... SMTPUTF8, internationalised
addresses and UTF-8 header fields accepted and stored byte-exact, U-label sender domains matched
as A-labels, and every hostile address refused with its exact reply, nothing stored or charged."""

from __future__ import annotations

import asyncio
import email.policy
import os
import shutil
import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import dkim as dkimpy
import pytest

from mailtrap_smtp import dkim
from mailtrap_smtp.domains import normalize_domain
from mailtrap_smtp.signing import key_aad
from mailtrap_smtp.store import domains
from tests.smtp_util import Env, authed, reply_line

IDN = "b\u00fccher.example"  # bücher.example; stored as its A-label
IDN_ACE = "xn--bcher-kva.example"


async def _with_idn_domain(env: Env) -> None:
    # What `domain add Bücher.example` stores (domains.normalize_domain): the A-label.
    name = normalize_domain("B\u00fccher.example")
    assert name == IDN_ACE
    await domains.create(env.pool, env.account.id, name, verification_token="t", dns_skipped=True)


async def _smtplib(env: Env, send: Callable[[smtplib.SMTP], dict[str, Any]]) -> dict[str, Any]:
    """`send` on a real smtplib client over STARTTLS + AUTH, in a thread (the server runs in this loop)."""
    def run() -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", env.port, timeout=10) as s:
            s.starttls(context=env.ssl_context)
            s.login("api", env.token)
            return send(s)
    return await asyncio.to_thread(run)


async def _stored(env: Env) -> list[Any]:
    return list(await env.pool.fetch("SELECT mail_from, raw, smtputf8 FROM messages ORDER BY created_at"))


async def test_ehlo_offers_smtputf8_and_8bitmime(smtp: Env) -> None:
    c = await authed(smtp)
    lines = (await c.cmd("EHLO client.test")).splitlines()
    assert "250-8BITMIME" in lines and ("250-SMTPUTF8" in lines or "250 SMTPUTF8" in lines)
    c.close()


async def test_smtplib_utf8_local_part_and_headers_stored_byte_exact(smtp: Env) -> None:
    sender, rcpt = "j\u00f6rg@example.com", "\u7528\u6237@\u4f8b\u5b50.test"  # 用户@例子.test
    body = (f"From: J\u00f6rg <{sender}>\r\nTo: {rcpt}\r\nSubject: Gr\u00fc\u00dfe \u2014 \u4f60\u597d\r\n"
            "Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <utf8-1@example.com>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nH\u00e9llo w\u00f6rld\r\n").encode()
    refused = await _smtplib(smtp, lambda s: s.sendmail(sender, [rcpt], body,
                                                        mail_options=["SMTPUTF8", "BODY=8BITMIME"]))
    assert refused == {}
    (row,) = await _stored(smtp)
    assert row["mail_from"] == sender and row["smtputf8"] is True
    assert bytes(row["raw"]).endswith(body)  # only our Received (and a signature) in front
    assert b"with UTF8SMTPSA" in bytes(row["raw"]).split(b"\r\n\r\n")[0]  # RFC 6531 §3.7.3
    rcpts = await smtp.pool.fetch("SELECT rcpt FROM recipients")
    assert [r["rcpt"] for r in rcpts] == [rcpt]


async def test_send_message_utf8_policy_with_u_label_sender_domain(smtp: Env) -> None:
    await _with_idn_domain(smtp)
    msg = EmailMessage(policy=email.policy.SMTPUTF8)
    msg["From"] = f"Info <info@{IDN}>"
    msg["To"] = "j\u00f6rg@dest.test"
    msg["Subject"] = "\u00dcbung"
    msg.set_content("b\u00fccher\n")
    # smtplib sees the non-ASCII addresses and sends MAIL FROM:<...> SMTPUTF8 itself.
    assert await _smtplib(smtp, lambda s: s.send_message(msg)) == {}
    (row,) = await _stored(smtp)
    raw = bytes(row["raw"])
    assert row["smtputf8"] is True and row["mail_from"] == f"info@{IDN}"
    assert f"From: Info <info@{IDN}>\r\n".encode() in raw  # RFC 6532: UTF-8 itself, not encoded
    domain_id = await smtp.pool.fetchval("SELECT domain_id FROM messages")
    assert domain_id == await smtp.pool.fetchval("SELECT id FROM sending_domains WHERE name = $1", IDN_ACE)


@pytest.mark.parametrize(("sender", "params", "expected"), [
    (f"app@{IDN_ACE}", "", "SENDER_OK"),                         # the A-label needs no SMTPUTF8
    (f"app@{IDN}", " SMTPUTF8", "SENDER_OK"),                    # the U-label is the same domain
    ("app@B\u00dcCHER.example", " SMTPUTF8", "SENDER_OK"),      # case folded by UTS #46
    ("app@XN--BCHER-KVA.example", "", "SENDER_OK"),
    (f"app@{IDN}", "", "SMTPUTF8_REQUIRED"),                     # not declared
    ("app@b\u00fccher.other", " SMTPUTF8", "SENDER_DOMAIN_NOT_ALLOWED"),
], ids=["a-label", "u-label", "u-label-upper", "a-label-upper", "u-label-undeclared", "other-idn"])
async def test_sender_domain_compares_a_labels(smtp: Env, sender: str, params: str, expected: str) -> None:
    await _with_idn_domain(smtp)
    c = await authed(smtp)
    assert await c.cmd(f"MAIL FROM:<{sender}>{params}") == reply_line(expected)
    c.close()


async def test_from_header_u_label_matches_a_label_domain(smtp: Env) -> None:
    await _with_idn_domain(smtp)
    c = await authed(smtp)
    assert await c.cmd(f"MAIL FROM:<app@{IDN_ACE}>") == reply_line("SENDER_OK")
    assert await c.cmd("RCPT TO:<r@dest.test>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("DATA") == reply_line("START_DATA")
    reply = await c.cmd(f"From: <app@{IDN}>\r\nSubject: x\r\n\r\nbody\r\n.".encode())
    assert reply.startswith("250 2.0.0 Ok: queued as ")
    c.close()


async def test_undeclared_8bit_headers_accepted_as_before(smtp: Env) -> None:
    c = await authed(smtp)
    assert await c.cmd("MAIL FROM:<app@example.com>") == reply_line("SENDER_OK")
    assert await c.cmd("RCPT TO:<r@dest.test>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("DATA") == reply_line("START_DATA")
    reply = await c.cmd("From: <app@example.com>\r\nSubject: Gr\u00fc\u00dfe\r\n\r\nbody\r\n.".encode())
    assert reply.startswith("250 2.0.0 Ok: queued as ")
    c.close()
    (row,) = await _stored(smtp)
    assert row["smtputf8"] is False  # relayed as before, not bounced where SMTPUTF8 is missing
    assert b"with ESMTPSA" in bytes(row["raw"])


async def test_declared_but_ascii_message_does_not_need_smtputf8(smtp: Env) -> None:
    c = await authed(smtp)
    assert await c.cmd("MAIL FROM:<app@example.com> SMTPUTF8") == reply_line("SENDER_OK")
    assert await c.cmd("RCPT TO:<r@dest.test>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("DATA") == reply_line("START_DATA")
    assert (await c.cmd(b"From: <app@example.com>\r\n\r\nbody\r\n.")).startswith("250 ")
    c.close()
    (row,) = await _stored(smtp)
    assert row["smtputf8"] is False


async def test_rset_forgets_the_declaration(smtp: Env) -> None:
    c = await authed(smtp)
    assert await c.cmd("MAIL FROM:<app@example.com> SMTPUTF8") == reply_line("SENDER_OK")
    assert await c.cmd("RCPT TO:<j\u00f6rg@dest.test>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("RSET") == reply_line("RESET_OK")
    assert await c.cmd("MAIL FROM:<app@example.com>") == reply_line("SENDER_OK")
    assert await c.cmd("RCPT TO:<j\u00f6rg@dest.test>") == reply_line("SMTPUTF8_REQUIRED")
    c.close()
    await smtp.assert_nothing_stored()


def test_replies_are_rfc_6531_and_5321_shaped() -> None:
    assert reply_line("SMTPUTF8_REQUIRED").startswith("553 5.6.7 ")  # RFC 6531 §3.5, RFC 5248 X.6.7
    assert reply_line("SENDER_TOO_LONG").startswith("501 5.1.7 ")
    assert reply_line("RECIPIENT_TOO_LONG").startswith("501 5.1.3 ")
    assert reply_line("SENDER_NOT_UTF8").startswith("501 5.1.7 ")
    assert reply_line("RECIPIENT_NOT_UTF8").startswith("501 5.1.3 ")


LONG_DOMAIN = ".".join(["a" * 62] * 3) + ".test"  # 193 octets
# (MAIL line, expected reply): a sender refused, nothing stored.
HOSTILE_MAIL: list[tuple[str, bytes, str]] = [
    ("utf8-local-undeclared", "MAIL FROM:<j\u00f6rg@example.com>".encode(), "SMTPUTF8_REQUIRED"),
    ("utf8-domain-undeclared", f"MAIL FROM:<app@{IDN}>".encode(), "SMTPUTF8_REQUIRED"),
    ("invalid-utf8", b"MAIL FROM:<j\xffrg@example.com> SMTPUTF8", "SENDER_NOT_UTF8"),
    ("overlong-slash", b"MAIL FROM:<a\xc0\xafb@example.com> SMTPUTF8", "SENDER_NOT_UTF8"),
    ("bidi-override", "MAIL FROM:<\u202eapp@example.com> SMTPUTF8".encode(), "SENDER_SYNTAX"),
    ("local-66-octets-33-chars", ("MAIL FROM:<" + "\u00e9" * 33 + "@example.com> SMTPUTF8").encode(),
     "SENDER_TOO_LONG"),
    ("smtputf8-with-value", b"MAIL FROM:<app@example.com> SMTPUTF8=yes", "BAD_PARAMETER"),
]


@pytest.mark.parametrize(("line", "expected"), [c[1:] for c in HOSTILE_MAIL], ids=[c[0] for c in HOSTILE_MAIL])
async def test_hostile_sender(smtp: Env, line: bytes, expected: str) -> None:
    c = await authed(smtp)
    assert await c.cmd(line) == reply_line(expected)
    assert await c.cmd("RCPT TO:<r@dest.test>") == reply_line("NEED_MAIL")
    c.close()
    await smtp.assert_nothing_stored()


# (RCPT path bytes, expected reply) inside a transaction that declared SMTPUTF8.
HOSTILE_RCPT: list[tuple[str, bytes, str]] = [
    ("invalid-utf8-ff", b"j\xffrg@dest.test", "RECIPIENT_NOT_UTF8"),
    ("truncated-sequence", b"j\xc3@dest.test", "RECIPIENT_NOT_UTF8"),
    ("overlong-nul", b"a\xc0\x80b@dest.test", "RECIPIENT_NOT_UTF8"),
    ("overlong-3-byte", b"a\xe0\x80\xafb@dest.test", "RECIPIENT_NOT_UTF8"),
    ("encoded-surrogate", b"a\xed\xa0\x80b@dest.test", "RECIPIENT_NOT_UTF8"),
    ("beyond-u10ffff", b"a\xf4\x90\x80\x80b@dest.test", "RECIPIENT_NOT_UTF8"),
    ("invalid-utf8-in-domain", b"user@d\xffest.test", "RECIPIENT_NOT_UTF8"),
    ("nul", b"a\x00b@dest.test", "BAD_CHARACTERS"),
    ("c0-control", b"a\x1bb@dest.test", "BAD_CHARACTERS"),
    ("c1-control-nel", "a\u0085b@dest.test".encode(), "RECIPIENT_SYNTAX"),
    ("zero-width-space", "a\u200bb@dest.test".encode(), "RECIPIENT_SYNTAX"),
    ("bidi-override", "\u202eresu@dest.test".encode(), "RECIPIENT_SYNTAX"),
    ("no-break-space", "a\u00a0b@dest.test".encode(), "RECIPIENT_SYNTAX"),
    ("ideographic-space", "a\u3000b@dest.test".encode(), "RECIPIENT_SYNTAX"),
    ("line-separator", "a\u2028b@dest.test".encode(), "RECIPIENT_SYNTAX"),
    ("private-use", "a\ue000b@dest.test".encode(), "RECIPIENT_SYNTAX"),
    ("unassigned", "a\u0378b@dest.test".encode(), "RECIPIENT_SYNTAX"),
    ("domain-mixed-direction", "user@a\u05d0.test".encode(), "RECIPIENT_SYNTAX"),  # RFC 5893 bidi rule
    ("domain-leading-combining-mark", "user@\u0301x.test".encode(), "RECIPIENT_SYNTAX"),
    ("domain-symbol", "user@i\u2665.test".encode(), "RECIPIENT_SYNTAX"),  # DISALLOWED in IDNA 2008
    ("domain-joiner-out-of-context", "user@a\u200d.test".encode(), "RECIPIENT_SYNTAX"),  # CONTEXTJ
    ("domain-label-too-long-as-a-label", ("user@" + "\u00fc" * 60 + ".test").encode(), "RECIPIENT_SYNTAX"),
    ("utf8-dot-dot", "j\u00f6..rg@dest.test".encode(), "RECIPIENT_SYNTAX"),
    ("local-64-octets-32-chars", ("\u00e9" * 32 + "@dest.test").encode(), "RECIPIENT_OK"),
    ("local-66-octets-33-chars", ("\u00e9" * 33 + "@dest.test").encode(), "RECIPIENT_TOO_LONG"),
    ("local-66-octets-22-cjk", ("\u4e2d" * 22 + "@dest.test").encode(), "RECIPIENT_TOO_LONG"),
    ("path-258-octets-226-chars", ("\u00e9" * 32 + "@" + LONG_DOMAIN).encode(), "RECIPIENT_TOO_LONG"),
    ("utf8-local", "j\u00f6rg@dest.test".encode(), "RECIPIENT_OK"),
    ("utf8-quoted-local", '"j\u00f6 rg"@dest.test'.encode(), "RECIPIENT_OK"),
    ("cjk-local-and-domain", "\u7528\u6237@\u4f8b\u5b50.test".encode(), "RECIPIENT_OK"),
    ("zwnj-in-local", "a\u200cb@dest.test".encode(), "RECIPIENT_OK"),  # needed by Persian, Indic scripts
    # Mixed Latin/Cyrillic (p + U+0430 + ypal) passes IDNA 2008: refusing homographs is the
    # registries' job, and the recipient's domain is the recipient's own.
    ("latin-cyrillic-homograph", "user@p\u0430ypal.test".encode(), "RECIPIENT_OK"),
]


@pytest.mark.parametrize(("path", "expected"), [c[1:] for c in HOSTILE_RCPT], ids=[c[0] for c in HOSTILE_RCPT])
async def test_recipient_in_smtputf8_transaction(smtp: Env, path: bytes, expected: str) -> None:
    c = await authed(smtp)
    assert await c.cmd("MAIL FROM:<app@example.com> SMTPUTF8") == reply_line("SENDER_OK")
    assert await c.cmd(b"RCPT TO:<" + path + b">") == reply_line(expected)
    if expected != "RECIPIENT_OK":
        assert await c.cmd("DATA") == reply_line("NEED_RCPT")
        c.close()
        await smtp.assert_nothing_stored()
    else:
        c.close()


async def test_non_ascii_recipient_needs_the_declaration(smtp: Env) -> None:
    c = await authed(smtp)
    assert await c.cmd("MAIL FROM:<app@example.com>") == reply_line("SENDER_OK")
    assert await c.cmd("RCPT TO:<user@b\u00fccher.test>") == reply_line("SMTPUTF8_REQUIRED")
    assert await c.cmd("RCPT TO:<user@xn--bcher-kva.test>") == reply_line("RECIPIENT_OK")
    c.close()


async def test_duplicate_recipient_in_either_domain_form_counts_once(smtp: Env) -> None:
    c = await authed(smtp)
    assert await c.cmd("MAIL FROM:<app@example.com> SMTPUTF8") == reply_line("SENDER_OK")
    assert await c.cmd("RCPT TO:<user@b\u00fccher.test>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("RCPT TO:<user@XN--BCHER-KVA.test>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("DATA") == reply_line("START_DATA")
    assert (await c.cmd(b"From: <app@example.com>\r\n\r\nbody\r\n.")).startswith("250 ")
    c.close()
    assert await smtp.counts() == {"messages": 1, "recipients": 1, "used": 1, "events": 1}


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
async def test_swaks_which_cannot_declare_smtputf8(smtp: Env, ca_file: Any) -> None:
    # swaks (20201014) sends UTF-8 bytes but has no way to add the SMTPUTF8 parameter: its
    # non-ASCII sender is refused with the 5.6.7 reply, its 8-bit Subject accepted as before.
    async def swaks(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "swaks", "--server", "127.0.0.1", "--port", str(smtp.port), "--tls", "--tls-verify",
            "--tls-ca-path", str(ca_file), "--tls-sni", "localhost", "--auth", "PLAIN", "--auth-user", "api",
            "--auth-password", smtp.token, "--to", "a@dest.test", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace")

    rc, out = await swaks("--from", "j\u00f6rg@example.com", "--header", "From: <j\u00f6rg@example.com>")
    assert rc != 0 and f"<~* {reply_line('SMTPUTF8_REQUIRED')}" in out, out
    await smtp.assert_nothing_stored()
    rc, out = await swaks("--from", "app@example.com", "--header", "From: <app@example.com>",
                          "--header", "Subject: Gr\u00fc\u00dfe")
    assert rc == 0 and "<~  250 2.0.0 Ok: queued as " in out, out
    (row,) = await _stored(smtp)
    assert "Subject: Gr\u00fc\u00dfe\r\n".encode() in bytes(row["raw"]) and row["smtputf8"] is False


async def test_utf8_headers_dkim_signed_for_the_a_label_domain(smtp_factory: Any) -> None:
    # RFC 8616 §4: d= is the A-label; the UTF-8 header fields are signed as the octets they are.
    kek = os.urandom(32)
    env = await smtp_factory(kek=kek)
    await _with_idn_domain(env)
    dom = await domains.get_by_name(env.pool, IDN_ACE)
    pem, pub = dkim.generate_key(dkim.RSA_SHA256)
    await domains.add_key(env.pool, dom["id"], selector="s1", algorithm=dkim.RSA_SHA256,
                          private_key_enc=dkim.encrypt_private_key(kek, pem, key_aad(IDN_ACE, "s1")),
                          public_key=pub, state="active")
    sender = f"j\u00f6rg@{IDN}"
    body = (f"From: J\u00f6rg <{sender}>\r\nTo: r@dest.test\r\nSubject: \u00dcbung\r\n\r\n"
            "b\u00fccher\r\n").encode()
    await _smtplib(env, lambda s: s.sendmail(sender, ["r@dest.test"], body, mail_options=["SMTPUTF8"]))
    (row,) = await _stored(env)
    raw = bytes(row["raw"])
    assert raw.startswith(b"DKIM-Signature:") and f" d={IDN_ACE};".encode() in raw.split(b"Received:")[0]
    txt = dkim.dns_txt_value(dkim.RSA_SHA256, pub).encode()
    assert dkimpy.verify(raw, dnsfunc=lambda name, timeout=5: txt if name == f"s1._domainkey.{IDN_ACE}.".encode()
                         else None)
