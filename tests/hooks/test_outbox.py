"""The outbox framework: durable cursors, leases, the commit-order gap, effects committed with the cursor."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import asyncpg
import pytest

from mailtrap_smtp import outbox
from mailtrap_smtp.events import Event
from mailtrap_smtp.store import events as events_store
from mailtrap_smtp.store import outbox as store
from mailtrap_smtp.store.types import Conn

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


class Recorder(outbox.TransactionalConsumer):
    """Writes every event it applies into `seen`, in the same transaction as its cursor."""

    kind: ClassVar[str] = "recorder"
    batch_size: ClassVar[int] = 100

    def __init__(self, fail_on: uuid.UUID | None = None) -> None:
        self.fail_on = fail_on

    async def apply(self, tx: Conn, events: Sequence[outbox.OutboxEvent]) -> None:
        await tx.executemany("INSERT INTO seen (event_id) VALUES ($1)", [(e.event_id,) for e in events])
        if self.fail_on is not None and any(e.event_id == self.fail_on for e in events):
            raise RuntimeError("effect failed")


@pytest.fixture
async def seen_table(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute("CREATE TABLE seen (n bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE)")


async def _record(conn: Conn, n: int = 1) -> list[uuid.UUID]:
    for _ in range(n):
        await events_store.record(conn, Event.DELIVERY, details={"k": "v"})
    rows = await conn.fetch("SELECT event_id FROM events ORDER BY id DESC LIMIT $1", n)
    return [r["event_id"] for r in reversed(rows)]


async def _seen(pool: asyncpg.Pool[Any]) -> list[uuid.UUID]:
    return [r["event_id"] for r in await pool.fetch("SELECT event_id FROM seen ORDER BY n")]


async def test_applies_every_event_in_order_across_pages(pool: asyncpg.Pool[Any], seen_table: None) -> None:
    ids = []
    async with pool.acquire() as conn, conn.transaction():
        ids += await _record(conn, 150)
    ids += await _record(pool, 130)  # each its own transaction
    runner = outbox.OutboxRunner(pool, [Recorder()])
    assert await runner.run_once() == 1
    assert await _seen(pool) == ids
    assert await runner.run_once() == 0  # nothing left: not even claimed


async def test_an_event_committed_late_with_a_smaller_position_is_not_skipped(
        pool: asyncpg.Pool[Any], seen_table: None) -> None:
    runner = outbox.OutboxRunner(pool, [Recorder()])
    await runner.run_once()
    slow = await pool.acquire()
    tx = slow.transaction()
    await tx.start()
    await slow.execute("SELECT pg_current_xact_id()")  # the slow transaction's xid is the older one
    fast_ids = await _record(pool, 2)                   # committed while `slow` is still open
    slow_ids = await _record(slow, 1)
    await runner.run_once()
    # The fast events are committed, but a transaction older than theirs is still running: the
    # cursor must not pass them yet, or it could pass the slow event too.
    assert await _seen(pool) == []
    await tx.commit()
    await pool.release(slow)
    await runner.run_once()
    assert await _seen(pool) == slow_ids + fast_ids
    assert (await pool.fetchval("SELECT max(id) FROM events WHERE event_id = $1", slow_ids[0])) > \
           (await pool.fetchval("SELECT max(id) FROM events WHERE event_id = $1", fast_ids[-1]))


async def test_an_id_allocated_first_and_committed_last_is_not_skipped(
        pool: asyncpg.Pool[Any], seen_table: None) -> None:
    """The classic gap: the smaller bigserial id belongs to the transaction that commits last."""
    runner = outbox.OutboxRunner(pool, [Recorder()])
    await runner.run_once()
    slow = await pool.acquire()
    tx = slow.transaction()
    await tx.start()
    slow_ids = await _record(slow, 1)
    fast_ids = await _record(pool, 1)
    await runner.run_once()
    assert await _seen(pool) == []
    await tx.rollback()  # and an aborted transaction leaves nothing to wait for
    await pool.release(slow)
    await runner.run_once()
    assert await _seen(pool) == fast_ids
    assert slow_ids[0] not in await _seen(pool)


async def test_a_failing_effect_rolls_back_with_the_cursor_and_is_retried(
        pool: asyncpg.Pool[Any], seen_table: None) -> None:
    ids = await _record(pool, 3)
    failing = Recorder(fail_on=ids[1])
    runner = outbox.OutboxRunner(pool, [failing], lease_seconds=60, clock=lambda: T0)
    await runner.run_once()
    assert await _seen(pool) == []
    cur = await store.get(pool, "recorder")
    assert cur is not None and cur.position == store.BEGINNING and cur.lease_owner == runner.owner
    # The failed run keeps its lease until it runs out; then the (fixed) consumer goes on.
    later = outbox.OutboxRunner(pool, [Recorder()], clock=lambda: T0 + dt.timedelta(seconds=61))
    await later.run_once()
    assert await _seen(pool) == ids


async def test_a_killed_holder_loses_nothing_and_cannot_move_the_cursor_after_takeover(
        pool: asyncpg.Pool[Any], seen_table: None) -> None:
    ids = await _record(pool, 5)
    await store.ensure(pool, "recorder", "recorder", from_beginning=True)
    # A process claimed the cursor and read a page, then died (no release, no advance).
    dead = await store.claim(pool, ["recorder"], "dead", 1, 30, now=T0)
    assert [c.name for c in dead] == ["recorder"]
    page = await store.read(pool, store.BEGINNING, 100)
    # While its lease lasts nobody else takes the cursor.
    alive = outbox.OutboxRunner(pool, [Recorder()], clock=lambda: T0 + dt.timedelta(seconds=29))
    assert await alive.run_once() == 0
    takeover = outbox.OutboxRunner(pool, [Recorder()], clock=lambda: T0 + dt.timedelta(seconds=31))
    assert await takeover.run_once() == 1
    assert await _seen(pool) == ids
    # The dead holder coming back to life cannot move the cursor any more.
    assert not await store.advance(pool, "recorder", "dead", page.end, now=T0 + dt.timedelta(seconds=31))


async def test_processes_split_the_cursors_of_a_family_and_each_runs_once(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute("CREATE TABLE per_key (key text, event_id uuid, PRIMARY KEY (key, event_id))")

    class PerKey:
        kind = "perkey"
        singleton = False
        from_beginning = True

        def __init__(self) -> None:
            self.keys: list[str] = []

        async def step(self, cursor: outbox.Cursor) -> outbox.Step:
            self.keys.append(cursor.key)
            page = await cursor.read(1000)
            await asyncio.sleep(0.01)  # both runners are claiming meanwhile

            async def effect(tx: Conn) -> None:
                await tx.executemany("INSERT INTO per_key VALUES ($1, $2)",
                                     [(cursor.key, e.event_id) for e in page.events])

            await cursor.advance(page.end, effect)
            return outbox.Step.IDLE

    for k in range(10):
        await store.ensure(pool, f"perkey:{k}", "perkey", from_beginning=True)
    await _record(pool, 7)
    a, b = PerKey(), PerKey()
    ra = outbox.OutboxRunner(pool, [a], concurrency=5)
    rb = outbox.OutboxRunner(pool, [b], concurrency=5)
    await asyncio.gather(ra.run_once(), rb.run_once())
    assert sorted(a.keys + b.keys) == sorted(str(k) for k in range(10))
    assert a.keys and b.keys
    assert await pool.fetchval("SELECT count(*) FROM per_key") == 70  # a duplicate would violate the key


async def test_a_cursor_created_at_the_horizon_skips_the_past_only(pool: asyncpg.Pool[Any],
                                                                     seen_table: None) -> None:
    await _record(pool, 3)

    class Late(Recorder):
        kind: ClassVar[str] = "late"
        from_beginning: ClassVar[bool] = False

    runner = outbox.OutboxRunner(pool, [Late()])
    await runner.run_once()
    assert await _seen(pool) == []
    new = await _record(pool, 2)
    await runner.run_once()
    assert await _seen(pool) == new


async def test_the_running_service_wakes_on_notify_and_stops_cleanly(pool: asyncpg.Pool[Any],
                                                                      seen_table: None) -> None:
    runner = outbox.OutboxRunner(pool, [Recorder()], poll_seconds=3600)
    await runner.start()
    try:
        await asyncio.sleep(0.2)
        ids = await _record(pool, 4)
        await outbox.notify(pool)
        for _ in range(200):
            if len(await _seen(pool)) == 4:
                break
            await asyncio.sleep(0.02)
        assert await _seen(pool) == ids
    finally:
        await runner.stop()
    cur = await store.get(pool, "recorder")
    assert cur is not None and cur.lease_owner is None


async def test_the_running_service_survives_its_connections_being_killed(pool: asyncpg.Pool[Any], db_dsn: str,
                                                                         seen_table: None) -> None:
    """A database restart as the service sees it: every connection it holds (the LISTEN one too)
    dies at once; rounds fail, back off, and resume on new connections."""
    runner = outbox.OutboxRunner(pool, [Recorder()], poll_seconds=0.1)
    await runner.start()
    admin = await asyncpg.connect(db_dsn)
    try:
        first = await _record(admin, 2)
        await _wait_seen(pool, first)
        killed = await admin.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()""")
        assert killed >= 1
        later = await _record(admin, 3)
        await outbox.notify(admin)
        await _wait_seen(pool, first + later)
    finally:
        await admin.close()
        await runner.stop()


async def _wait_seen(pool: asyncpg.Pool[Any], ids: list[uuid.UUID]) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                if await _seen(pool) == ids:
                    return
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                pass  # this test's own pool meets the killed connections too
            await asyncio.sleep(0.05)
