"""`serve --processes 2` when a process dies: it is restarted (after its share of the shared per-IP
counts is taken out) and the service goes on; deaths in a row stop the service non-zero (issue 9)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.mx_sink import free_port
from tests.serve_util import children, start_serve, stop_serve, wait_log, wait_port


def _socket_owner(server_port: int, client_port: int, pids: list[int]) -> int:
    """The pid holding the server side of the loopback connection from `client_port`."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            inode = fields[9]
    assert inode is not None
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError("no owner found")


async def _greeting(port: int) -> tuple[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(10):
        return (await reader.readline()).decode().rstrip("\r\n"), writer


async def _serving_processes(proc: Any, n: int) -> list[int]:
    """The pids of serve's n service processes (not multiprocessing's resource tracker); a process
    may end while it is looked at (these tests kill them)."""
    async with asyncio.timeout(30):
        while True:
            kids = []
            for k in children(proc.pid):
                try:
                    if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes():
                        kids.append(k)
                except OSError:
                    continue
            if len(kids) >= n:
                return kids
            await asyncio.sleep(0.1)


async def _replaced(proc: Any, gone: int, timeout: float = 30) -> list[int]:
    """The two service processes once `gone` has been replaced by a new one."""
    async with asyncio.timeout(timeout):
        while True:
            kids = await _serving_processes(proc, 2)
            if gone not in kids:
                return kids
            await asyncio.sleep(0.1)


@pytest.mark.timeout(90)
async def test_a_killed_process_is_restarted_and_its_connections_uncounted(make_config: Any, tmp_path: Path) -> None:
    port = free_port()
    make_config(smtp={"listeners": [{"address": "127.0.0.1", "port": port, "mode": "starttls"}]},
                limits={"connections_per_ip": 2})
    log = tmp_path / "serve.log"
    proc = await start_serve(tmp_path / "config.toml", log, "--role", "smtp", "--processes", "2")
    writers = []
    try:
        await wait_port(port, proc)
        await wait_log(log, "SMTP listening on", count=2)
        kids = await _serving_processes(proc, 2)
        held = []  # (client port, writer) of the connections that count against the cap
        while len(held) < 2:
            greeting, w = await _greeting(port)
            writers.append(w)
            if greeting.startswith("220 "):
                held.append((w.get_extra_info("sockname")[1], w))
        owners = [_socket_owner(port, p, kids) for p, _ in held]
        victim = owners[0]
        os.kill(victim, signal.SIGKILL)
        await wait_log(log, "restarting it")
        await _replaced(proc, victim)
        await wait_log(log, "SMTP listening on", count=3)
        survivors = sum(o != victim for o in owners)
        # The victim's connections no longer count; the survivors' still do (cap 2).
        greetings = []
        for _ in range(3):
            g, w = await _greeting(port)
            writers.append(w)
            greetings.append(g)
        assert sum(g.startswith("220 ") for g in greetings) == 2 - survivors, greetings
        assert proc.returncode is None
    finally:
        for w in writers:
            w.close()
        rc = await stop_serve(proc)
    assert rc == 0, log.read_text(errors="replace")[-3000:]


@pytest.mark.timeout(120)
async def test_repeated_deaths_stop_the_service_non_zero(make_config: Any, tmp_path: Path) -> None:
    port = free_port()
    make_config(smtp={"listeners": [{"address": "127.0.0.1", "port": port, "mode": "starttls"}]})
    log = tmp_path / "serve.log"
    proc = await start_serve(tmp_path / "config.toml", log, "--role", "smtp", "--processes", "2")
    try:
        await wait_port(port, proc)
        kids = await _serving_processes(proc, 2)
        for death in range(1, 6):  # the limit: 5 deaths within 60 s
            victim = kids[0]
            os.kill(victim, signal.SIGKILL)
            if death < 5:
                kids = await _replaced(proc, victim)
        async with asyncio.timeout(30):
            rc = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rc == 1
    text = log.read_text(errors="replace")
    assert text.count("restarting it") == 4
    assert "stopping the service" in text
