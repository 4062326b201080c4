"""Delivery workers: claim due recipients, deliver them, record every outcome with its event.

One `DeliveryService` per process. Its loop claims a batch of due recipients under a lease
(`store.queue.claim`, `FOR UPDATE SKIP LOCKED`), so any number of services on any number of nodes
share one queue without doing the same work twice; it wakes on `LISTEN` (accepted messages NOTIFY
at commit) and also polls slowly, and sleeps until the earliest scheduled retry when that is sooner.

A claimed batch is grouped by destination domain, then by message: all recipients of one message at
one domain go in ONE SMTP transaction (one DATA, per-recipient RCPT outcomes), and the messages for
one domain are spread over at most `per_destination_concurrency` connections, each carrying several
messages in turn (RSET between transactions). `concurrency` bounds the connections of the process.

Every path ends in a recorded state change or a future `next_attempt_at`: an unexpected error in a
delivery task defers its unfinished recipients (a transient failure with the normal schedule), and
if even that cannot be written the lease runs out and the recipients are due again (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import dns.asyncresolver

from .. import metrics
from ..config import Config
from ..store import queue
from ..store.messages import NOTIFY_CHANNEL
from . import bounces, client, retry
from .mx import DnsPermanentError, DnsTemporaryError, resolve_mx

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


@dataclass
class _MessageJob:
    """The recipients of one message at one destination domain: one SMTP transaction."""

    message_id: uuid.UUID
    mail_from: str
    recipients: list[queue.Claimed]


@dataclass
class _Chunk:
    """Messages for one destination that one connection carries in turn."""

    domain: str
    jobs: list[_MessageJob]
    done: set[int] = field(default_factory=set)  # recipient ids whose outcome is recorded

    @property
    def recipient_ids(self) -> list[int]:
        return [r.id for j in self.jobs for r in j.recipients]


class DeliveryService:
    """Claims and delivers; `start()` / `stop(grace)`; `run_once()` for tests and tools."""

    def __init__(self, cfg: Config, pool: asyncpg.Pool[Any], resolver: dns.asyncresolver.Resolver, *,
                 worker_id: str | None = None, clock: Clock | None = None, mx_port: int = 25,
                 tls_verify_context: ssl.SSLContext | None = None,
                 rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.dcfg = cfg.delivery
        self.pool = pool
        self.resolver = resolver
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        # Port for hosts found through MX records; 25 except in tests (routes carry their own port).
        self.mx_port = mx_port
        self.tls_verify_context = tls_verify_context
        self.rng = rng or random.Random()
        self._routes = {k.lower().rstrip("."): v for k, v in self.dcfg.routes.items()}
        self._require_tls_domains = [d.lower().rstrip(".") for d in self.dcfg.require_tls_domains]
        self._global = asyncio.Semaphore(self.dcfg.concurrency)
        self._per_dest: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._listen_conn: Any = None

    # --- lifecycle ---

    async def start(self) -> None:
        self._stopping = False
        try:
            self._listen_conn = await self.pool.acquire()
            await self._listen_conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except Exception:
            # The poll is the safety net: delivery works without LISTEN, only later.
            log.exception("cannot LISTEN on %s; relying on polling", NOTIFY_CHANNEL)
            await self._release_listen_conn()
        self._loop_task = asyncio.create_task(self._run(), name=f"delivery-{self.worker_id}")
        log.info("delivery worker %s started (mode %s)", self.worker_id, self.dcfg.mode)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; let in-flight deliveries finish for up to `grace_seconds`; release the rest."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
            self._loop_task = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(grace_seconds, 0))
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        try:
            # Whatever is still leased to us (cancelled mid-delivery) is due again now, for any node.
            released = await queue.release(self.pool, self.worker_id, now=self._now())
            if released:
                log.info("released %d unfinished recipients", released)
        except Exception:
            log.exception("cannot release leases; they expire in %ss", self.dcfg.lease_seconds)
        await self._release_listen_conn()

    async def _release_listen_conn(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    def _now(self) -> dt.datetime | None:
        return self.clock() if self.clock is not None else None

    # --- the claim loop ---

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            claimed = 0
            try:
                if len(self._tasks) < self.dcfg.concurrency:
                    claimed = await self._claim_and_dispatch()
            except Exception:
                log.exception("claiming failed; retrying shortly")
                await self._sleep(min(1.0, self.dcfg.poll_interval_seconds))
                continue
            if claimed >= self.dcfg.batch_size and len(self._tasks) < self.dcfg.concurrency:
                continue  # more may be waiting
            timeout = self.dcfg.poll_interval_seconds
            if len(self._tasks) < self.dcfg.concurrency:
                try:
                    due_in = await queue.seconds_until_next_due(self.pool, now=self._now())
                except Exception:
                    due_in = None
                if due_in is not None:
                    # Overdue rows we could not claim are locked by another worker's claim right now.
                    timeout = min(timeout, max(due_in, 0.05))
            await self._sleep(timeout)

    async def _sleep(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def run_once(self) -> int:
        """Claim one batch and deliver it completely; return how many recipients were claimed."""
        n = await self._claim_and_dispatch()
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        return n

    async def _claim_and_dispatch(self) -> int:
        claimed = await queue.claim(self.pool, self.worker_id, self.dcfg.batch_size,
                                    self.dcfg.lease_seconds, now=self._now())
        if not claimed:
            return 0
        metrics.QUEUE_CLAIMED.inc(len(claimed))
        lifetime = self.dcfg.max_queue_lifetime_seconds
        too_old = [c for c in claimed if c.age_seconds >= lifetime]
        if too_old:
            await self._record([queue.Outcome(c.id, queue.EXPIRED, "",
                                              {"reason": "maximum queue lifetime reached"})
                                for c in too_old])
        by_domain: dict[str, dict[uuid.UUID, _MessageJob]] = {}
        for c in claimed:
            if c.age_seconds >= lifetime:
                continue
            jobs = by_domain.setdefault(c.domain, {})
            job = jobs.get(c.message_id)
            if job is None:
                job = jobs[c.message_id] = _MessageJob(c.message_id, c.mail_from, [])
            job.recipients.append(c)
        for domain, jobs in by_domain.items():
            job_list = list(jobs.values())
            n_conn = 1 if self.dcfg.mode == "sandbox" else min(self.dcfg.per_destination_concurrency,
                                                               len(job_list))
            for i in range(n_conn):
                chunk = _Chunk(domain, job_list[i::n_conn])
                task = asyncio.create_task(self._deliver_chunk(chunk))
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
        return len(claimed)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a slot is free

    # --- delivering one chunk ---

    async def _deliver_chunk(self, chunk: _Chunk) -> None:
        try:
            if self.dcfg.mode == "sandbox":
                await self._sandbox(chunk)
            else:
                sem = self._per_dest.setdefault(chunk.domain,
                                                asyncio.Semaphore(self.dcfg.per_destination_concurrency))
                async with sem, self._global:
                    await self._deliver_mx(chunk)
        except asyncio.CancelledError:
            raise  # stop(): the leases are released there
        except Exception as e:
            log.exception("delivery to %s failed unexpectedly", chunk.domain)
            left = [r for j in chunk.jobs for r in j.recipients if r.id not in chunk.done]
            with contextlib.suppress(Exception):
                # Never lose one: defer with the normal schedule (or the lease expires if this fails).
                await self._record([self._deferral(r, f"internal error: {type(e).__name__}",
                                                   bounces.OTHER, None, None) for r in left], chunk)

    async def _record(self, outcomes: list[queue.Outcome], chunk: _Chunk | None = None) -> None:
        if not outcomes:
            return
        result = await queue.record_outcomes(self.pool, self.worker_id, outcomes,
                                             self.dcfg.max_queue_lifetime_seconds, now=self._now())
        for o in outcomes:
            if chunk is not None:
                chunk.done.add(o.recipient_id)
            state = result.get(o.recipient_id)
            if state is not None:
                metrics.DELIVERY_ATTEMPTS.labels(
                    outcome="transient" if state == "queued" else state).inc()

    def _deferral(self, r: queue.Claimed, reply: str, category: str, mx: str | None,
                  tls: str | None) -> queue.Outcome:
        return queue.Outcome(r.id, queue.DEFERRED, reply,
                             {"category": category, "mx": mx, "tls": tls},
                             retry.next_delay(r.attempts + 1, self.dcfg, self.rng))

    async def _sandbox(self, chunk: _Chunk) -> None:
        """No network: capture the message as <data_dir>/sandbox/<id>.eml and call it delivered."""
        directory = self.cfg.data_dir / "sandbox"
        for job in chunk.jobs:
            raw = await queue.message_raw(self.pool, job.message_id)
            if raw is None:
                continue  # deleted meanwhile; the rows went with it (ON DELETE CASCADE)
            path = directory / f"{job.message_id}.eml"
            await asyncio.to_thread(_write_atomically, path, raw)
            await self._record([queue.Outcome(r.id, queue.DELIVERED, "250 captured in sandbox",
                                              {"sandbox": True, "path": str(path)})
                                for r in job.recipients], chunk)

    def _requires_tls(self, domain: str) -> bool:
        if self.dcfg.require_tls:
            return True
        return any(domain == d or (d.startswith(".") and domain.endswith(d))
                   for d in self._require_tls_domains)

    async def _targets(self, domain: str) -> list[client.Target]:
        route = self._routes.get(domain)
        if route is not None:
            host, _, port = route.rpartition(":")
            host = host.strip("[]")
            return [client.Target(host, host, int(port))]
        hosts = await resolve_mx(domain, self.resolver)
        return [client.Target(h.name, a, self.mx_port) for h in hosts for a in h.addresses]

    async def _deliver_mx(self, chunk: _Chunk) -> None:
        domain = chunk.domain
        require_tls = self._requires_tls(domain)
        # Envelope checks first: a bad address never reaches the network (nor DNS).
        for job in chunk.jobs:
            bad_sender = client.envelope_problem(job.mail_from, sender=True)
            outcomes = []
            for r in job.recipients:
                problem = bad_sender and f"invalid sender: {bad_sender}" or client.envelope_problem(r.rcpt)
                if problem:
                    outcomes.append(queue.Outcome(r.id, queue.BOUNCED, f"550 5.1.3 {problem}",
                                                  {"category": bounces.INVALID_ENVELOPE, "mx": None}))
            await self._record(outcomes, chunk)
            job.recipients = [r for r in job.recipients if r.id not in chunk.done]
        jobs = [j for j in chunk.jobs if j.recipients]
        if not jobs:
            return
        try:
            targets = await self._targets(domain)
        except DnsPermanentError as e:
            reply = f"550 5.1.2 DNS: {e.reason} for {domain}" if "null MX" not in e.reason else (
                f"556 5.1.10 {domain} accepts no mail (null MX, RFC 7505)")
            await self._record([queue.Outcome(r.id, queue.BOUNCED, reply,
                                              {"category": bounces.DNS_FAILURE, "mx": None})
                                for j in jobs for r in j.recipients], chunk)
            return
        except DnsTemporaryError as e:
            reply = f"451 4.4.3 DNS: {e.reason} for {domain}"
            await self._record([self._deferral(r, reply, bounces.DNS_FAILURE, None, None)
                                for j in jobs for r in j.recipients], chunk)
            return
        session: client.Session | None = None
        connect_error: client.ConnectFailed | None = None
        try:
            for job in jobs:
                raw = await queue.message_raw(self.pool, job.message_id)
                if raw is None:
                    continue
                if session is not None and session.broken:
                    await session.close()
                    session = None
                if session is None and connect_error is None:
                    try:
                        session = await client.open_session(
                            targets, helo=self.cfg.server.hostname, require_tls=require_tls,
                            verify_context=self.tls_verify_context,
                            connect_timeout=self.dcfg.connect_timeout_seconds,
                            command_timeout=self.dcfg.command_timeout_seconds)
                    except client.ConnectFailed as e:
                        # Same destination, same minute: the next messages would fail the same way.
                        connect_error = e
                if session is None:
                    assert connect_error is not None
                    reply = f"451 4.4.1 {connect_error.reply}"
                    await self._record([self._deferral(r, reply, connect_error.category, None, None)
                                        for r in job.recipients], chunk)
                    continue
                started = time.monotonic()
                results = await session.send(job.mail_from, [r.rcpt for r in job.recipients], raw)
                metrics.DELIVERY_LATENCY.observe(time.monotonic() - started)
                await self._record([self._outcome(r, res, session)
                                    for r, res in zip(job.recipients, results, strict=True)], chunk)
        finally:
            if session is not None:
                await session.close()

    def _outcome(self, r: queue.Claimed, res: client.RcptResult, session: client.Session) -> queue.Outcome:
        details: dict[str, Any] = {"mx": session.mx, "tls": session.tls_version}
        if res.ok:
            return queue.Outcome(r.id, queue.DELIVERED, res.reply, details)
        reply = bounces.parse_line(res.reply) if res.code else bounces.Reply(0, None, res.reply)
        category = bounces.classify(reply) if res.code else bounces.CONNECTION_FAILURE
        details["category"] = category
        if res.permanent:
            return queue.Outcome(r.id, queue.BOUNCED, res.reply, details)
        return self._deferral(r, res.reply, category, session.mx, session.tls_version)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write, fsync, rename: a reader sees the whole file or none (the sandbox capture)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
