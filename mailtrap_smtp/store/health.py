"""Whether this process can reach PostgreSQL: which errors mean "the database is gone", logged once per outage.

Every long-lived part of a process (delivery loop, LISTEN connection, domain re-checks, session
slots, AUTH, pooled statements) reports here. An outage is logged as ONE "database unavailable" line
when the first part fails to reach the server and ONE "database available again" line when the
first part reaches it again, however many parts and retries happen in between; the gauge
`mts_database_available` and the counter `mts_database_outages_total` say the same to monitoring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

import asyncpg

from .. import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors that mean "the server is not there (or not answering) right now", as opposed to a bug or a
# refused statement: a socket error, a connection lost or refused, the server shutting down or still
# starting (AdminShutdown, CannotConnectNow: SQLSTATE class 57P), a pool proxy detached because its
# connection died (InterfaceError), a statement cut off by statement_timeout (QueryCanceled).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,
    asyncpg.InternalClientError,
)


def is_unavailable(e: BaseException) -> bool:
    return isinstance(e, UNAVAILABLE)


def describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class DatabaseHealth:
    """The up/down state of the database as this process sees it (see the module docstring)."""

    def __init__(self) -> None:
        self._down_since: float | None = None
        metrics.DB_AVAILABLE.set(1)

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def unavailable(self, where: str, e: BaseException) -> None:
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        metrics.DB_AVAILABLE.set(0)
        metrics.DB_OUTAGES.inc()
        log.warning("database unavailable (%s: %s); retrying with backoff", where, describe(e))

    def available(self, started: float | None = None) -> None:
        """A database operation succeeded; `started` (time.monotonic()) is when it began.

        An operation that began before the outage was noticed proves nothing: a server shutting
        down still answers on some connections for a moment while others are already cut.
        """
        if self._down_since is None or (started is not None and started <= self._down_since):
            return
        seconds, self._down_since = time.monotonic() - self._down_since, None
        metrics.DB_AVAILABLE.set(1)
        metrics.DB_OUTAGE_SECONDS.inc(seconds)
        log.warning("database available again after %.1f s", seconds)


# One per process: every part of the process reports to it, so an outage is logged once.
HEALTH = DatabaseHealth()


async def within(seconds: float, aw: Awaitable[T]) -> T:
    """`aw`, or TimeoutError after `seconds`: a hard bound, unlike `asyncio.wait_for`.

    `wait_for` waits for the cancelled operation to finish, and asyncpg, cancelled mid-statement,
    waits for the server to confirm the cancel: with a server that stalls, that is forever. Here
    the operation is cancelled and left behind (closing or terminating its connection ends it).
    """
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no "never retrieved"
    raise TimeoutError(f"no answer within {seconds} s")
