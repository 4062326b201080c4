"""Migrations and the core repositories against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
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


def _spy_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every statement the batcher runs."""
    sizes: list[int] = []
    real = messages._insert_batch

    async def spy(conn: Any, batch: Any) -> set[uuid.UUID]:
        sizes.append(len(batch))
        return await real(conn, batch)

    monkeypatch.setattr(messages, "_insert_batch", spy)
    return sizes


async def _counts(pool: asyncpg.Pool[Any]) -> tuple[int, int, int, int]:
    return (
        await pool.fetchval("SELECT count(*) FROM messages"),
        await pool.fetchval("SELECT count(*) FROM recipients"),
        await pool.fetchval("SELECT count(*) FROM events WHERE type = 'reception'"),
        await pool.fetchval("SELECT coalesce(sum(used), 0) FROM usage"),
    )


@pytest.mark.parametrize("max_batch", [64, 8, 1])
async def test_batcher_concurrent_accepts_never_exceed_limit(
    pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch, max_batch: int
) -> None:
    sizes = _spy_batches(monkeypatch)
    acct = await accounts.create(pool, "q", monthly_limit=37, max_message_size=1000)
    period = dt.date(2026, 11, 1)
    # Two batchers on the same rows: like two processes, their statements race on the usage row.
    batchers = [messages.AcceptBatcher(pool, max_batch=max_batch) for _ in range(2)]

    async def one(i: int) -> bool:
        try:
            await batchers[i % 2].accept(_msg(acct["id"], 2), period)
        except messages.QuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(one(i) for i in range(40)))
    for b in batchers:
        await b.close()
    assert sum(results) == 18  # 18 * 2 = 36 <= 37 < 38
    assert await usage.used(pool, acct["id"], period) == 36
    assert await _counts(pool) == (18, 36, 18, 36)
    assert max(sizes) == min(max_batch, 20)  # messages really were grouped (20 per batcher)
    rows = await pool.fetch("SELECT m.id, count(r.id) AS n FROM messages m JOIN recipients r "
                            "ON r.message_id = m.id GROUP BY m.id")
    assert sorted(r["n"] for r in rows) == [2] * 18


async def test_batcher_refused_large_message_does_not_block_later_small_one(
    pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _spy_batches(monkeypatch)
    acct = await accounts.create(pool, "a", monthly_limit=5, max_message_size=1000)
    other = await accounts.create(pool, "b", monthly_limit=100, max_message_size=1000)
    period = dt.date(2026, 11, 1)
    await messages.accept(pool, _msg(acct["id"], 3), period)  # used 3 of 5
    batcher = messages.AcceptBatcher(pool)
    large, small, small2 = _msg(acct["id"], 4), _msg(acct["id"], 2), _msg(acct["id"], 1)
    elsewhere = _msg(other["id"], 7)
    outcomes = await asyncio.gather(
        *(batcher.accept(m, period) for m in (large, elsewhere, small, small2)), return_exceptions=True
    )
    await batcher.close()
    # One batch of four: the whole group of `acct` (7 more) does not fit, `other` does; then `acct`'s
    # messages one at a time, in order: large refused (7 > 5), small fits (5), small2 refused (6).
    assert sizes[:2] == [1, 4] and sizes[2:] == [1, 1, 1]
    assert [type(o).__name__ for o in outcomes] == ["QuotaExceeded", "NoneType", "NoneType", "QuotaExceeded"]
    assert await usage.used(pool, acct["id"], period) == 5
    assert await usage.used(pool, other["id"], period) == 7
    stored = {r["id"] for r in await pool.fetch("SELECT id FROM messages")}
    assert large.id not in stored and small2.id not in stored
    assert {small.id, elsewhere.id} <= stored
    assert await _counts(pool) == (3, 12, 3, 12)


async def test_batcher_database_error_fails_the_whole_batch_and_writes_nothing(
    pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _spy_batches(monkeypatch)
    acct = await accounts.create(pool, "e", monthly_limit=100, max_message_size=1000)
    period = dt.date(2026, 11, 1)
    first = _msg(acct["id"], 2)
    await messages.accept(pool, first, period)
    before = await _counts(pool)
    batcher = messages.AcceptBatcher(pool)
    dup = dataclasses.replace(_msg(acct["id"], 1), id=first.id)  # the id already exists
    batch = [_msg(acct["id"], 2), dup, _msg(acct["id"], 3)]
    outcomes = await asyncio.gather(*(batcher.accept(m, period) for m in batch), return_exceptions=True)
    assert sizes[-1] == 3
    assert all(isinstance(o, asyncpg.UniqueViolationError) for o in outcomes)
    assert await _counts(pool) == before
    # The batcher carries on; a lone message commits in a batch of its own.
    await batcher.accept(_msg(acct["id"], 1), period)
    assert sizes[-1] == 1
    assert await _counts(pool) == (before[0] + 1, before[1] + 1, before[2] + 1, before[3] + 1)
    await batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.accept(_msg(acct["id"], 1), period)


async def test_batcher_drops_a_message_whose_caller_gave_up_while_queued(pool: asyncpg.Pool[Any]) -> None:
    acct = await accounts.create(pool, "c", monthly_limit=100, max_message_size=1000)
    period = dt.date(2026, 11, 1)
    batcher = messages.AcceptBatcher(pool)
    kept, dropped = _msg(acct["id"], 1), _msg(acct["id"], 1)
    t_kept = asyncio.create_task(batcher.accept(kept, period))
    t_dropped = asyncio.create_task(batcher.accept(dropped, period))
    await asyncio.sleep(0)  # both queued; the committer has not started yet
    t_dropped.cancel()
    await t_kept
    with pytest.raises(asyncio.CancelledError):
        await t_dropped
    await batcher.close()
    assert [r["id"] for r in await pool.fetch("SELECT id FROM messages")] == [kept.id]
    assert await usage.used(pool, acct["id"], period) == 1


async def test_batcher_byte_budget_splits_batches(pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _spy_batches(monkeypatch)
    acct = await accounts.create(pool, "big", monthly_limit=100, max_message_size=1000)
    period = dt.date(2026, 11, 1)
    raw_len = len(_msg(acct["id"], 1).raw)
    batcher = messages.AcceptBatcher(pool, max_bytes=2 * raw_len + 2)
    batch = [dataclasses.replace(_msg(acct["id"], 1), raw=_msg(acct["id"], 1).raw + b"%d\r\n" % i)
             for i in range(5)]
    await asyncio.gather(*(batcher.accept(m, period) for m in batch))
    await batcher.close()
    assert sizes == [1, 1, 1, 1, 1]  # each is raw_len + 3 bytes: two do not fit the budget
    batcher = messages.AcceptBatcher(pool, max_bytes=2 * raw_len + 6)
    batch += [dataclasses.replace(_msg(acct["id"], 1), raw=b"x" * raw_len + b"%d\r\n" % i) for i in range(5)]
    await asyncio.gather(*(batcher.accept(m, period) for m in batch[5:]))
    await batcher.close()
    assert sizes[5:] == [2, 2, 1]
    assert await _counts(pool) == (10, 10, 10, 10)
    stored = {r["id"]: r["raw"] for r in await pool.fetch("SELECT id, raw FROM messages")}
    assert stored == {m.id: m.raw for m in batch}  # each message's bytes, not a neighbour's


async def test_batcher_retries_skip_sizes_already_refused(
    pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _spy_batches(monkeypatch)
    acct = await accounts.create(pool, "x", monthly_limit=5, max_message_size=1000)
    period = dt.date(2026, 11, 1)
    batcher = messages.AcceptBatcher(pool)
    batch = [_msg(acct["id"], n) for n in (2, 2, 2, 3, 2, 1)]
    outcomes = await asyncio.gather(*(batcher.accept(m, period) for m in batch), return_exceptions=True)
    await batcher.close()
    # 2, 2 fit (4); the third 2 is refused, so the 3 and the last 2 are refused without a statement;
    # the 1 still fits (5).
    assert [o is None for o in outcomes] == [True, True, False, False, False, True]
    assert sizes == [6, 1, 1, 1, 1]
    assert await usage.used(pool, acct["id"], period) == 5
    assert await _counts(pool) == (3, 5, 3, 5)


async def test_batcher_waits_briefly_for_announced_messages(
    pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _spy_batches(monkeypatch)
    acct = await accounts.create(pool, "g", monthly_limit=100, max_message_size=1000)
    period = dt.date(2026, 11, 1)
    batcher = messages.AcceptBatcher(pool, gather_seconds=5.0)
    batcher.expect()
    first = asyncio.create_task(batcher.accept(_msg(acct["id"], 1), period))
    await asyncio.sleep(0.05)  # the committer is waiting for the announced message...
    assert not first.done() and sizes == []
    batcher.stop_expecting()
    await batcher.accept(_msg(acct["id"], 1), period)  # ...which joins the same batch
    await first
    assert sizes == [2]
    batcher.expect()
    batcher.stop_expecting()  # an announcement withdrawn: nothing to wait for
    await batcher.accept(_msg(acct["id"], 1), period)
    assert sizes == [2, 1]
    short = messages.AcceptBatcher(pool, gather_seconds=0.05)
    short.expect()  # never settled: the wait is bounded by gather_seconds
    await short.accept(_msg(acct["id"], 1), period)
    assert sizes == [2, 1, 1]
    for b in (batcher, short):
        await b.close()
    assert await _counts(pool) == (4, 4, 4, 4)


async def test_message_bytes_are_stored_uncompressed(pool: asyncpg.Pool[Any]) -> None:
    # 0002: pglz attempts on mostly incompressible mail cost as much CPU as the rest of the insert.
    storage = await pool.fetchval(
        "SELECT attstorage FROM pg_attribute WHERE attrelid = 'messages'::regclass AND attname = 'raw'")
    assert storage == b"e"  # "char" column; EXTERNAL: out of line, never compressed
