"""The supervision of background loops (supervise.py, store/health.py) with a real PostgreSQL that
goes away and comes back: a loop never ends on an error, an outage is logged once and its end once,
and a loop that ends anyway is reported as fatal (issue 9)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp import supervise
from mailtrap_smtp.store.health import DatabaseHealth
from tests import faults_support
from tests.faults_support import OwnPostgres

own_pg = faults_support.own_pg  # fixtures
fault_dsn = faults_support.fault_dsn


async def test_a_loop_survives_an_outage_and_logs_it_once(own_pg: OwnPostgres, fault_dsn: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    health = DatabaseHealth()
    rounds: list[bool] = []

    async def step() -> float:
        try:
            conn = await asyncpg.connect(fault_dsn, timeout=2)
        except BaseException:
            rounds.append(False)
            raise
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
        rounds.append(True)
        return 0.05

    task = supervise.spawn("test loop", supervise.keep_running("test loop", step, health=health, max_delay=0.2))
    try:
        async with asyncio.timeout(10):
            while not rounds:
                await asyncio.sleep(0.05)
        own_pg.stop("fast")
        async with asyncio.timeout(10):
            while rounds.count(False) < 5:  # several failed rounds, one log line
                await asyncio.sleep(0.05)
        own_pg.start()
        async with asyncio.timeout(15):
            while not health_back(caplog):
                await asyncio.sleep(0.05)
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=5)
    text = caplog.text
    assert text.count("database unavailable") == 1, text
    assert text.count("database available again") == 1, text
    assert "Traceback" not in text  # an outage is not a bug


def health_back(caplog: pytest.LogCaptureFixture) -> bool:
    return "database available again" in caplog.text


async def test_a_loop_that_ends_is_reported_as_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, BaseException | None]] = []
    monkeypatch.setattr(supervise, "on_fatal", lambda name, error: seen.append((name, error)))

    class Bug(BaseException):
        """Not an Exception: keep_running does not catch it, the loop ends."""

    async def broken() -> Any:
        raise Bug

    task = supervise.spawn("broken loop", supervise.keep_running("broken loop", broken))
    await asyncio.wait({task}, timeout=5)
    await asyncio.sleep(0)
    assert [name for name, _ in seen] == ["broken loop"]
    assert isinstance(seen[0][1], Bug)
