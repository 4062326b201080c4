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


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_serve_runs_on_the_configured_loop(event_loop: str, make_config, tmp_path: Path,
                                                  client_ssl_context) -> None:
    starttls, implicit = _free_port(), _free_port()
    make_config(
        server={"event_loop": event_loop},
        smtp={"listeners": [{"address": "127.0.0.1", "port": starttls, "mode": "starttls"},
                            {"address": "127.0.0.1", "port": implicit, "mode": "implicit"}]},
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"),
        "serve", "--role", "smtp", "--processes", "1",
        stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parents[1],
    )
    try:
        await _wait_port(starttls, proc)
        await _wait_port(implicit, proc)
        plain = RawClient("127.0.0.1", starttls, client_ssl_context)
        await plain.connect()
        assert await plain.cmd("NOOP") == reply_line("NOOP_OK")
        await plain.cmd("QUIT")
        tls = RawClient("127.0.0.1", implicit, client_ssl_context, implicit=True)
        await tls.connect()
        assert await tls.cmd("NOOP") == reply_line("NOOP_OK")
        await tls.cmd("QUIT")
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
    make_config(
        limits={"connections_per_ip": 2},
        smtp={"listeners": [{"address": "127.0.0.1", "port": port, "mode": "starttls"}]},
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"),
        "serve", "--role", "smtp", "--processes", "2",
        stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parents[1],
    )
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


async def test_a_crashed_process_stops_the_service(make_config, tmp_path: Path) -> None:
    # Its connections would stay in the shared per-IP counts: the service exits non-zero instead of
    # limping on, so its supervisor restarts it cleanly.
    port = _free_port()
    make_config(smtp={"listeners": [{"address": "127.0.0.1", "port": port, "mode": "starttls"}]})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"),
        "serve", "--role", "smtp", "--processes", "2",
        stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parents[1],
    )
    try:
        await _wait_port(port, proc)
        async with asyncio.timeout(30):
            while len(kids := [k for k in _children(proc.pid)  # not the resource tracker
                               if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]) < 2:
                await asyncio.sleep(0.1)
        os.kill(kids[0], signal.SIGKILL)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 1
    assert b"stopping the service" in err
    assert all(not Path(f"/proc/{k}").exists() or "zombie" in Path(f"/proc/{k}/status").read_text().lower()
               for k in kids)


async def test_processes_do_not_outlive_a_killed_parent(make_config, tmp_path: Path) -> None:
    port = _free_port()
    make_config(smtp={"listeners": [{"address": "127.0.0.1", "port": port, "mode": "starttls"}]})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"),
        "serve", "--role", "smtp", "--processes", "2",
        stderr=asyncio.subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1],
    )
    kids: list[int] = []
    try:
        await _wait_port(port, proc)
        async with asyncio.timeout(30):
            while len(kids := [k for k in _children(proc.pid)
                               if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]) < 2:
                await asyncio.sleep(0.1)
    finally:
        proc.kill()  # SIGKILL: the parent gets no chance to stop them itself
        await proc.wait()
    async with asyncio.timeout(30):
        while any(Path(f"/proc/{k}").exists() for k in kids):
            await asyncio.sleep(0.1)
