"""The real `serve --role http`: the API answers over TLS from the serve process (one and two
processes on one port), and the process exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http_util import minimal
from tests.paths import ROOT
from tests.serve_util import free_port as _free_port
from tests.serve_util import wait_port as _wait_port
from tests.smtp_util import create_account


@pytest.mark.parametrize("processes", [1, 2])
async def test_serve_role_http(pool: Any, make_config: Any, tmp_path: Path, client_ssl_context: ssl.SSLContext,
                               processes: int) -> None:
    port = _free_port()
    make_config(http={"listeners": [{"address": "127.0.0.1", "port": port, "stream": "transactional"}],
                      "rate_limit_requests": 3})
    acct = await create_account(pool)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"), "serve", "--role", "http",
        "--processes", str(processes), stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    try:
        await _wait_port(port, proc)
        statuses = []
        for _ in range(4):  # new connections: spread over the processes, one budget for all of them
            async with httpx.AsyncClient(verify=client_ssl_context, timeout=30) as c:
                r = await c.post(f"https://127.0.0.1:{port}/api/send", json=minimal(),
                                 headers={"Authorization": f"Bearer {acct.token}"})
                statuses.append(r.status_code)
        assert statuses == [200, 200, 200, 429]
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert b"HTTPS API listening on" in err


async def test_one_failed_token_brake_for_smtp_and_the_api_across_processes(
        pool: Any, make_config: Any, tmp_path: Path, client_ssl_context: ssl.SSLContext) -> None:
    from tests.smtp_util import RawClient

    http_port, smtp_port = _free_port(), _free_port()
    make_config(http={"listeners": [{"address": "127.0.0.1", "port": http_port, "stream": "transactional"}]},
                smtp={"listeners": [{"address": "127.0.0.1", "port": smtp_port, "mode": "implicit"}]},
                limits={"auth_failures_per_ip": 3})
    acct = await create_account(pool)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"), "serve", "--role", "all",
        "--processes", "2", stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    guess = "mts_00000000_" + "a" * 32  # an unknown token id: counted under the IP alone
    try:
        await _wait_port(http_port, proc)
        await _wait_port(smtp_port, proc)
        for _ in range(3):  # new connections: spread over both processes
            c = RawClient("127.0.0.1", smtp_port, client_ssl_context, implicit=True)
            await c.connect()
            assert (await c.login(guess)).startswith("535 ")
            c.close()
        async with httpx.AsyncClient(verify=client_ssl_context, timeout=30) as c:
            refused = await c.get(f"https://127.0.0.1:{http_port}/api/accounts",
                                  headers={"Authorization": "Bearer mts_11111111_" + "a" * 32})
        async with httpx.AsyncClient(verify=client_ssl_context, timeout=30) as c:
            ok = await c.get(f"https://127.0.0.1:{http_port}/api/accounts",
                             headers={"Authorization": f"Bearer {acct.token}"})
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    assert (refused.status_code, refused.json()) == (429, {"errors": "Too many authentication failures"})
    assert int(refused.headers["retry-after"]) >= 1
    assert ok.status_code == 200  # a real token is braked under IP/its id, which no one guessed
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
