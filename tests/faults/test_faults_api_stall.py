"""The API's half of a stalled database, through the composition root (`app.Service`): a locked table
gets 503 within the statement bound and nothing is stored afterwards, and both front doors of a
process use the one submission and authenticator that `app` built (so the API has the statement
bound of `[database]` exactly as SMTP has it)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from mailtrap_smtp.app import Service
from tests.faults_support import stored
from tests.http_util import minimal
from tests.mx_sink import free_port
from tests.smtp_util import create_account

BOUND = 1.0  # [database] statement_timeout_seconds in these tests
UNAVAILABLE = {"success": False, "errors": ["Service temporarily unavailable, please try again later"]}


@pytest.fixture
async def start_service(make_config: Any, db_dsn: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[Service] = []

    async def start(role: str, **sections: dict[str, Any]) -> tuple[Service, int]:
        port = free_port()
        cfg = make_config(database={"statement_timeout_seconds": BOUND},
                          http={"listeners": [{"address": "127.0.0.1", "port": port, "stream": "transactional"}],
                                "token_cache_seconds": 0},
                          **sections)
        service = Service(cfg, role=role, dsn=db_dsn)
        started.append(service)
        await service.start()
        return service, port

    yield start
    for service in started:
        await service.stop()


async def test_locked_messages_table_gets_503_within_the_bound_and_stores_nothing(
        start_service: Any, db_dsn: str, pool: Any, ca_file: Path) -> None:
    service, port = await start_service("http")
    acct = await create_account(pool)
    headers = {"Authorization": f"Bearer {acct.token}"}
    trust = ssl.create_default_context(cafile=str(ca_file))
    locker = await asyncpg.connect(db_dsn)
    lock = locker.transaction()
    try:
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=trust,
                                     timeout=2 * BOUND + 5) as client:
            await lock.start()
            await locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            # Answered within the bound (twice the statement timeout at most, plus slack): the
            # client's timeout above would fail the request otherwise.
            during = await client.post("/api/send", json=minimal(), headers=headers)
            assert (during.status_code, during.json()) == (503, UNAVAILABLE)
            await lock.rollback()
            # PostgreSQL aborted the statement: nothing commits later, a retry will not duplicate.
            await asyncio.sleep(BOUND)
            assert await stored(pool) == {"messages": 0, "recipients": 0, "used": 0, "events": 0}
            after = await client.post("/api/send", json=minimal(), headers=headers)
            assert after.status_code == 200, after.text
            assert (await stored(pool))["messages"] == 1
    finally:
        if not locker.is_closed():
            await locker.close()
    assert service.http.submission is service.use_cases.submission  # not one of the API's own


async def test_both_doors_share_the_processes_use_cases(start_service: Any) -> None:
    smtp_port = free_port()
    service, _ = await start_service(
        "all", smtp={"listeners": [{"address": "127.0.0.1", "port": smtp_port, "mode": "starttls"}]},
        delivery={"mode": "sandbox"}, dns={"nameservers": ["127.0.0.1:9"], "timeout_seconds": 0.5})
    cases = service.use_cases
    assert cases is not None
    assert service.smtp.submission is cases.submission
    assert service.http.submission is cases.submission
    assert service.http.context.submission is cases.submission
    assert service.smtp.authenticator is cases.authenticator
    assert service.http.context.authenticator is cases.authenticator
