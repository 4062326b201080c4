"""The real `serve` command: the process starts on the configured event loop, accepts SMTP over
STARTTLS and implicit TLS, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.smtp_util import RawClient, reply_line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(30):
        while True:
            assert proc.returncode is None, "serve exited early"
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            w.close()
            return


async def _serve(tmp_path: Path, processes: int, stderr: int = asyncio.subprocess.PIPE,
                 ) -> asyncio.subprocess.Process:
    """`serve --role smtp` with the config make_config wrote to tmp_path."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"),
        "serve", "--role", "smtp", "--processes", str(processes),
        stderr=stderr, cwd=Path(__file__).resolve().parents[1],
    )


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie waiting to be reaped has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "(zombie)" not in status


async def _serving_processes(proc: asyncio.subprocess.Process, n: int) -> list[int]:
    """The pids of serve's n service processes (not multiprocessing's resource tracker)."""
    async with asyncio.timeout(30):
        while True:
            kids = [k for k in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
            if len(kids) >= n:
                return kids
            await asyncio.sleep(0.1)


def _one_listener(make_config, port: int, **sections: dict) -> None:
    make_config(smtp={"listeners": [{"address": "127.0.0.1", "port": port, "mode": "starttls"}]}, **sections)


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_serve_runs_on_the_configured_loop(event_loop: str, make_config, tmp_path: Path,
                                                  client_ssl_context) -> None:
    starttls, implicit = _free_port(), _free_port()
    make_config(
        server={"event_loop": event_loop},
        smtp={"listeners": [{"address": "127.0.0.1", "port": starttls, "mode": "starttls"},
                            {"address": "127.0.0.1", "port": implicit, "mode": "implicit"}]},
    )
    proc = await _serve(tmp_path, 1)
    try:
        await _wait_port(starttls, proc)
        await _wait_port(implicit, proc)
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
    port = _free_port()
    _one_listener(make_config, port, limits={"connections_per_ip": 2})
    proc = await _serve(tmp_path, 2)
    writers = []
    try:
        await _wait_port(port, proc)
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


async def test_a_crashed_process_stops_the_service(make_config, tmp_path: Path) -> None:
    # Its connections would stay in the shared per-IP counts: the service exits non-zero instead of
    # limping on, so its supervisor restarts it cleanly.
    port = _free_port()
    _one_listener(make_config, port)
    proc = await _serve(tmp_path, 2)
    try:
        await _wait_port(port, proc)
        kids = await _serving_processes(proc, 2)
        os.kill(kids[0], signal.SIGKILL)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 1
    assert b"stopping the service" in err
    assert not any(_running(k) for k in kids)


async def test_processes_do_not_outlive_a_killed_parent(make_config, tmp_path: Path) -> None:
    port = _free_port()
    _one_listener(make_config, port)
    proc = await _serve(tmp_path, 2, stderr=asyncio.subprocess.DEVNULL)
    kids: list[int] = []
    try:
        await _wait_port(port, proc)
        kids = await _serving_processes(proc, 2)
    finally:
        proc.kill()  # SIGKILL: the parent gets no chance to stop them itself
        await proc.wait()
    assert len(kids) == 2
    alive = kids
    for _ in range(300):  # bounded: 30 s for the kernel to deliver PR_SET_PDEATHSIG and them to exit
        alive = [k for k in kids if _running(k)]
        if not alive:
            break
        await asyncio.sleep(0.1)
    assert alive == []
