"""Helpers for tests that run the real `serve` command in a child process (no fixtures here): its
config, starting and stopping it, waiting for its port or log lines, one SMTP session against it."""

from __future__ import annotations

import asyncio
import base64
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import _to_toml
from tests.paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, proc: asyncio.subprocess.Process, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
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
    return await _exec_serve(tmp_path / "config.toml", ["--role", role, "--processes", str(processes)], stderr)


async def _exec_serve(config: Path, args: list[str], stderr: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(config), "serve", *args,
        stderr=stderr, stdout=asyncio.subprocess.DEVNULL, cwd=ROOT,
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


def write_config(tmp_path: Path, dsn: str, cert_files: tuple[Path, Path], port: int,
                 **sections: dict[str, Any]) -> Path:
    data: dict[str, dict[str, Any]] = {
        "server": {"hostname": "mx.service.test", "data_dir": str(tmp_path / "data"),
                   "shutdown_grace_seconds": 1.0},
        "database": {"dsn": dsn, "pool_min_size": 1, "pool_max_size": 5},
        "tls": {"cert_file": str(cert_files[0]), "key_file": str(cert_files[1])},
        "smtp": {"listeners": [{"address": "127.0.0.1", "port": port, "mode": "starttls"}]},
        "metrics": {"listen": ""},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path = tmp_path / "config.toml"
    path.write_text(_to_toml(data), encoding="utf-8")
    return path


async def start_serve(config: Path, log: Path, *args: str) -> asyncio.subprocess.Process:
    """`serve` with stderr (the log) going to a file the test reads afterwards."""
    with log.open("ab") as f:
        return await _exec_serve(config, list(args), f)


async def wait_log(log: Path, text: str, timeout: float = 30, count: int = 1) -> None:
    async with asyncio.timeout(timeout):
        while log.read_text(errors="replace").count(text) < count:
            await asyncio.sleep(0.1)


async def send_one(port: int, ctx: ssl.SSLContext, token: str, rcpt: str, *,
                   sender: str = "app@example.com", timeout: float = 10.0) -> tuple[str, str]:
    """One whole session (STARTTLS, AUTH, one message): (AUTH reply, end-of-DATA reply or "")."""
    from tests.smtp_util import RawClient, message

    c = RawClient("127.0.0.1", port, ctx)
    await c.connect()
    try:
        await c.cmd("EHLO client.test")
        await c.starttls()
        await c.cmd("EHLO client.test")
        await c.send("AUTH PLAIN " + base64.b64encode(f"\0api\0{token}".encode()).decode() + "\r\n")
        auth = await c.reply(timeout)
        if not auth.startswith("235"):
            return auth, ""
        await c.cmd(f"MAIL FROM:<{sender}>")
        await c.cmd(f"RCPT TO:<{rcpt}>")
        await c.cmd("DATA")
        await c.send(message(frm=sender, to=rcpt, subject=rcpt) + b".\r\n")
        data = await c.reply(timeout)
        await c.send("QUIT\r\n")
        return auth, data
    finally:
        c.writer.close()


async def stop_serve(proc: asyncio.subprocess.Process, timeout: float = 30) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            return await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
