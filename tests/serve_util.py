"""Helpers for tests that run the real `serve` command in a child process (no fixtures here)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, proc: asyncio.subprocess.Process) -> None:
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


async def serve(tmp_path: Path, processes: int, stderr: int = asyncio.subprocess.PIPE, role: str = "smtp",
                 ) -> asyncio.subprocess.Process:
    """`serve --role ROLE` (smtp unless told) with the config make_config wrote to tmp_path."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"),
        "serve", "--role", role, "--processes", str(processes),
        stderr=stderr, cwd=Path(__file__).resolve().parents[1],
    )


def children(pid: int) -> list[int]:
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


def running(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie waiting to be reaped has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "(zombie)" not in status


async def serving_processes(proc: asyncio.subprocess.Process, n: int) -> list[int]:
    """The pids of serve's n service processes (not multiprocessing's resource tracker)."""
    async with asyncio.timeout(30):
        while True:
            kids = [k for k in children(proc.pid) if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
            if len(kids) >= n:
                return kids
            await asyncio.sleep(0.1)


def one_listener(make_config, port: int, **sections: dict) -> None:
    make_config(smtp={"listeners": [{"address": "127.0.0.1", "port": port, "mode": "starttls"}]}, **sections)


async def wait_listening(proc: asyncio.subprocess.Process, n: int) -> None:
    """Until n processes logged their listener (all of them accept on the shared port)."""
    async with asyncio.timeout(30):
        seen = b""
        while seen.count(b"SMTP listening on") < n:
            assert proc.stderr is not None
            seen += await proc.stderr.readline()


def wait_port_blocking(port: int, proc: subprocess.Popen[bytes]) -> None:
    """`wait_port` for a test that runs serve with subprocess.Popen rather than asyncio."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve did not listen")


def printed_block(out: str, heading: str) -> str:
    """The indented command printed after `heading`, as a shell would receive it when pasted."""
    lines = out.split(heading, 1)[1].split("\n")[2:]
    block = []
    for line in lines:
        if not line.strip():
            break
        block.append(line)
    return "\n".join(block)


async def wait_listening_http(proc: asyncio.subprocess.Process, n: int) -> None:
    """Until n processes logged their API listener."""
    async with asyncio.timeout(30):
        seen = b""
        while seen.count(b"HTTPS API listening on") < n:
            assert proc.stderr is not None
            seen += await proc.stderr.readline()
