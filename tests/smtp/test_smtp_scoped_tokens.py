"""Scoped tokens over SMTP: every combination of the token's streams, domain scope and level with
the listener's stream, real TLS, exact replies, and what was (not) stored and charged."""

from __future__ import annotations

import asyncio
import base64
import itertools
import ssl
from typing import Any

import aiosmtplib
import asyncpg
import pytest

from mailtrap_smtp.core import credentials as credentials_uc
from mailtrap_smtp.store import credentials as credentials_store
from mailtrap_smtp.store import db as store_db
from mailtrap_smtp.store import domains, smtp_limits
from tests.smtp_util import DOMAIN, Env, RawClient, message, reply_line

OTHER = "other.test"  # the account's second sending domain
T, B = "transactional", "bulk"

STREAM_SETS = [[T], [B], [T, B]]
SCOPES: list[list[str] | None] = [None, [DOMAIN], [OTHER]]
LEVELS = ["send", "read", "admin"]
LISTENER_STREAMS = ["", T, B]


def listeners(stream: str) -> dict[str, Any]:
    return {"listeners": [{"address": "127.0.0.1", "port": 1, "mode": "starttls", "stream": stream},
                          {"address": "127.0.0.1", "port": 2, "mode": "implicit", "stream": stream}]}


async def start(smtp_factory: Any, listener_stream: str = "", **kw: Any) -> Env:
    env: Env = await smtp_factory(smtp=listeners(listener_stream), **kw)
    await domains.create(env.pool, env.account.id, OTHER, verification_token="t", dns_skipped=True)
    return env


async def issue(env: Env, streams: list[str], level: str = "send", scope: list[str] | None = None) -> str:
    return (await credentials_uc.issue_for(env.pool, env.account.id, streams=streams, level=level,
                                           domains=scope)).token


async def stored(env: Env) -> list[asyncpg.Record]:
    return list(await env.pool.fetch("SELECT stream, mail_from, credential_id FROM messages ORDER BY created_at"))


async def attempt(c: RawClient, mail_from: str, header_from: str) -> str:
    """One transaction; the reply to MAIL when it refuses, else the final reply to DATA."""
    reply = await c.cmd(f"MAIL FROM:<{mail_from}>")
    if not reply.startswith("250"):
        return reply
    assert await c.cmd("RCPT TO:<user@dest.test>") == reply_line("RECIPIENT_OK")
    assert (await c.cmd("DATA")).startswith("354")
    return await c.cmd(message(frm=header_from) + b".")


@pytest.mark.parametrize(("streams", "scope", "level", "listener_stream"),
                         list(itertools.product(STREAM_SETS, SCOPES, LEVELS, LISTENER_STREAMS)))
async def test_every_combination(smtp_factory: Any, streams: list[str], scope: list[str] | None, level: str,
                                 listener_stream: str) -> None:
    env = await start(smtp_factory, listener_stream)
    token = await issue(env, streams, level, scope)
    # What the rules say, spelled out here independently of `permissions`:
    session_stream = listener_stream or (streams[0] if len(streams) == 1 else T)
    may_auth = level in ("send", "admin") and session_stream in streams
    allowed = {DOMAIN, OTHER} if scope is None else set(scope)

    async with env.raw() as c:
        if not may_auth:
            assert await c.login(token) == reply_line("AUTH_INVALID")
            assert await c.cmd(f"MAIL FROM:<app@{DOMAIN}>") == reply_line("AUTH_REQUIRED")
            await env.assert_nothing_stored()
            return
        assert await c.login(token) == reply_line("AUTH_OK")
        expected_ok = 0
        for envelope, header in [(DOMAIN, DOMAIN), (OTHER, OTHER), (DOMAIN, OTHER), (OTHER, DOMAIN)]:
            reply = await attempt(c, f"app@{envelope}", f"app@{header}")
            if envelope not in allowed:
                assert reply == reply_line("SENDER_DOMAIN_NOT_ALLOWED"), (envelope, header)
            elif header not in allowed:
                assert reply == reply_line("FROM_HEADER_MISMATCH"), (envelope, header)
            else:
                assert reply.startswith("250 2.0.0 Ok: queued as "), (envelope, header)
                expected_ok += 1
        await c.cmd("QUIT")
    rows = await stored(env)
    assert len(rows) == expected_ok
    assert {r["stream"] for r in rows} <= {session_stream}
    counts = await env.counts()
    assert (counts["messages"], counts["recipients"], counts["used"]) == (expected_ok,) * 3


async def test_domain_scope_without_preload(smtp_factory: Any) -> None:
    # A token with more domains in its scope than AUTH preloads (`SenderPolicy.preload_limit`):
    # MAIL and From: look each domain up, and the scope must still hold there.
    env = await start(smtp_factory)
    names = [f"d{i}.test" for i in range(40)]
    for name in names:
        await domains.create(env.pool, env.account.id, name, verification_token="t", dns_skipped=True)
    token = await issue(env, [T], scope=names[:35])
    async with env.raw() as c:
        assert await c.login(token) == reply_line("AUTH_OK")
        assert await attempt(c, "app@d36.test", "app@d36.test") == reply_line("SENDER_DOMAIN_NOT_ALLOWED")
        assert await attempt(c, f"app@{DOMAIN}", f"app@{DOMAIN}") == reply_line("SENDER_DOMAIN_NOT_ALLOWED")
        assert await attempt(c, "app@d7.test", "app@d36.test") == reply_line("FROM_HEADER_MISMATCH")
        await env.assert_nothing_stored()
        assert (await attempt(c, "app@d7.test", "app@d34.test")).startswith("250 2.0.0 Ok: queued as ")
    assert [r["mail_from"] for r in await stored(env)] == ["app@d7.test"]


async def test_scoped_token_whose_domain_was_deleted_sends_from_none(smtp_factory: Any) -> None:
    env = await start(smtp_factory)
    token = await issue(env, [T], scope=[DOMAIN])
    await env.pool.execute("DELETE FROM sending_domains WHERE name = $1", DOMAIN)
    async with env.raw() as c:
        assert await c.login(token) == reply_line("AUTH_OK")
        # OTHER is still the account's, but never was the token's: no scope left means no domain.
        assert await attempt(c, f"app@{OTHER}", f"app@{OTHER}") == reply_line("SENDER_DOMAIN_NOT_ALLOWED")
    await env.assert_nothing_stored()


async def test_domain_added_later_is_in_an_unscoped_tokens_reach(smtp_factory: Any) -> None:
    env = await start(smtp_factory)
    token = await issue(env, [T])
    await domains.create(env.pool, env.account.id, "later.test", verification_token="t", dns_skipped=True)
    async with env.raw() as c:
        assert await c.login(token) == reply_line("AUTH_OK")
        assert (await attempt(c, "app@later.test", "app@later.test")).startswith("250 2.0.0 Ok: queued as ")


async def test_not_allowed_is_no_guess_and_takes_no_slot(smtp_factory: Any) -> None:
    # A real token without the right (read-only) gets 535 as many times as the per-connection
    # failure limit without being cut off, and leaves no session slot held.
    env = await start(smtp_factory, limits={"auth_failures_per_connection": 2})
    reader = await issue(env, [T], "read")
    c = env.raw()
    await c.connect()
    assert await c.login(reader) == reply_line("AUTH_INVALID")
    plain = "AUTH PLAIN " + base64.b64encode(f"\0api\0{reader}".encode()).decode()
    for _ in range(2):
        assert await c.cmd(plain) == reply_line("AUTH_INVALID")
    assert env.service.slots.held_count(env.account.id) == 0
    assert await c.cmd("AUTH PLAIN " + base64.b64encode(f"\0api\0{env.token}".encode()).decode()) \
        == reply_line("AUTH_OK")
    c.writer.close()
    first, last = smtp_limits.slot_key(env.account.id, 0), smtp_limits.slot_key(env.account.id, 0xFFFF)
    held = await env.pool.fetchval(
        """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted
              AND ((classid::bigint << 32) | objid::bigint) BETWEEN $1 AND $2""", first, last)
    assert held <= 1  # the one OK session at most (its release may still be pending)


async def test_aiosmtplib_send_and_refusals(smtp_factory: Any) -> None:
    env = await start(smtp_factory, B)
    sender = await issue(env, [T, B], scope=[OTHER])
    reader = await issue(env, [T, B], "read")
    ctx: ssl.SSLContext = env.ssl_context

    def client() -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(hostname="127.0.0.1", port=env.port, tls_context=ctx, start_tls=True)

    c = client()
    await c.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as auth_error:
        await c.login("api", reader)
    assert (auth_error.value.code, auth_error.value.message) == (535, "5.7.8 Authentication credentials invalid")
    await c.quit()
    c = client()
    await c.connect()
    await c.login("api", sender)
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await c.sendmail(f"app@{DOMAIN}", ["user@dest.test"], message(frm=f"app@{DOMAIN}"))
    assert (refused.value.code, refused.value.message) == (550, "5.7.1 Sending from domain is not allowed")
    await c.sendmail(f"app@{OTHER}", ["user@dest.test"], message(frm=f"app@{OTHER}"))
    await c.quit()
    assert [(r["stream"], r["mail_from"]) for r in await stored(env)] == [(B, f"app@{OTHER}")]


async def test_existing_tokens_become_send_tokens_on_their_stream(pg_server: str) -> None:
    # A database at migration 0003 with one token per stream, then 0004 applied: both still
    # authenticate the same way (send level, their stream, every domain).
    from tests.conftest import _with_database

    name = "t_migrate_0004"
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(_with_database(pg_server, name))
        try:
            await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                               " applied_at timestamptz NOT NULL DEFAULT now())")
            for version, fname, sql in store_db.migration_files():
                if version < 4:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, fname)
            acct = await conn.fetchval("INSERT INTO accounts (name, monthly_limit, max_message_size)"
                                       " VALUES ('old', 10, 1000) RETURNING id")
            for i, stream in enumerate([T, B]):
                await conn.execute("INSERT INTO credentials (public_id, account_id, stream, digest)"
                                   " VALUES ($1, $2, $3, '\\x00')", f"0000000{i}", acct, stream)
            assert "0004_scoped_tokens_templates.sql" in await store_db.migrate(conn)
            rows = await conn.fetch("SELECT public_id, streams, level, all_domains FROM credentials ORDER BY id")
            assert [tuple(r) for r in rows] == [("00000000", [T], "send", True), ("00000001", [B], "send", True)]
            assert await conn.fetchval("SELECT count(*) FROM credential_domains") == 0
            listed = await credentials_store.list_all(conn)
            assert [(r["streams"], r["level"], r["domains"]) for r in listed] == [([T], "send", None),
                                                                                 ([B], "send", None)]
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_listener_stream_with_both_streams_token_over_two_listeners(smtp_factory: Any) -> None:
    # One service, a bulk listener and a default one: the same two-stream token stores each
    # message on the stream of the listener it came through.
    env: Env = await smtp_factory(smtp={"listeners": [
        {"address": "127.0.0.1", "port": 1, "mode": "starttls", "stream": B},
        {"address": "127.0.0.1", "port": 2, "mode": "implicit"},
    ]})
    token = await issue(env, [T, B])
    for implicit in (False, True):
        async with env.raw(implicit=implicit) as c:
            assert await c.login(token) == reply_line("AUTH_OK")
            assert (await attempt(c, f"app@{DOMAIN}", f"app@{DOMAIN}")).startswith("250 ")
        await asyncio.sleep(0)
    assert [r["stream"] for r in await stored(env)] == [B, T]


@pytest.mark.parametrize(("streams", "level", "stream"), [
    ([T, B], "read", T),        # a read token, whichever adapter let it through
    ([T], "send", B),           # a session stream outside the token's streams
])
async def test_submission_itself_refuses_a_principal_without_sending_rights(
        smtp_factory: Any, streams: list[str], level: str, stream: str) -> None:
    from mailtrap_smtp.auth import Principal
    from mailtrap_smtp.outcomes import Outcome, Rejected
    from mailtrap_smtp.permissions import Level
    from mailtrap_smtp.submission import Envelope

    env = await start(smtp_factory)
    principal = Principal(credential_id=env.account.credential_id, account_id=env.account.id, account_name="acme",
                          stream=stream, monthly_limit=1000, max_message_size=10**6, billing_anchor_day=1,
                          sending_domains={DOMAIN: 1}, streams=frozenset(streams), level=Level(level))
    envelope = Envelope(mail_from=f"app@{DOMAIN}", sender_domain_id=1, recipients=["user@dest.test"])
    with pytest.raises(Rejected) as info:
        await env.service.submission.submit(principal, envelope, message())
    assert info.value.outcome is Outcome.NOT_PERMITTED
    await env.assert_nothing_stored()
