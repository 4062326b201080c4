"""PostgreSQL restarted under a running `serve` (crash: `-m immediate`, orderly: `-m fast`) while
messages are accepted and delivered: nothing accepted is lost, delivery resumes by itself, SMTP
recovers without a restart (the first AUTH after the restart succeeds), one log line each for
the outage and the recovery (issue 9)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import faults_support
from tests.faults_support import OwnPostgres
from tests.mx_sink import MxSink, free_port
from tests.serve_util import send_one, start_serve, stop_serve, wait_log, wait_port, write_config
from tests.smtp_util import create_account

own_pg = faults_support.own_pg  # fixtures
fault_dsn = faults_support.fault_dsn

DELIVERY = {"mode": "mx", "lease_seconds": 3.0, "poll_interval_seconds": 1.0, "connect_timeout_seconds": 2.0,
            "command_timeout_seconds": 5.0, "retry_schedule_seconds": [1], "retry_interval_min_seconds": 1,
            "retry_interval_max_seconds": 2}


async def _outcome(dsn: str) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]]]:
    """Each recipient's state, and the details of its delivery events."""
    conn = await asyncpg.connect(dsn)
    try:
        states = {r["rcpt"]: r["state"] for r in await conn.fetch("SELECT rcpt, state FROM recipients")}
        evs: dict[str, list[dict[str, Any]]] = {}
        for r in await conn.fetch(
                """SELECT r.rcpt, e.details FROM events e JOIN recipients r ON r.id = e.recipient_id
                    WHERE e.type = 'delivery'"""):
            d = r["details"]
            evs.setdefault(r["rcpt"], []).append(json.loads(d) if isinstance(d, str) else d)
        return states, evs
    finally:
        await conn.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["immediate", "fast"])
async def test_restart_loses_nothing_and_everything_recovers(
        mode: str, own_pg: OwnPostgres, fault_dsn: str, tmp_path: Path, cert_files: tuple[Path, Path],
        client_ssl_context: Any) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with MxSink() as sink:
        config = write_config(tmp_path, fault_dsn, cert_files, port,
                              delivery={**DELIVERY, "routes": {"dest.test": sink.address}},
                              dns={"nameservers": ["127.0.0.1:9"], "timeout_seconds": 0.5})
        proc = await start_serve(config, log, "--processes", "1")
        try:
            await wait_port(port, proc)
            pool = await asyncpg.create_pool(fault_dsn, min_size=1, max_size=2)
            try:
                acct = await create_account(pool)
            finally:
                await pool.close()
            accepted: list[str] = []

            async def send(rcpt: str) -> tuple[str, str]:
                try:
                    auth, data = await send_one(port, client_ssl_context, acct.token, rcpt)
                except (ConnectionError, TimeoutError):
                    return "", ""
                if data.startswith("250 "):
                    accepted.append(rcpt)
                return auth, data

            for i in range(5):
                assert (await send(f"before{i}@dest.test"))[1].startswith("250 ")
            own_pg.stop(mode)
            # No AUTH meanwhile: the session-slot connection of the AUTHs above is now dead, and
            # the delivery loop is the one to notice the outage.
            await wait_log(log, "database unavailable", timeout=15)
            own_pg.start()
            # The first AUTH after the restart is served (no stale pooled connection answering 454).
            auth, data = await send("after0@dest.test")
            assert auth.startswith("235 "), auth
            assert data.startswith("250 "), data
            for i in range(1, 5):
                assert (await send(f"after{i}@dest.test"))[1].startswith("250 ")

            async with asyncio.timeout(40):  # delivery resumes by itself (lease 3 s, poll 1 s)
                while True:
                    states, evs = await _outcome(fault_dsn)
                    if not set(accepted) - set(sink.by_rcpt()) and all(
                            states.get(r) == "delivered" for r in accepted):
                        break
                    await asyncio.sleep(0.2)
        finally:
            rc = await stop_serve(proc)
    text = log.read_text(errors="replace")
    assert rc == 0, text[-3000:]
    got = sink.by_rcpt()
    # None lost; each delivered once, or again only after an attempt whose outcome was not
    # recorded, and then the event says so.
    assert all(states[r] == "delivered" for r in accepted), states
    for r in accepted:
        if len(got[r]) > 1:
            assert any(e.get("possible_duplicate") for e in evs[r]), (r, evs[r])
    assert text.count("database unavailable") == 1, text[-3000:]
    assert text.count("database available again") == 1, text[-3000:]
