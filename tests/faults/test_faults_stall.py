"""A database that stalls: a locked table gets `451` within the statement bound and nothing is stored
afterwards; SIGTERM while PostgreSQL is frozen ends `serve` within the grace period plus a bound
(issue 9)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.app import smtp_service
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.store import db as store_db
from tests import faults_support
from tests.faults_support import OwnPostgres, stored
from tests.mx_sink import free_port
from tests.serve_util import start_serve, wait_port, write_config
from tests.smtp_util import RawClient, create_account, message, reply_line, smtp_sections

own_pg = faults_support.own_pg  # fixtures
fault_dsn = faults_support.fault_dsn

BOUND = 1.0  # [database] statement_timeout_seconds in these tests


async def test_locked_messages_table_gets_451_within_the_bound_and_stores_nothing(
        make_config: Any, db_dsn: str, pool: Any, client_ssl_context: Any) -> None:
    cfg = make_config(**smtp_sections(database={"statement_timeout_seconds": BOUND}))
    acct = await create_account(pool)
    svc_pool = await store_db.create_pool(db_dsn, min_size=1, max_size=5,
                                          statement_timeout=cfg.database.statement_timeout_seconds)
    svc = smtp_service(cfg, svc_pool, signer=KeyStore(svc_pool, os.urandom(32)), port_override=0)
    await svc.start()
    locker = await asyncpg.connect(db_dsn)
    lock = locker.transaction()
    try:
        c = RawClient("127.0.0.1", svc.listeners[0].port, client_ssl_context)
        await c.connect()
        assert (await c.login(acct.token)).startswith("235 ")
        assert (await c.cmd("MAIL FROM:<app@example.com>")).startswith("250 ")
        assert (await c.cmd("RCPT TO:<user@dest.test>")).startswith("250 ")
        await lock.start()
        await locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        assert (await c.cmd("DATA")).startswith("354 ")
        await c.send(message() + b".\r\n")
        # The client hears within the bound (twice the statement timeout at most, plus slack),
        # long before an SMTP client gives up (RFC 5321 §4.5.3.2).
        assert await c.reply(timeout=2 * BOUND + 5) == reply_line("TEMPORARY_FAILURE")
        await lock.rollback()
        # PostgreSQL aborted the statement: nothing commits later, the retry will not duplicate.
        await asyncio.sleep(BOUND)
        assert await stored(pool) == {"messages": 0, "recipients": 0, "used": 0, "events": 0}
        # And the same session goes on working once the lock is gone.
        assert (await c.cmd("MAIL FROM:<app@example.com>")).startswith("250 ")
        assert (await c.cmd("RCPT TO:<user@dest.test>")).startswith("250 ")
        assert (await c.cmd("DATA")).startswith("354 ")
        await c.send(message() + b".\r\n")
        assert (await c.reply(timeout=10)).startswith("250 ")
        assert (await stored(pool))["messages"] == 1
        c.writer.close()
    finally:
        if not locker.is_closed():
            await locker.close()
        await svc.stop(1.0)
        await svc_pool.close()


@pytest.mark.timeout(90)
async def test_sigterm_while_the_database_is_frozen_ends_within_grace_plus_a_bound(
        own_pg: OwnPostgres, fault_dsn: str, tmp_path: Path, cert_files: tuple[Path, Path],
        client_ssl_context: Any) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    config = write_config(tmp_path, fault_dsn, cert_files, port,
                          delivery={"mode": "sandbox", "poll_interval_seconds": 1.0},
                          dns={"nameservers": ["127.0.0.1:9"], "timeout_seconds": 0.5})
    proc = await start_serve(config, log, "--processes", "1")
    frozen: list[int] = []
    try:
        await wait_port(port, proc)
        pool = await asyncpg.create_pool(fault_dsn, min_size=1, max_size=2)
        try:
            acct = await create_account(pool)
        finally:
            await pool.close()
        # An authenticated session: its process holds a session-slot connection (advisory lock).
        c = RawClient("127.0.0.1", port, client_ssl_context)
        await c.connect()
        assert (await c.login(acct.token)).startswith("235 ")
        frozen = own_pg.freeze()  # a stall: connections stay open, nothing answers
        await asyncio.sleep(1.0)
        proc.terminate()
        # grace (1 s) + a bound: every wait of the shutdown on the database is bounded (the
        # outbox runner's and the retention sweeper's too), and the parent kills a child still
        # alive after grace + 20 s.
        async with asyncio.timeout(1.0 + 20):
            await proc.wait()
        c.writer.close()
    finally:
        own_pg.thaw(frozen)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]
