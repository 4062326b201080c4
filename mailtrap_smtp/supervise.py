"""Supervision of long-lived background loops: retried with backoff, never ending on an error.

`keep_running(name, step)` runs one round of a loop after another for the life of the process. A
round that fails because the database is gone reports to `store.health.HEALTH` (one log line per
outage, not one per round); any other error is logged with its traceback and counted
(`mts_loop_errors_total`); either way the next round comes after a backoff (doubling, with jitter,
up to `MAX_DELAY`), and the first round that succeeds resets it and reports the database back.

`watch(task, name)`: a loop that ends anyway (a bug, a BaseException) must not leave the process
running without it, silently. Its end is logged as critical and `on_fatal` is called; `app.Service`
sets it to stop the process with a non-zero status, so the supervisor (`serve --processes`,
systemd) starts a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from . import metrics
from .store.health import HEALTH, DatabaseHealth, is_unavailable

log = logging.getLogger(__name__)

FIRST_DELAY = 0.1
MAX_DELAY = 5.0


class Backoff:
    """Doubling delays with full jitter (so the processes of a node do not reconnect in lockstep)."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self._first, self._cap = first, cap
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def delay(self) -> float:
        d = self._next
        self._next = min(self._cap, self._next * 2)
        return random.uniform(d / 2, d)


def log_fatal(name: str, error: BaseException | None) -> None:
    log.critical("background loop %s ended (%s); this process cannot work without it", name,
                 "no error" if error is None else repr(error))


# Replaced by app.Service with one that also stops the process (non-zero status).
on_fatal: Callable[[str, BaseException | None], None] = log_fatal


def report(where: str, e: BaseException, *, health: DatabaseHealth = HEALTH) -> None:
    """One failed round of `where`: an outage goes to `health` (logged once), anything else is logged."""
    if is_unavailable(e):
        health.unavailable(where, e)
    else:
        log.error("%s failed; retrying", where, exc_info=e)
    metrics.LOOP_ERRORS.labels(where).inc()


async def keep_running(name: str, step: Callable[[], Awaitable[float | None]], *,
                       pause: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                       health: DatabaseHealth = HEALTH, max_delay: float = MAX_DELAY) -> None:
    """Run `step()` forever; it returns how long to pause before the next round (None: none)."""
    backoff = Backoff(cap=max_delay)
    while True:
        started = time.monotonic()
        try:
            wait = await step()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            report(name, e, health=health)
            await pause(backoff.delay())
            continue
        health.available(started)
        backoff.reset()
        if wait:
            await pause(wait)


def watch(task: asyncio.Task[Any], name: str) -> asyncio.Task[Any]:
    """Call `on_fatal` if `task` ever ends other than by cancellation (see the module docstring)."""

    def done(t: asyncio.Task[Any]) -> None:
        if t.cancelled():
            return
        error = t.exception()
        with contextlib.suppress(Exception):
            on_fatal(name, error)

    task.add_done_callback(done)
    return task


def spawn(name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """A watched background task (`watch`)."""
    return watch(asyncio.create_task(coro, name=name), name)
