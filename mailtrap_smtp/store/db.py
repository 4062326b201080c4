"""Connection pool, durability checks and schema migrations."""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

from .embedded import EmbeddedPostgres
from .types import Conn

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "mailtrap_smtp.store.migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class StoreError(Exception):
    """A database problem worth one clear line to an operator."""


async def _light_reset(conn: Any) -> None:
    """Release without asyncpg's RESET ALL / UNLISTEN / unlock round trip (one per query otherwise).

    asyncpg still rolls back a transaction left open. The code that holds session state keeps its
    own connection and cleans up before returning it: the LISTEN connection of the delivery
    workers unlistens, the session-slot connection unlocks its advisory locks.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool[Any]:
    try:
        pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, reset=_light_reset,
            # A 250 after DATA promises the message is on disk (DESIGN §3). As a startup parameter
            # (not a SET) it also survives RESET ALL and cannot be weakened by a server default.
            server_settings={"synchronous_commit": "on"},
            # Our statements are few and hot; caching their plans is what makes them fast.
            statement_cache_size=256,
        )
    except (OSError, asyncpg.PostgresError) as e:
        raise StoreError(f"cannot connect to PostgreSQL: {e}") from None
    return pool


async def check_durability(conn: Conn) -> None:
    """Refuse to run on a server that could lose committed messages."""
    for setting in ("fsync", "synchronous_commit"):
        value = await conn.fetchval(f"SHOW {setting}")
        if value not in ("on", "remote_apply", "remote_write", "local"):
            raise StoreError(
                f"PostgreSQL has {setting} = {value}: accepted mail could be lost on a crash; "
                f"set {setting} = on"
            )


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped with the package, in order."""
    out = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _, _ in out]
    if len(set(versions)) != len(versions):
        raise StoreError("two migrations share one version number")
    return out


async def migrate(conn: Conn) -> list[str]:
    """Apply pending migrations, each once and in its own transaction; return the names applied.

    An advisory lock serialises concurrent migrators (several nodes starting at once).
    """
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(7267011)")
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %s", name)
            applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(7267011)")
    return applied_now


async def migrations_applied(conn: Conn) -> int:
    """How many migrations the schema has had applied (all of them, after `migrate`)."""
    return int(await conn.fetchval("SELECT count(*) FROM schema_migrations"))


class Database:
    """The service's PostgreSQL: the configured DSN, or the embedded cluster under data_dir."""

    def __init__(self, dsn: str, pgdata: Path, *, pool_min_size: int = 2, pool_max_size: int = 10) -> None:
        self._dsn = dsn
        self._pgdata = pgdata
        self._min, self._max = pool_min_size, pool_max_size
        self._embedded: EmbeddedPostgres | None = None
        self.pool: asyncpg.Pool[Any] | None = None

    @property
    def dsn(self) -> str:
        if not self._dsn:
            raise StoreError("database not started")
        return self._dsn

    def start_server(self) -> str:
        """Make sure a server is there (starting the embedded one if no DSN) and return the DSN."""
        if not self._dsn:
            self._embedded = EmbeddedPostgres(self._pgdata)
            try:
                self._dsn = self._embedded.start()
            except Exception as e:  # the wheel raises CalledProcessError, OSError, AssertionError...
                raise StoreError(f"cannot start the embedded PostgreSQL in {self._pgdata}: {e}") from None
        return self._dsn

    async def open(self, *, migrate_schema: bool = True) -> asyncpg.Pool[Any]:
        self.start_server()
        self.pool = await create_pool(self.dsn, min_size=self._min, max_size=self._max)
        async with self.pool.acquire() as conn:
            await check_durability(conn)
            if migrate_schema:
                await migrate(conn)
        return self.pool

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    def stop_server(self) -> None:
        if self._embedded is not None:
            self._embedded.close()
            self._embedded = None
