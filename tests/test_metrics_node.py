"""`serve --processes 2`: one scrape endpoint for the node, summing what every process counted."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import urllib.request
from pathlib import Path

from tests.serve_util import free_port, serve, wait_listening, wait_port


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _value(text: str, name: str, labels: str) -> float:
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_one_endpoint_sums_all_processes(make_config, tmp_path: Path) -> None:
    smtp_port, metrics_port = free_port(), free_port()
    make_config(smtp={"listeners": [{"address": "127.0.0.1", "port": smtp_port, "mode": "starttls"}]},
                metrics={"listen": f"127.0.0.1:{metrics_port}"}, limits={"connections_per_ip": 100})
    proc = await serve(tmp_path, 2)
    label = f'listener="127.0.0.1:{smtp_port}/starttls"'
    try:
        await wait_port(smtp_port, proc)
        await wait_listening(proc, 2)
        before = _value(await asyncio.to_thread(_scrape, metrics_port), "mts_smtp_connections_total", label)
        for _ in range(10):  # the kernel spreads them over both processes
            reader, writer = await asyncio.open_connection("127.0.0.1", smtp_port)
            async with asyncio.timeout(10):
                assert (await reader.readline()).startswith(b"220 ")
            writer.write(b"QUIT\r\n")
            await reader.read()
            writer.close()
        text = await asyncio.to_thread(_scrape, metrics_port)
        assert _value(text, "mts_smtp_connections_total", label) == before + 10
        with socket.socket() as s:  # no second, per-process endpoint
            assert s.connect_ex(("127.0.0.1", metrics_port + 1)) != 0
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await proc.communicate()
    assert proc.returncode == 0
