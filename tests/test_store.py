"""Migrations and the core repositories against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.store import accounts, db, messages, usage


async def test_migrations_are_ordered_and_idempotent(pool: asyncpg.Pool[Any]) -> None:
    files = db.migration_files()
    assert [v for v, _, _ in files] == sorted(v for v, _, _ in files)
    async with pool.acquire() as conn:
        assert await db.migrate(conn) == []  # the template already applied everything
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [(v, n) for v, n, _ in files]


async def test_migrate_applies_each_once_on_empty_database(pg_server: str) -> None:
    name = f"m_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        from tests.conftest import _with_database

        conn = await asyncpg.connect(_with_database(pg_server, name))
        try:
            first = await db.migrate(conn)
            assert first == [n for _, n, _ in db.migration_files()]
            assert await db.migrate(conn) == []
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(first)
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_durability_check_passes_on_default_server(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await db.check_durability(conn)


async def test_durability_check_refuses_synchronous_commit_off(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SET synchronous_commit = off")
        with pytest.raises(db.StoreError, match="synchronous_commit = off"):
            await db.check_durability(conn)
        await conn.execute("SET synchronous_commit = on")


async def test_events_are_append_only(pool: asyncpg.Pool[Any]) -> None:
    from mailtrap_smtp.events import Event
    from mailtrap_smtp.store import events

    acct = await accounts.create(pool, "a", monthly_limit=10, max_message_size=1000)
    await events.record(pool, Event.DOMAIN_APPROVED, account_id=acct["id"])
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE events SET type = 'x'")


def _msg(account_id: int, n: int) -> messages.NewMessage:
    return messages.NewMessage(
        id=uuid.uuid4(), account_id=account_id, credential_id=None, domain_id=None,
        stream="transactional", mail_from="a@x.test", header_from="a@x.test", subject="s",
        message_id_header="<1@x>", category=None, custom_variables=None, client_ip="127.0.0.1",
        raw=b"Subject: s\r\n\r\nbody\r\n", recipients=[f"r{i}@Dest.test" for i in range(n)],
    )


async def test_quota_charge_never_exceeds_limit_under_concurrency(pool: asyncpg.Pool[Any]) -> None:
    acct = await accounts.create(pool, "q", monthly_limit=37, max_message_size=1000)
    period = dt.date(2026, 11, 1)

    async def one() -> bool:
        try:
            await messages.accept(pool, _msg(acct["id"], 2), period)
        except messages.QuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(40)))
    assert sum(results) == 18  # 18 * 2 = 36 <= 37 < 38
    assert await usage.used(pool, acct["id"], period) == 36
    assert await pool.fetchval("SELECT count(*) FROM messages") == 18
    assert await pool.fetchval("SELECT count(*) FROM recipients") == 36
    assert await pool.fetchval("SELECT count(*) FROM events WHERE type = 'reception'") == 18


async def test_first_message_of_a_period_over_the_limit_is_refused(pool: asyncpg.Pool[Any]) -> None:
    acct = await accounts.create(pool, "small", monthly_limit=2, max_message_size=1000)
    with pytest.raises(messages.QuotaExceeded):
        await messages.accept(pool, _msg(acct["id"], 3), dt.date(2026, 11, 1))
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
    assert await usage.used(pool, acct["id"], dt.date(2026, 11, 1)) == 0


async def test_pool_connections_keep_synchronous_commit_on_after_reuse(pool: asyncpg.Pool[Any]) -> None:
    for _ in range(3):
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
            await conn.execute("SET synchronous_commit = off")  # a careless caller...
            await conn.execute("RESET ALL")  # ...and a reset go back to the startup value: on


async def test_accept_is_all_or_nothing(pool: asyncpg.Pool[Any]) -> None:
    acct = await accounts.create(pool, "m", monthly_limit=3, max_message_size=1000)
    period = dt.date(2026, 11, 1)

    def msg(n: int) -> messages.NewMessage:
        return _msg(acct["id"], n)

    m1 = msg(2)
    async with pool.acquire() as conn, conn.transaction():
        await messages.accept(conn, m1, period)
    rows = await messages.recipients_of(pool, m1.id)
    assert [(r["rcpt"], r["domain"], r["state"]) for r in rows] == [
        ("r0@Dest.test", "dest.test", "queued"), ("r1@Dest.test", "dest.test", "queued")]
    with pytest.raises(messages.QuotaExceeded):
        async with pool.acquire() as conn, conn.transaction():
            await messages.accept(conn, msg(2), period)
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1
    assert await pool.fetchval("SELECT count(*) FROM events WHERE type = 'reception'") == 1
    assert await usage.used(pool, acct["id"], period) == 2
