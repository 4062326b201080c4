"""The HTTPS Email API across a PostgreSQL restart (issue 9): while the database is away a send
gets 503 with Mailtrap's error shape and nothing is stored or charged; once it is back the API
answers again without a restart of `serve`."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests import faults_support
from tests.faults_support import OwnPostgres
from tests.http_util import minimal
from tests.mx_sink import free_port
from tests.serve_util import start_serve, stop_serve, wait_log, wait_port, write_config
from tests.smtp_util import create_account

own_pg = faults_support.own_pg  # fixtures
fault_dsn = faults_support.fault_dsn

UNAVAILABLE = {"success": False, "errors": ["Service temporarily unavailable, please try again later"]}


async def _counts(dsn: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return (await conn.fetchval("SELECT count(*) FROM messages"),
                await conn.fetchval("SELECT count(*) FROM recipients"),
                await conn.fetchval("SELECT coalesce(sum(used), 0) FROM usage"))
    finally:
        await conn.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["immediate", "fast"])
async def test_api_recovers_from_a_restart_and_stores_nothing_meanwhile(
        mode: str, own_pg: OwnPostgres, fault_dsn: str, tmp_path: Path, cert_files: tuple[Path, Path],
        ca_file: Path) -> None:
    smtp_port, http_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    config = write_config(tmp_path, fault_dsn, cert_files, smtp_port,
                          http={"listeners": [{"address": "127.0.0.1", "port": http_port}],
                                "token_cache_seconds": 0},
                          delivery={"mode": "sandbox"})
    proc = await start_serve(config, log, "--processes", "1")
    try:
        await wait_port(http_port, proc)
        pool = await asyncpg.create_pool(fault_dsn, min_size=1, max_size=2)
        try:
            acct = await create_account(pool)
        finally:
            await pool.close()
        headers = {"Authorization": f"Bearer {acct.token}"}
        trust = ssl.create_default_context(cafile=str(ca_file))
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{http_port}", verify=trust, timeout=30) as client:
            first = await client.post("/api/send", json=minimal(), headers=headers)
            assert first.status_code == 200, first.text
            before = await _counts(fault_dsn)
            own_pg.stop(mode)
            during = await client.post("/api/send", json=minimal(), headers=headers)
            assert (during.status_code, during.json()) == (503, UNAVAILABLE)
            own_pg.start()
            assert await _counts(fault_dsn) == before  # the refused request stored and charged nothing
            async with asyncio.timeout(30):  # answered again without restarting serve
                while True:
                    after = await client.post("/api/send", json=minimal(), headers=headers)
                    if after.status_code != 503:
                        break
                    await asyncio.sleep(0.2)
            assert after.status_code == 200, after.text
            assert len(after.json()["message_ids"]) == 1
        await wait_log(log, "database available again", timeout=15)
    finally:
        rc = await stop_serve(proc)
    assert rc == 0, log.read_text(errors="replace")[-3000:]
