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
        "--processes", str(processes), stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
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
