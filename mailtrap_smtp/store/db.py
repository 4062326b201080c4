"""Connection pool (dead connections replaced, statements bounded), durability checks and schema migrations."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from .. import metrics
from .embedded import EmbeddedPostgres
from .health import HEALTH, is_unavailable, within
from .types import Conn

T = TypeVar("T")

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "mailtrap_smtp.store.migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class StoreError(Exception):
    """A database problem worth one clear line to an operator."""


class Unavailable(Exception):
    """The database did not answer in time or could not be reached; the statement wrote nothing."""


# How long a pool's close may wait for connections in use before it terminates them: a shutdown
# during an outage (or with a stuck statement) must end (issue 9).
CLOSE_TIMEOUT = 5.0

# Statements that may change something (or take session state, like advisory locks): never
# re-sent after a connection died mid-statement, since they may have committed. Conservative by
# design: a read it wrongly lists here is merely not retried.
_MAY_WRITE = re.compile(
    r"\b(insert|update|delete|merge|notify|pg_notify|nextval|setval|pg_(try_)?advisory\w*|lock|create|"
    r"drop|alter|truncate|call|do|copy|grant|revoke|vacuum|analyze|listen|unlisten|set|reset|for\s+update|"
    r"for\s+share|for\s+no\s+key\s+update|for\s+key\s+share)\b",
    re.IGNORECASE,
)


def is_read_only(query: str) -> bool:
    """True only for a plain read (SELECT/WITH/SHOW/VALUES naming nothing that writes)."""
    head = query.lstrip().split(None, 1)[0].lower() if query.strip() else ""
    return head in ("select", "with", "show", "values") and _MAY_WRITE.search(query) is None


def is_alive(conn: Any) -> bool:
    """False for a closed connection, or a pool proxy that asyncpg detached when its connection died."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # "connection has been released back to the pool"
        return False


def connection_lost(e: BaseException) -> bool:
    """The connection failed (not the statement): the server went away, restarted, or the socket broke."""
    return isinstance(e, OSError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError
                      | asyncpg.AdminShutdownError | asyncpg.CannotConnectNowError)


def sent_nothing(e: BaseException) -> bool:
    """asyncpg refused before writing a byte: the connection was already known closed (or detached)."""
    return isinstance(e, asyncpg.InterfaceError)


class ResilientPool(asyncpg.Pool):  # type: ignore[type-arg]
    """asyncpg's pool whose one-shot statements survive a dead pooled connection (issue 9).

    After a PostgreSQL restart every idle connection of the pool is dead; asyncpg notices only when
    it next uses one. The statement is then sent again ONCE, on a fresh connection (the pool
    replaces a closed one at acquire), when that cannot do anything twice: the connection failed
    before the statement was sent (`sent_nothing`), or the statement only reads (`is_read_only`).
    A write whose connection died after it was sent is never re-sent: it may have committed.
    """

    async def _retrying(self, query: str, op: Callable[[Any], Awaitable[T]]) -> T:
        for attempt in (1, 2):
            acquired = False  # a failure to connect is an outage, not a dead pooled connection
            started = time.monotonic()
            try:
                async with self.acquire() as conn:
                    acquired = True
                    result = await op(conn)
            except Exception as e:
                safe = sent_nothing(e) or is_read_only(query)
                if attempt == 2 or not acquired or not connection_lost(e) or not safe:
                    if is_unavailable(e):
                        HEALTH.unavailable("statement", e)
                    raise
                metrics.DB_RETRIED.labels("not sent" if sent_nothing(e) else "read").inc()
                log.info("a pooled connection was dead (%s); retrying on a fresh one", type(e).__name__)
                continue
            HEALTH.available(started)
            return result
        raise AssertionError("unreachable")

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109 (asyncpg's signature)
        return await self._retrying(query, lambda c: c.execute(query, *args, timeout=timeout))

    async def fetch(self, query: str, *args: Any, timeout: float | None = None,  # noqa: ASYNC109
                    record_class: Any = None) -> list[Any]:
        return await self._retrying(
            query, lambda c: c.fetch(query, *args, timeout=timeout, record_class=record_class))

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None,  # noqa: ASYNC109
                       record_class: Any = None) -> Any:
        return await self._retrying(
            query, lambda c: c.fetchrow(query, *args, timeout=timeout, record_class=record_class))

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        return await self._retrying(query, lambda c: c.fetchval(query, *args, column=column, timeout=timeout))


async def close_pool(pool: Any, bound: float = CLOSE_TIMEOUT) -> None:
    """Close gracefully within `bound` seconds, then terminate what is left (a stuck or dead connection)."""
    try:
        await within(bound, pool.close())
    except Exception:
        log.warning("the connection pool did not close within %.0f s; terminating its connections", bound)
        pool.terminate()


async def _light_reset(conn: Any) -> None:
    """Release without asyncpg's RESET ALL / UNLISTEN / unlock round trip (one per query otherwise).

    asyncpg still rolls back a transaction left open. The code that holds session state keeps its
    own connection and cleans up before returning it: the LISTEN connection of the delivery
    workers unlistens, the session-slot connection unlocks its advisory locks.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10,
                      statement_timeout: float = 0.0) -> asyncpg.Pool[Any]:
    """The pool; `statement_timeout` (seconds, 0: none) bounds every statement on the server side."""
    settings = {
        # A 250 after DATA promises the message is on disk (DESIGN §3). As a startup parameter
        # (not a SET) it also survives RESET ALL and cannot be weakened by a server default.
        "synchronous_commit": "on",
    }
    if statement_timeout > 0:
        # Enforced by PostgreSQL, which aborts the statement (and its implicit transaction), so a
        # timed-out acceptance wrote nothing: a client-side timeout could not promise that, the
        # statement could still commit after the client gave up.
        settings["statement_timeout"] = str(max(1, round(statement_timeout * 1000)))
    try:
        pool: asyncpg.Pool[Any] = await ResilientPool(
            dsn, min_size=min_size, max_size=max_size, reset=_light_reset, server_settings=settings,
            # Our statements are few and hot; caching their plans is what makes them fast.
            statement_cache_size=256,
            max_queries=50000, max_inactive_connection_lifetime=300.0,
            connect=None, setup=None, init=None, loop=None, connection_class=asyncpg.Connection,
            record_class=asyncpg.Record,
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
    # Waiting for another node's migration, or a long migration, is not bounded by the service's
    # statement timeout (meant for the acceptance path).
    await conn.execute("SET statement_timeout = 0")
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
        await conn.execute("RESET statement_timeout")
    return applied_now


async def migrations_applied(conn: Conn) -> int:
    """How many migrations the schema has had applied (all of them, after `migrate`)."""
    return int(await conn.fetchval("SELECT count(*) FROM schema_migrations"))


class Database:
    """The service's PostgreSQL: the configured DSN, or the embedded cluster under data_dir."""

    def __init__(self, dsn: str, pgdata: Path, *, pool_min_size: int = 2, pool_max_size: int = 10,
                 statement_timeout: float = 0.0) -> None:
        self._dsn = dsn
        self._pgdata = pgdata
        self._min, self._max = pool_min_size, pool_max_size
        self._statement_timeout = statement_timeout
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
        self.pool = await create_pool(self.dsn, min_size=self._min, max_size=self._max,
                                      statement_timeout=self._statement_timeout)
        async with self.pool.acquire() as conn:
            await check_durability(conn)
            if migrate_schema:
                await migrate(conn)
        return self.pool

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await close_pool(pool)

    def stop_server(self) -> None:
        if self._embedded is not None:
            self._embedded.close()
            self._embedded = None
