"""The real `serve` command: the process starts on the configured event loop, accepts SMTP over
STARTTLS and implicit TLS, and exits 0 on SIGTERM. (A crashed process is restarted:
test_faults_supervisor.py.)"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.serve_util import free_port, one_listener, running, serve, serving_processes, wait_port
from tests.smtp_util import RawClient, reply_line


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_serve_runs_on_the_configured_loop(event_loop: str, make_config, tmp_path: Path,
                                                  client_ssl_context) -> None:
    starttls, implicit = free_port(), free_port()
    make_config(
        server={"event_loop": event_loop},
        smtp={"listeners": [{"address": "127.0.0.1", "port": starttls, "mode": "starttls"},
                            {"address": "127.0.0.1", "port": implicit, "mode": "implicit"}]},
    )
    proc = await serve(tmp_path, 1)
    try:
        await wait_port(starttls, proc)
        await wait_port(implicit, proc)
        plain = RawClient("127.0.0.1", starttls, client_ssl_context)
        await plain.connect()
        assert await plain.cmd("NOOP") == reply_line("NOOP_OK")
        assert await plain.cmd("QUIT") == reply_line("BYE")
        assert await plain.closed()
        tls = RawClient("127.0.0.1", implicit, client_ssl_context, implicit=True)
        await tls.connect()
        assert await tls.cmd("NOOP") == reply_line("NOOP_OK")
        assert await tls.cmd("QUIT") == reply_line("BYE")
        assert await tls.closed()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    log = err.decode(errors="replace")
    assert f"event loop {event_loop}" in log


async def test_per_ip_cap_holds_across_processes(make_config, tmp_path: Path) -> None:
    # With two processes on one port the kernel spreads a client's connections over both; the
    # cap must still count them together.
    port = free_port()
    one_listener(make_config, port, limits={"connections_per_ip": 2})
    proc = await serve(tmp_path, 2)
    writers = []
    try:
        await wait_port(port, proc)
        async with asyncio.timeout(30):  # both processes listening (each logs its listener)
            seen = b""
            while seen.count(b"SMTP listening on") < 2:
                assert proc.stderr is not None
                seen += await proc.stderr.readline()
        greetings = []
        for _ in range(12):  # spread over both processes unless the kernel is very unlucky (2 / 4096)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
            async with asyncio.timeout(10):
                greetings.append((await reader.readline()).decode().rstrip("\r\n"))
        assert sum(g.startswith("220 ") for g in greetings) == 2, greetings
        assert [g for g in greetings if not g.startswith("220 ")] == [reply_line("TOO_MANY_CONNECTIONS_IP")] * 10
    finally:
        for w in writers:
            w.close()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await proc.communicate()
    assert proc.returncode == 0


async def test_processes_do_not_outlive_a_killed_parent(make_config, tmp_path: Path) -> None:
    port = free_port()
    one_listener(make_config, port)
    proc = await serve(tmp_path, 2, stderr=asyncio.subprocess.DEVNULL)
    kids: list[int] = []
    try:
        await wait_port(port, proc)
        kids = await serving_processes(proc, 2)
    finally:
        proc.kill()  # SIGKILL: the parent gets no chance to stop them itself
        await proc.wait()
    assert len(kids) == 2
    alive = kids
    for _ in range(300):  # bounded: 30 s for the kernel to deliver PR_SET_PDEATHSIG and them to exit
        alive = [k for k in kids if running(k)]
        if not alive:
            break
        await asyncio.sleep(0.1)
    assert alive == []
