"""The outbox: consumers of the events table, each reading through a durable cursor under a lease.

Every state change writes its event in its own transaction (DESIGN §2); consumers (webhook delivery,
suppressions, stats, notifications) read those events after commit. A consumer's whole state is a
row of `outbox_cursors` (store/outbox.py): its position, the lease of the process working on it,
its retry time and consecutive failures. Nothing is kept only in memory, so a process killed at
any moment loses nothing: its lease runs out and another process (or its restart) continues from
the last committed position.

**Leases.** `OutboxRunner` claims cursors that have events to read with `FOR UPDATE SKIP LOCKED`
and a lease (`lease_seconds`), so the processes and nodes of a cluster split the cursors among
them (every webhook has its own cursor) while a single cursor is held by one process at a time,
which keeps its events in order. The holder renews the lease between batches; `advance` succeeds
only while the lease is ours, so a process that stalled past its lease cannot move a cursor
another one took over.

**Exactly where the cursor may go (the outbox gap).** Event ids come from a sequence when the row
is inserted, but transactions commit in another order: a cursor that moved past id 100 because
101 was visible would skip 100 if its transaction committed a moment later. We do not use a
visibility delay (a guess: a transaction slower than the delay is still skipped). Each event
records the id of the transaction that wrote it (`xid xid8 DEFAULT pg_current_xact_id()`), and
consumers read only events with `xid < pg_snapshot_xmin(pg_current_snapshot())`, ordered by
`(xid, id)`. Every transaction below that horizon has ended, and any transaction that writes later
gets a larger xid, so the log below the horizon never changes: a cursor over `(xid, id)` can
never pass an event that is still to become visible. The cost: one long-running writing
transaction anywhere in the cluster holds every consumer back until it ends (readers and idle
sessions without an xid do not). Order is that of the writing transactions' first writes, then
of the rows in each: the events of one message are written by successive transactions, so they
keep their order.

**Effects.** A consumer with an effect in PostgreSQL (`TransactionalConsumer`) applies it and
advances its cursor in ONE transaction: exactly once. A consumer with an effect elsewhere (a
webhook POST) advances after the effect: at least once, with a stable `event_id` for the receiver
to deduplicate on.

**Waking.** Polling every `poll_seconds`, and `LISTEN` on `NOTIFY_CHANNEL` (sent by changes such as
a new webhook or a replay). Events do not NOTIFY: PostgreSQL serialises the commits of notifying
transactions on one global lock, which the acceptance path must not pay. A database restart is a
failed round: logged, retried with a doubling backoff (capped), and the LISTEN connection is
opened again. (The shared loop supervisor, `supervise.py`, is not on main yet; `_run` has its own
backoff until it is.)
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt
import enum
import functools
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Protocol

import asyncpg

from . import metrics, supervise
from .store import outbox as store
from .store.health import within
from .store.outbox import EventFilter, OutboxEvent, Page, Position
from .store.types import Conn

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "mailtrap_smtp_outbox"
_MAX_BACKOFF = 30.0

__all__ = ["NOTIFY_CHANNEL", "Consumer", "Cursor", "EventFilter", "LeaseLost", "OutboxEvent", "OutboxRunner",
           "Page", "Position", "Step", "TransactionalConsumer", "notify"]


class LeaseLost(Exception):
    """The cursor's lease is no longer ours: stop working on it (another process has it)."""


class Step(enum.Enum):
    MORE = "more"  # call step() again at once (a full page was processed)
    IDLE = "idle"  # nothing more for now: the runner releases the cursor


class Cursor:
    """One claimed cursor, as a consumer's `step()` sees it."""

    def __init__(self, runner: OutboxRunner, row: store.CursorRow) -> None:
        self._runner = runner
        self.name = row.name
        self.kind = row.kind
        self.key = row.name.partition(":")[2]
        self.position = row.position
        self.failures = row.failures
        self.released = False

    def now(self) -> dt.datetime:
        return self._runner.now()

    async def read(self, limit: int, flt: EventFilter = EventFilter()) -> Page:
        """The next events after the cursor (see `store.outbox.read`)."""
        return await store.read(self._runner.pool, self.position, limit, flt)

    async def advance(self, to: Position, effect: Callable[[Conn], Awaitable[None]] | None = None, *,
                      events: int = 0) -> None:
        """Move to `to`, running `effect(tx)` in the same transaction; LeaseLost rolls both back.

        `events`: how many events this finished (for `mts_outbox_events_total`)."""
        async with self._runner.pool.acquire() as conn, conn.transaction():
            if effect is not None:
                await effect(conn)
            if not await store.advance(conn, self.name, self._runner.owner, to, self._runner.clock_now()):
                raise LeaseLost(self.name)
        if events:
            metrics.OUTBOX_EVENTS.labels(self.kind).inc(events)
        self.position = max(self.position, to)
        self.failures = 0

    async def release(self, *, not_before: dt.datetime | None = None, failed: str | None = None,
                      effect: Callable[[Conn, int], Awaitable[None]] | None = None) -> int:
        """Give the cursor back, not to be claimed before `not_before`; `failed` counts a failure.

        `effect(tx, failures)` runs in the same transaction, with the new count of consecutive
        failures (e.g. to record a delivery attempt, or to give up). Returns that count.
        """
        async with self._runner.pool.acquire() as conn, conn.transaction():
            failures = await store.release(conn, self.name, self._runner.owner, not_before=not_before,
                                           failed=failed, now=self._runner.clock_now())
            if failures is None:
                raise LeaseLost(self.name)
            if effect is not None:
                await effect(conn, failures)
        self.released = True
        self.failures = failures
        return failures


class Consumer(Protocol):
    """A consumer family: `kind` names its cursors ("kind" or "kind:key").

    `singleton` True: one cursor named `kind`, created by the runner (at the start of the log if
    `from_beginning`). False: the family's own use cases create and delete its cursors. (Read-only
    properties here, so class variables and instance attributes both satisfy the protocol.)
    """

    @property
    def kind(self) -> str: ...

    @property
    def singleton(self) -> bool: ...

    @property
    def from_beginning(self) -> bool: ...

    async def step(self, cursor: Cursor) -> Step: ...


class TransactionalConsumer(abc.ABC):
    """A singleton consumer whose effect is in PostgreSQL: `apply` and the cursor commit together."""

    kind: ClassVar[str]
    singleton: ClassVar[bool] = True
    from_beginning: ClassVar[bool] = True
    batch_size: ClassVar[int] = 1000

    def event_filter(self) -> EventFilter:
        return EventFilter()

    @abc.abstractmethod
    async def apply(self, tx: Conn, events: Sequence[OutboxEvent]) -> None:
        """Apply the effect of these events (in order) inside `tx`; raise to roll back and retry."""

    async def step(self, cursor: Cursor) -> Step:
        page = await cursor.read(self.batch_size, self.event_filter())
        if page.end == cursor.position:
            return Step.IDLE
        events = page.events

        async def effect(tx: Conn) -> None:
            if events:
                await self.apply(tx, events)

        await cursor.advance(page.end, effect, events=len(events))
        return Step.MORE if page.full else Step.IDLE


async def notify(conn: Conn) -> None:
    """Wake the runners of every node now (e.g. after a webhook was created or replayed)."""
    await store.notify(conn, NOTIFY_CHANNEL)


class OutboxRunner:
    """Claims cursors of its consumers, runs them concurrently, survives database outages."""

    def __init__(self, pool: asyncpg.Pool[Any], consumers: Sequence[Consumer], *, owner: str | None = None,
                 concurrency: int = 8, lease_seconds: float = 60.0, poll_seconds: float = 1.0,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.pool = pool
        self.consumers = {c.kind: c for c in consumers}
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._listen_conn: Any = None
        self._ensured = False

    def now(self) -> dt.datetime:
        return self._clock() if self._clock else dt.datetime.now(dt.UTC)

    def clock_now(self) -> dt.datetime | None:
        """The time to give SQL: the injected clock, or None for the database's own now()."""
        return self._clock() if self._clock else None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name="outbox")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        # Every wait below is bounded: a shutdown while the database stalls must still end
        # (issue 9); a lease not given back runs out by itself.
        if self._main is not None:
            await supervise.cancel([self._main])
            self._main = None
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            await supervise.cancel(list(pending))
        with contextlib.suppress(Exception):
            await within(supervise.STOP_TIMEOUT, self._unlisten())
        try:
            await within(supervise.STOP_TIMEOUT, store.release_all(self.pool, self.owner))
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            log.warning("could not give back outbox leases (%r); they run out in %.0f s", e, self.lease_seconds)

    async def run_once(self) -> int:
        """Claim what is due, run it to idle, and return how many cursors were run (tests, tools)."""
        await self._ensure_cursors()
        n = await self._claim_and_spawn()
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        return n

    async def _ensure_cursors(self) -> None:
        if self._ensured:
            return
        for c in self.consumers.values():
            if c.singleton:
                await store.ensure(self.pool, c.kind, c.kind, from_beginning=c.from_beginning)
        self._ensured = True

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                if not self._listening():
                    await self._unlisten()
                    await self._listen()
                await self._ensure_cursors()
                await self._claim_and_spawn()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # A database outage (or a bug): one line, then a doubling backoff.
                log.warning("outbox round failed (%s: %s); retrying in %.1f s", type(e).__name__, e, delay)
                await self._unlisten()
                await asyncio.sleep(delay)
                delay = min(_MAX_BACKOFF, delay * 2)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _claim_and_spawn(self) -> int:
        free = self.concurrency - len(self._tasks)
        if free <= 0 or not self.consumers:
            return 0
        rows = await store.claim(self.pool, list(self.consumers), self.owner, free, self.lease_seconds,
                                 self.clock_now())
        for row in rows:
            task = asyncio.create_task(self._drive(row), name=f"outbox {row.name}")
            self._tasks[row.name] = task
            task.add_done_callback(functools.partial(self._done, row.name))
        return len(rows)

    def _done(self, name: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(name, None)
        self._wake.set()  # a slot is free: claim again without waiting for the poll

    async def _drive(self, row: store.CursorRow) -> None:
        consumer = self.consumers[row.kind]
        cursor = Cursor(self, row)
        try:
            while True:
                step = await consumer.step(cursor)
                if cursor.released:
                    return
                if step is Step.IDLE:
                    break
                if not await store.renew(self.pool, row.name, self.owner, self.lease_seconds, self.clock_now()):
                    raise LeaseLost(row.name)
            await store.release(self.pool, row.name, self.owner, now=self.clock_now())
        except LeaseLost:
            metrics.OUTBOX_LEASES_LOST.inc()
            log.warning("outbox cursor %s: lease lost; another process continues it", row.name)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease runs out and the cursor is claimed again from its last committed position.
            log.exception("outbox consumer %s failed; retried after its lease (%.0f s)", row.name,
                          self.lease_seconds)

    async def _listen(self) -> None:
        try:
            self._listen_conn = await self.pool.acquire(timeout=5)
            await self._listen_conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            log.warning("cannot LISTEN on %s (%s); relying on polling", NOTIFY_CHANNEL, e)
            await self._unlisten()

    def _listening(self) -> bool:
        try:
            return self._listen_conn is not None and not self._listen_conn.is_closed()
        except asyncpg.InterfaceError:
            return False  # the pool took back a connection that died (a database restart)

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _unlisten(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            await self.pool.release(conn)
