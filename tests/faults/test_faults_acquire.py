"""Every connection taken from the pool goes back on every path, also when PostgreSQL stalls
mid-way: a transaction whose BEGIN is interrupted, session slots closed while the unlock cannot
run (issue 9). A pool of ONE connection makes a leak visible: the next statement never gets one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mailtrap_smtp.auth import SessionSlots
from mailtrap_smtp.store import db as store_db
from mailtrap_smtp.store import queue
from tests import faults_support
from tests.faults_support import OwnPostgres

own_pg = faults_support.own_pg  # fixtures
fault_dsn = faults_support.fault_dsn


@pytest.fixture
async def one_connection(fault_dsn: str) -> AsyncIterator[Any]:
    pool = await store_db.create_pool(fault_dsn, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        await store_db.migrate(conn)
    yield pool
    pool.terminate()


async def _usable(pool: Any) -> bool:
    async with asyncio.timeout(10):  # a leaked connection: acquire would wait forever
        return bool(await pool.fetchval("SELECT true"))


async def test_interrupted_begin_gives_the_connection_back(own_pg: OwnPostgres, one_connection: Any) -> None:
    frozen = own_pg.freeze()
    try:
        # queue.retry runs in queue._transaction: acquire, then BEGIN, which the frozen server never
        # answers; the caller gives up (a shutdown, a client gone).
        task = asyncio.create_task(queue.retry(one_connection, uuid.uuid4()))
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.wait({task}, timeout=5)
    finally:
        own_pg.thaw(frozen)
    assert await _usable(one_connection)


async def test_session_slots_close_gives_the_connection_back_when_unlock_cannot_run(
        own_pg: OwnPostgres, one_connection: Any) -> None:
    slots = SessionSlots(one_connection, 10)
    assert await slots.run(lambda conn, held, unlock: conn.fetchval("SELECT pg_try_advisory_lock(42)"))
    frozen = own_pg.freeze()
    try:
        async with asyncio.timeout(10):  # bounded although the server never answers the unlock
            await slots.close()
    finally:
        own_pg.thaw(frozen)
    assert await _usable(one_connection)
    # The connection that went back holds no advisory lock any more (terminated, not reused).
    assert await one_connection.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
