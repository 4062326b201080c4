"""AUTH PLAIN / LOGIN: tokens, failures, brute-force brakes, quota and per-account sessions at AUTH."""

from __future__ import annotations

import asyncio
import base64
import os

import aiosmtplib
import pytest

from mailtrap_smtp import tokens
from mailtrap_smtp.app import smtp_service
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.store import credentials, smtp_limits
from mailtrap_smtp.store import db as store_db
from tests.smtp_util import Env, RawClient, create_account, reply_line, smtp_sections, use_quota


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


async def tls_client(env: Env) -> RawClient:
    c = env.raw()
    await c.connect()
    await c.cmd("EHLO client.test")
    await c.starttls()
    await c.cmd("EHLO client.test")
    return c


@pytest.mark.parametrize("user", ["api", "smtp@mailtrap.io", "anything at all"])
async def test_auth_plain_any_username(smtp: Env, user: str) -> None:
    c = await tls_client(smtp)
    assert await c.cmd("AUTH PLAIN " + b64(f"\0{user}\0{smtp.token}")) == reply_line("AUTH_OK")
    assert await c.cmd("AUTH PLAIN " + b64(f"\0{user}\0{smtp.token}")) == reply_line("AUTH_ALREADY")
    assert await c.cmd("QUIT") == reply_line("BYE")
    assert await c.closed()


async def test_auth_plain_with_challenge(smtp: Env) -> None:
    c = await tls_client(smtp)
    assert await c.cmd("AUTH PLAIN") == "334 "
    assert await c.cmd(b64(f"\0api\0{smtp.token}")) == reply_line("AUTH_OK")
    c.writer.close()


async def test_auth_login(smtp: Env) -> None:
    c = await tls_client(smtp)
    assert await c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert await c.cmd(b64("api")) == "334 UGFzc3dvcmQ6"
    assert await c.cmd(b64(smtp.token)) == reply_line("AUTH_OK")
    c.writer.close()
    c = await tls_client(smtp)
    assert await c.cmd("AUTH LOGIN " + b64("api")) == "334 UGFzc3dvcmQ6"
    assert await c.cmd(b64(smtp.token)) == reply_line("AUTH_OK")
    c.writer.close()


async def test_aiosmtplib_login_and_wrong_password(smtp: Env) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp.port, tls_context=smtp.ssl_context, start_tls=True)
    await client.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as e:
        await client.login("api", smtp.token[:-1] + ("A" if smtp.token[-1] != "A" else "B"))
    assert e.value.code == 535
    await client.login("api", smtp.token)
    await client.quit()


async def _revoked_token(env: Env) -> str:
    tok = tokens.generate()
    await credentials.create(env.pool, env.account.id, public_id=tok.public_id, digest=tok.digest, stream="bulk")
    await credentials.revoke(env.pool, tok.public_id)
    return tok.token


BAD_PLAIN = {
    "wrong_secret": lambda t: f"\0api\0{t[:-4]}AAAA".encode(),
    "unknown_id": lambda t: f"\0api\0mts_00000000_{t[-32:]}".encode(),
    "garbage": lambda t: b"\0api\0password123",
    "empty": lambda t: b"\0api\0",
    "non_ascii": lambda t: f"\0api\0{t}\u00e9".encode(),
    "nul_in_password": lambda t: f"\0api\0{t}\0".encode(),
    "nul_in_authcid": lambda t: f"\0a\0pi\0{t}".encode(),
    "two_fields": lambda t: f"api\0{t}".encode(),
    # An identity with CR or LF is refused even with the right token (it can only aim at a log or header).
    "crlf_in_authcid": lambda t: f"\0api\r\nX-Injected: 1\0{t}".encode(),
    "lf_in_authzid": lambda t: f"a\nb\0api\0{t}".encode(),
    "cr_in_authcid": lambda t: f"\0ap\ri\0{t}".encode(),
}
BAD_IDENTITY = {"crlf_in_authcid", "lf_in_authzid", "cr_in_authcid"}


@pytest.mark.parametrize("kind", list(BAD_PLAIN))
async def test_bad_plain_credentials_never_get_235(smtp: Env, kind: str) -> None:
    c = await tls_client(smtp)
    expected = "AUTH_BAD_IDENTITY" if kind in BAD_IDENTITY else "AUTH_INVALID"
    assert await c.cmd("AUTH PLAIN " + b64(BAD_PLAIN[kind](smtp.token))) == reply_line(expected)
    assert reply_line("AUTH_BAD_IDENTITY") == "501 5.5.2 Invalid characters in authentication identity"
    assert await c.cmd("MAIL FROM:<app@example.com>") == reply_line("AUTH_REQUIRED")
    c.writer.close()


async def test_revoked_token_never_gets_235(smtp: Env) -> None:
    c = await tls_client(smtp)
    assert await c.cmd("AUTH PLAIN " + b64(f"\0api\0{await _revoked_token(smtp)}")) == reply_line("AUTH_INVALID")
    assert await c.cmd("MAIL FROM:<app@example.com>") == reply_line("AUTH_REQUIRED")
    c.writer.close()


@pytest.mark.parametrize("user", [b"api\r\nX: 1", b"a\npi", b"ap\ri", b"a\0pi"], ids=["crlf", "lf", "cr", "nul"])
async def test_login_user_name_with_control_characters_refused(smtp: Env, user: bytes) -> None:
    c = await tls_client(smtp)
    assert await c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert await c.cmd(b64(user)) == reply_line("AUTH_BAD_IDENTITY")  # the password is never asked for
    assert await c.cmd("MAIL FROM:<app@example.com>") == reply_line("AUTH_REQUIRED")
    c.writer.close()


async def test_bad_base64_and_cancel_and_mechanism(smtp: Env) -> None:
    c = await tls_client(smtp)
    assert await c.cmd("AUTH PLAIN !!!") == reply_line("AUTH_BAD_BASE64")
    assert await c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert await c.cmd("*") == reply_line("AUTH_CANCELLED")
    assert await c.cmd("AUTH CRAM-MD5") == reply_line("AUTH_MECHANISM")
    c.writer.close()


@pytest.mark.parametrize("command", ["MAIL FROM:<app@example.com>", "RCPT TO:<a@dest.test>", "DATA"])
async def test_mail_before_auth_after_tls(smtp: Env, command: str) -> None:
    c = await tls_client(smtp)
    assert await c.cmd(command) == reply_line("AUTH_REQUIRED")
    c.writer.close()
    await smtp.assert_nothing_stored()


async def test_failures_per_connection_close_with_421(smtp: Env) -> None:
    c = await tls_client(smtp)
    bad = "AUTH PLAIN " + b64("\0api\0mts_00000000_" + "A" * 32)
    assert await c.cmd(bad) == reply_line("AUTH_INVALID")
    assert await c.cmd(bad) == reply_line("AUTH_INVALID")
    # The third failure gets its own 535 first, then the 421: the client sees why.
    assert await c.cmd(bad) == reply_line("AUTH_INVALID")
    assert await c.reply() == reply_line("AUTH_TOO_MANY_FAILURES")
    assert await c.closed()


async def _proxied_client(env: Env, ip: str) -> RawClient:
    c = env.raw()
    c.reader, c.writer = await asyncio.open_connection("127.0.0.1", env.port)
    await c.send(f"PROXY TCP4 {ip} 127.0.0.1 40000 25\r\n")
    await c.reply()
    await c.cmd("EHLO client.test")
    await c.starttls()
    await c.cmd("EHLO client.test")
    return c


async def test_auth_brake_keys_on_token_id_and_ip(smtp_factory) -> None:
    env = await smtp_factory(proxy=True, server={"proxy_protocol_from": ["127.0.0.1"]},
                             limits={"auth_failures_per_ip": 4, "auth_failures_per_connection": 3})
    unknown_id = "AUTH PLAIN " + b64("\0api\0mts_00000000_" + "A" * 32)
    right = "AUTH PLAIN " + b64(f"\0api\0{env.token}")
    for _ in range(2):
        c = await _proxied_client(env, "203.0.113.5")
        assert await c.cmd(unknown_id) == reply_line("AUTH_INVALID")
        assert await c.cmd(unknown_id) == reply_line("AUTH_INVALID")
        c.writer.close()
    # The guesser (unknown ids) is now blocked on its IP...
    c = await _proxied_client(env, "203.0.113.5")
    assert await c.cmd(unknown_id) == reply_line("AUTH_IP_BLOCKED")
    assert await c.closed()
    # ...while an app behind the same NAT, with a correct token, keeps working.
    c = await _proxied_client(env, "203.0.113.5")
    assert await c.cmd(right) == reply_line("AUTH_OK")
    c.writer.close()
    # Guessing the secret of a known id from that IP blocks that id from that IP only.
    wrong_secret = "AUTH PLAIN " + b64(f"\0api\0{env.token[:-4]}AAAA")
    for _ in range(2):
        c = await _proxied_client(env, "203.0.113.5")
        assert await c.cmd(wrong_secret) == reply_line("AUTH_INVALID")
        assert await c.cmd(wrong_secret) == reply_line("AUTH_INVALID")
        c.writer.close()
    c = await _proxied_client(env, "203.0.113.5")
    assert await c.cmd(right) == reply_line("AUTH_IP_BLOCKED")
    assert await c.closed()
    # The real user on another IP is not locked out.
    c = await _proxied_client(env, "198.51.100.7")
    assert await c.cmd(right) == reply_line("AUTH_OK")
    c.writer.close()
    await env.assert_nothing_stored()


async def test_over_quota_account_refused_at_auth(smtp_factory) -> None:
    env = await smtp_factory(account={"monthly_limit": 3})
    await use_quota(env.pool, env.account.id, 3)
    c = await tls_client(env)
    assert await c.cmd("AUTH PLAIN " + b64(f"\0api\0{env.token}")) == reply_line("QUOTA_EXCEEDED")
    assert reply_line("QUOTA_EXCEEDED") == "535 5.7.0 Monthly messages limit reached"
    c.writer.close()


async def test_too_many_connections_per_account(smtp_factory) -> None:
    env = await smtp_factory(limits={"connections_per_account": 2})
    ok = "AUTH PLAIN " + b64(f"\0api\0{env.token}")
    a, b, c = [await tls_client(env) for _ in range(3)]
    assert await a.cmd(ok) == reply_line("AUTH_OK")
    assert await b.cmd(ok) == reply_line("AUTH_OK")
    assert await c.cmd(ok) == "535 5.7.8 Too many connections per account"
    # Unauthenticated sessions do not count; a closed session frees its slot.
    assert await a.cmd("QUIT") == reply_line("BYE")
    assert await a.closed()
    for _ in range(50):
        if env.service.slots.held_count(env.account.id) < 2:
            break
        await asyncio.sleep(0.02)
    assert await c.cmd(ok) == reply_line("AUTH_OK")
    b.writer.close()
    c.writer.close()


async def _slot_locks(env: Env) -> int:
    """Advisory locks PostgreSQL holds for the account's session slots (any connection)."""
    first, last = smtp_limits.slot_key(env.account.id, 0), smtp_limits.slot_key(env.account.id, 0xFFFF)
    return int(await env.pool.fetchval(
        """SELECT count(*) FROM pg_locks
            WHERE locktype = 'advisory' AND objsubid = 1 AND granted
              AND ((classid::bigint << 32) | objid::bigint) BETWEEN $1 AND $2""", first, last))


async def test_session_slots_are_released_without_leaks(smtp_factory) -> None:
    # Releases are deferred (the next AUTH statement or a flush does them); a key released and
    # taken again at once must end up held exactly once, and nothing may stay locked at the end.
    env = await smtp_factory(limits={"connections_per_account": 2})
    ok = "AUTH PLAIN " + b64(f"\0api\0{env.token}")
    a, b = await tls_client(env), await tls_client(env)
    assert await a.cmd(ok) == reply_line("AUTH_OK")
    assert await b.cmd(ok) == reply_line("AUTH_OK")
    assert await _slot_locks(env) == 2
    c = await tls_client(env)
    assert await a.cmd("QUIT") == reply_line("BYE")
    assert await a.closed()
    assert await c.cmd(ok) == reply_line("AUTH_OK")  # a's slot is free for this process at once
    assert await _slot_locks(env) == 2
    wrong = "AUTH PLAIN " + b64(f"\0api\0{env.token[:-4]}AAAA")
    d = await tls_client(env)
    assert await d.cmd(wrong) == reply_line("AUTH_INVALID")
    for client in (b, c):
        assert await client.cmd("QUIT") == reply_line("BYE")
        assert await client.closed()
    for _ in range(100):  # the flush follows within SessionSlots.FLUSH_DELAY
        if await _slot_locks(env) == 0:
            break
        await asyncio.sleep(0.02)
    assert await _slot_locks(env) == 0
    d.writer.close()


async def test_database_unreachable_gives_454(make_config, db_dsn, pool, client_ssl_context) -> None:
    await create_account(pool)
    cfg = make_config(**smtp_sections())
    broken = await store_db.create_pool(db_dsn, min_size=1, max_size=2)
    svc = smtp_service(cfg, broken, signer=KeyStore(broken, os.urandom(32)), port_override=0)
    await svc.start()
    try:
        await broken.close()
        c = RawClient("127.0.0.1", svc.ports[0], client_ssl_context)
        await c.connect()
        await c.cmd("EHLO x")
        await c.starttls()
        await c.cmd("EHLO x")
        tok = tokens.generate().token
        assert await c.cmd("AUTH PLAIN " + b64(f"\0api\0{tok}")) == reply_line("AUTH_TEMPORARY_FAILURE")
        c.writer.close()
    finally:
        await svc.stop(1.0)
