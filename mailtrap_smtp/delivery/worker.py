"""Delivery workers: claim due recipients, deliver them, record every outcome with its event.

One `DeliveryService` per process. Its loop claims a batch of due recipients under a lease
(`store.queue.claim`, `FOR UPDATE SKIP LOCKED`), so any number of services on any number of nodes
share one queue without doing the same work twice; it wakes on `LISTEN` (accepted messages NOTIFY
at commit) and also polls slowly, and sleeps until the earliest scheduled retry when that is sooner.

A claimed batch is grouped by destination domain and what its messages ask of TLS (RFC 8689:
REQUIRETLS, `TLS-Required: No`, or nothing; each needs its own TLS plan and sessions), then by
message: all recipients of one message at one domain go in ONE SMTP transaction (one DATA,
per-recipient RCPT outcomes), and the messages for one domain are spread over at most
`per_destination_concurrency` connections, each carrying several messages in turn (RSET between
transactions). `concurrency` bounds the connections of the process.

Every path ends in a recorded state change or a future `next_attempt_at`: an unexpected error in a
delivery task defers its unfinished recipients (a transient failure with the normal schedule), and
if even that cannot be written the lease runs out and the recipients are due again (at-least-once);
the event of that next attempt carries `possible_duplicate: true`, since the lost attempt may have
delivered.

The claim loop is supervised (`supervise.keep_running`): a round that fails (the database gone, the
LISTEN connection dead after a PostgreSQL restart) is retried with backoff, a new LISTEN connection
is taken when the old one is found dead, and the outage is logged once (`store.health`).
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import dns.asyncresolver

from .. import maillog, metrics, supervise
from ..atomicfile import write_atomically
from ..config import Config
from ..mailbox import a_label
from ..store import db, queue
from ..store.health import HEALTH, is_unavailable, within
from ..store.messages import NOTIFY_CHANNEL
from . import bounces, client, retry, tlsoutcome
from .mx import DnsPermanentError, DnsTemporaryError, resolve_mx_ttl
from .return_path import ReturnPaths
from .tlspolicy import Plan, TlsPolicy

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

# Messages fetched per query while a connection works through its chunk.
_RAW_BATCH = 32
_RAW_BATCH_BYTES = 8 * 1024 * 1024
_MX_CACHE_MAX_SECONDS = 3600.0  # an MX answer is reused for its TTL, at most this long
# Bound on each database wait of the LISTEN connection and of stop(): a shutdown during an outage ends.
_STOP_DB_TIMEOUT = 2.0


@dataclass
class _MessageJob:
    """The recipients of one message at one destination domain: one SMTP transaction."""

    message_id: uuid.UUID
    mail_from: str
    recipients: list[queue.Claimed]
    smtputf8: bool = False  # the message needs SMTPUTF8 (messages.smtputf8)


@dataclass
class _Chunk:
    """Messages for one destination that one connection carries in turn."""

    domain: str
    jobs: list[_MessageJob]
    done: set[int] = field(default_factory=set)  # recipient ids whose outcome is recorded
    # What its messages asked of TLS (RFC 8689, `messages.tls_required`): one TLS plan per chunk.
    tls_required: bool | None = None
    leased_at: float = field(default_factory=time.monotonic)  # when the lease was taken or renewed

    @property
    def recipient_ids(self) -> list[int]:
        return [r.id for j in self.jobs for r in j.recipients]


class DeliveryService:
    """Claims and delivers; `start()` / `stop(grace)`; `run_once()` for tests and tools."""

    def __init__(self, cfg: Config, pool: asyncpg.Pool[Any], resolver: dns.asyncresolver.Resolver, *,
                 worker_id: str | None = None, clock: Clock | None = None, mx_port: int | None = None,
                 tls_verify_context: ssl.SSLContext | None = None,
                 rng: random.Random | None = None) -> None:
        self.cfg = cfg
        maillog.configure(cfg.maillog.format)
        self.delivery_cfg = cfg.delivery
        self.pool = pool
        self.resolver = resolver
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        # Port for hosts found through MX records; 25 except in staging and tests (routes carry their own).
        self.mx_port = mx_port if mx_port is not None else self.delivery_cfg.mx_port
        ca_file = self.delivery_cfg.tls_ca_file
        if tls_verify_context is None and ca_file:
            tls_verify_context = client.verifying_context(str(cfg.path(ca_file)))
        self.tls_verify_context = tls_verify_context
        self.rng = rng or random.Random()
        self.return_paths = ReturnPaths(cfg)
        self.tls_policy = TlsPolicy(cfg, resolver, verify_context=tls_verify_context, pool=pool)
        # Destinations are A-labels (see `_claim_and_dispatch`), so the config may name them either way.
        self._routes = {a_label(k): v for k, v in self.delivery_cfg.routes.items()}
        self._require_tls_domains = [("." if d.startswith(".") else "") + a_label(d.lstrip("."))
                                     for d in self.delivery_cfg.require_tls_domains]
        self._global = asyncio.Semaphore(self.delivery_cfg.concurrency)
        self._per_dest: dict[str, asyncio.Semaphore] = {}
        self._per_dest_users: dict[str, int] = {}
        self._mx_cache: dict[str, tuple[float, list[client.Target]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._listen_conn: Any = None
        # Claimed recipients whose previous lease ended without an outcome (see the module docstring).
        self._possible_duplicates: set[int] = set()

    # --- lifecycle ---

    async def start(self) -> None:
        self._stopping = False
        with contextlib.suppress(Exception):
            await self._listen()  # else the first round of the loop tries again
        self._loop_task = supervise.spawn(f"delivery-{self.worker_id}", self._run())
        log.info("delivery worker %s started (mode %s)", self.worker_id, self.delivery_cfg.mode)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; let in-flight deliveries finish for up to `grace_seconds`; release the rest."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            task, self._loop_task = self._loop_task, None
            task.cancel()
            # Bounded: cancelled mid-statement on a stalled server, asyncpg waits for the server.
            await asyncio.wait({task}, timeout=_STOP_DB_TIMEOUT)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(grace_seconds, 0))
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        try:
            # Whatever is still leased to us (cancelled mid-delivery) is due again now, for any node.
            # Bounded: a shutdown during a database outage must end (the leases expire instead).
            released = await within(_STOP_DB_TIMEOUT, queue.release(self.pool, self.worker_id, now=self._now()))
            if released:
                log.info("released %d unfinished recipients", released)
        except Exception as e:
            log.warning("cannot release leases (%s); they expire in %ss", type(e).__name__,
                        self.delivery_cfg.lease_seconds)
        await self._release_listen_conn()

    async def _listen(self) -> None:
        """LISTEN on a connection of our own (held from the pool for the service's lifetime)."""
        try:
            self._listen_conn = await self.pool.acquire(timeout=_STOP_DB_TIMEOUT)
            await self._listen_conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except BaseException:
            await self._release_listen_conn()
            raise

    async def _release_listen_conn(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await within(_STOP_DB_TIMEOUT, conn.remove_listener(NOTIFY_CHANNEL, self._on_notify))
        with contextlib.suppress(Exception):
            await within(_STOP_DB_TIMEOUT, self.pool.release(conn))

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    def _now(self) -> dt.datetime | None:
        return self.clock() if self.clock is not None else None

    # --- the claim loop ---

    async def _run(self) -> None:
        await supervise.keep_running("delivery", self._round, pause=self._sleep,
                                     max_delay=min(supervise.MAX_DELAY, self.delivery_cfg.poll_interval_seconds))

    async def _round(self) -> float | None:
        """Claim once; return how long to wait for a wake-up before the next round."""
        if self._listen_conn is None or not db.is_alive(self._listen_conn):
            # First round, or the connection died (a PostgreSQL restart): LISTEN anew. A failure
            # fails the round, which the supervisor retries with backoff.
            await self._release_listen_conn()
            await self._listen()
        self._wake.clear()
        claimed = 0
        if len(self._tasks) < self.delivery_cfg.concurrency:
            claimed = await self._claim_and_dispatch()
        if claimed >= self.delivery_cfg.batch_size and len(self._tasks) < self.delivery_cfg.concurrency:
            return None  # more may be waiting
        timeout = self.delivery_cfg.poll_interval_seconds
        if len(self._tasks) < self.delivery_cfg.concurrency:
            due_in = await queue.seconds_until_next_due(self.pool, now=self._now())
            if due_in is not None:
                # Overdue rows we could not claim are locked by another worker's claim right now.
                timeout = min(timeout, max(due_in, 0.05))
        return timeout

    async def _sleep(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that arrives as
        # the wake-up does (stop() does both), and the loop would sleep on instead of ending.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def run_once(self) -> int:
        """Claim one batch and deliver it completely; return how many recipients were claimed."""
        n = await self._claim_and_dispatch()
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        return n

    async def _claim_and_dispatch(self) -> int:
        claimed = await queue.claim(self.pool, self.worker_id, self.delivery_cfg.batch_size,
                                    self.delivery_cfg.lease_seconds, now=self._now())
        if not claimed:
            return 0
        metrics.QUEUE_CLAIMED.inc(len(claimed))
        self._possible_duplicates.update(c.id for c in claimed if c.possible_duplicate)
        lifetime = self.delivery_cfg.max_queue_lifetime_seconds
        too_old = [c for c in claimed if c.age_seconds >= lifetime]
        if too_old:
            await self._record([queue.Outcome(c.id, queue.EXPIRED, "",
                                              {"reason": "maximum queue lifetime reached"})
                                for c in too_old], claimed=too_old)
        # A VERP return path names one recipient, so its recipients go in transactions of their own.
        senders = await self.return_paths.senders(self.pool, claimed)
        # A destination's messages that ask different things of TLS (RFC 8689) need different sessions.
        by_domain: dict[tuple[str, bool | None], dict[tuple[uuid.UUID, str], _MessageJob]] = {}
        for c in claimed:
            if c.age_seconds >= lifetime:
                continue
            # The destination as an A-label (RFC 5891 §5): one MX lookup, route and TLS policy for
            # `bücher.example` and `xn--bcher-kva.example`, asked of DNS in the form DNS knows.
            jobs = by_domain.setdefault((a_label(c.domain), c.tls_required), {})
            sender = senders.get(c.id, c.mail_from)
            job = jobs.get((c.message_id, sender))
            if job is None:
                job = jobs[(c.message_id, sender)] = _MessageJob(c.message_id, sender, [], c.smtputf8)
            job.recipients.append(c)
        for (domain, tls_required), jobs in by_domain.items():
            job_list = list(jobs.values())
            n_conn = 1 if self.delivery_cfg.mode == "sandbox" else min(self.delivery_cfg.per_destination_concurrency,
                                                               len(job_list))
            for i in range(n_conn):
                chunk = _Chunk(domain, job_list[i::n_conn], tls_required=tls_required)
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
            if self.delivery_cfg.mode == "sandbox":
                await self._sandbox(chunk)
            else:
                sem = self._per_dest.get(chunk.domain)
                if sem is None:
                    limit = self.delivery_cfg.per_destination_concurrency
                    sem = self._per_dest[chunk.domain] = asyncio.Semaphore(limit)
                self._per_dest_users[chunk.domain] = self._per_dest_users.get(chunk.domain, 0) + 1
                try:
                    async with sem, self._global:
                        await self._deliver_mx(chunk)
                finally:
                    # Forget idle destinations: the map must not grow with every domain ever seen.
                    self._per_dest_users[chunk.domain] -= 1
                    if not self._per_dest_users[chunk.domain]:
                        del self._per_dest_users[chunk.domain]
                        del self._per_dest[chunk.domain]
        except asyncio.CancelledError:
            raise  # stop(): the leases are released there
        except Exception as e:
            if is_unavailable(e):
                HEALTH.unavailable(f"delivery to {chunk.domain}", e)
            else:
                log.exception("delivery to %s failed unexpectedly", chunk.domain)
            left = [r for j in chunk.jobs for r in j.recipients if r.id not in chunk.done]
            with contextlib.suppress(Exception):
                # Never lose one: defer with the normal schedule (or the lease expires if this fails).
                await self._record([self._deferral(r, f"internal error: {type(e).__name__}",
                                                   bounces.OTHER, None, None) for r in left], chunk)

    async def _record(self, outcomes: list[queue.Outcome], chunk: _Chunk | None = None,
                      claimed: Sequence[queue.Claimed] = ()) -> None:
        if not outcomes:
            return
        for o in outcomes:
            if o.recipient_id in self._possible_duplicates:
                # The previous attempt's lease ended without an outcome: it may have delivered.
                o.details["possible_duplicate"] = True
        result = await queue.record_outcomes(self.pool, self.worker_id, outcomes,
                                             self.delivery_cfg.max_queue_lifetime_seconds, now=self._now())
        who = {r.id: r for r in claimed} | ({r.id: r for j in chunk.jobs for r in j.recipients} if chunk else {})
        for o in outcomes:
            self._possible_duplicates.discard(o.recipient_id)
            if chunk is not None:
                chunk.done.add(o.recipient_id)
            state = result.get(o.recipient_id)
            if state is not None:
                metrics.DELIVERY_ATTEMPTS.labels(
                    outcome="transient" if state == "queued" else state).inc()
                r = who.get(o.recipient_id)
                maillog.delivery(queue_id=r.message_id if r else None, recipient=r.rcpt if r else None,
                                 status="deferred" if state == "queued" else state, reply=o.reply,
                                 mx=o.details.get("mx"), tls=o.details.get("tls"),
                                 delay=r.age_seconds if r else None,
                                 **tlsoutcome.log_fields(o.details.get("tls_policy")))

    def _deferral(self, r: queue.Claimed, reply: str, category: str, mx: str | None,
                  tls: str | None) -> queue.Outcome:
        return queue.Outcome(r.id, queue.DEFERRED, reply,
                             {"category": category, "mx": mx, "tls": tls},
                             retry.next_delay(r.attempts + 1, self.delivery_cfg, self.rng))

    async def _sandbox(self, chunk: _Chunk) -> None:
        """No network: capture the message as <data_dir>/sandbox/<id>.eml and call it delivered."""
        directory = self.cfg.data_dir / "sandbox"
        for job in chunk.jobs:
            raw = await queue.message_raw(self.pool, job.message_id)
            if raw is None:
                continue  # deleted meanwhile; the rows went with it (ON DELETE CASCADE)
            path = directory / f"{job.message_id}.eml"
            await asyncio.to_thread(write_atomically, path, raw)
            await self._record([queue.Outcome(r.id, queue.DELIVERED, "250 captured in sandbox",
                                              {"sandbox": True, "path": str(path)})
                                for r in job.recipients], chunk)

    def _requires_tls(self, domain: str) -> bool:
        if self.delivery_cfg.require_tls:
            return True
        return any(domain == d or (d.startswith(".") and domain.endswith(d))
                   for d in self._require_tls_domains)

    async def _targets(self, domain: str) -> list[client.Target]:
        route = self._routes.get(domain)
        if route is not None:
            host, _, port = route.rpartition(":")
            host = host.strip("[]")
            return [client.Target(host, host, int(port))]
        cached = self._mx_cache.get(domain)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        hosts, ttl = await resolve_mx_ttl(domain, self.resolver)
        targets = [client.Target(h.name, a, self.mx_port) for h in hosts for a in h.addresses]
        # Answers (never failures) are remembered for their TTL (RFC 1035 §3.2.1), capped: the
        # connections of one batch to a big provider share one lookup.
        if len(self._mx_cache) > 10_000:
            self._mx_cache.clear()
        self._mx_cache[domain] = (time.monotonic() + min(float(ttl), _MX_CACHE_MAX_SECONDS), targets)
        return targets

    async def _deliver_mx(self, chunk: _Chunk) -> None:
        domain = chunk.domain
        require_tls = self._requires_tls(domain)
        # Envelope checks first: a bad address never reaches the network (nor DNS).
        for job in chunk.jobs:
            bad_sender = client.envelope_problem(job.mail_from, sender=True)
            outcomes = []
            for r in job.recipients:
                problem = (bad_sender and f"invalid sender: {bad_sender}") or client.envelope_problem(r.rcpt)
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
        plan = await self.tls_policy.plan(domain, targets, require_tls=require_tls, routed=domain in self._routes,
                                          request=chunk.tls_required)
        session: client.RemoteSession | None = None
        connect_error: client.ConnectFailed | None = None
        raw_by_message: dict[uuid.UUID, bytes] = {}
        # The outcome of transaction k is committed while transaction k+1 is on the wire: the commit
        # (an fsync) and the SMTP round trips overlap. At most one is pending per connection.
        pending: asyncio.Task[None] | None = None
        try:
            for i, job in enumerate(jobs):
                if pending is not None and self._lease_half_used(chunk):
                    await pending  # so the renewal below sees the recorded outcomes as final, not lost
                    pending = None
                if not await self._keep_lease(chunk, job):
                    continue
                if job.message_id not in raw_by_message:
                    raw_by_message = await self._fetch_raw_messages(jobs[i:])
                raw = raw_by_message.get(job.message_id)
                if raw is None:
                    continue  # deleted meanwhile; its recipients went with it (ON DELETE CASCADE)
                if session is not None and not await session.reset():
                    # Closed by the server (timeout, 421, drop) between transactions: a new connection.
                    await session.close()
                    session = None
                if session is None and connect_error is None:
                    session, connect_error = await self._open(plan)
                if session is None:
                    assert connect_error is not None
                    await self._record(self._not_connected(job, connect_error), chunk)
                    continue
                started = time.monotonic()
                try:
                    results = await session.send(job.mail_from, [r.rcpt for r in job.recipients], raw,
                                                 smtputf8=job.smtputf8)
                except client.StaleConnection:
                    # The idle connection was gone (nothing sent): once more on a fresh one.
                    await session.close()
                    session, connect_error = await self._open(plan)
                    if session is None:
                        assert connect_error is not None
                        await self._record(self._not_connected(job, connect_error), chunk)
                        continue
                    results = await session.send(job.mail_from, [r.rcpt for r in job.recipients], raw,
                                                 smtputf8=job.smtputf8)
                metrics.DELIVERY_LATENCY.observe(time.monotonic() - started)
                outcomes = [self._outcome(r, res, session) for r, res in zip(job.recipients, results, strict=True)]
                if pending is not None:
                    await pending
                pending = asyncio.create_task(self._record(outcomes, chunk))
            if pending is not None:
                await pending
                pending = None
        except BaseException:
            if session is not None:
                session.broken = True  # cancelled or failed mid-dialogue: no polite QUIT, just close
            raise
        finally:
            if pending is not None:
                # What the remote end said is a fact worth recording even when we are being stopped.
                with contextlib.suppress(BaseException):
                    await asyncio.shield(pending)
            if session is not None:
                await session.close()

    def _not_connected(self, job: _MessageJob, err: client.ConnectFailed) -> list[queue.Outcome]:
        if err.bounce:
            return self._requiretls_bounces(job, err)
        # X.7.10 "encryption needed" (RFC 5248) / X.4.1 "no answer from host" (RFC 3463).
        code = "4.7.10" if err.category == bounces.TLS_REQUIRED else "4.4.1"
        outcomes = [self._deferral(r, f"451 {code} {err.reply}", err.category, err.mx, None) for r in job.recipients]
        for o in outcomes:
            o.details["tls_policy"] = err.tls_policy
        return outcomes

    def _requiretls_bounces(self, job: _MessageJob, err: client.ConnectFailed) -> list[queue.Outcome]:
        """RFC 8689 §4.2.1: no MX host could take a REQUIRETLS message as it asks: it is returned, with
        5.7.30 (REQUIRETLS not offered) or 5.7.10 (no protected session with an authenticated host)."""
        return [queue.Outcome(r.id, queue.BOUNCED, f"550 {err.bounce} {err.reply}",
                              {"category": err.category, "mx": err.mx, "tls": None, "tls_policy": err.tls_policy})
                for r in job.recipients]

    async def _open(self, plan: Plan) -> tuple[client.RemoteSession | None, client.ConnectFailed | None]:
        try:
            session = await self.tls_policy.open(  # DANE, MTA-STS or the require_tls rules (tlspolicy.py)
                plan, helo=self.cfg.server.hostname,
                connect_timeout=self.delivery_cfg.connect_timeout_seconds,
                command_timeout=self.delivery_cfg.command_timeout_seconds)
        except client.ConnectFailed as e:
            # Same destination, same minute: the caller does not retry it for the next messages.
            metrics.DELIVERY_CONNECTIONS.labels(result="failed").inc()
            return None, e
        metrics.DELIVERY_CONNECTIONS.labels(result="tls" if session.tls_version else "plain").inc()
        return session, None

    def _lease_half_used(self, chunk: _Chunk) -> bool:
        return time.monotonic() - chunk.leased_at >= self.delivery_cfg.lease_seconds / 2

    async def _keep_lease(self, chunk: _Chunk, job: _MessageJob) -> bool:
        """Renew the chunk's lease once half of it is used; drop recipients another worker took over."""
        if not self._lease_half_used(chunk):
            return True
        left = [r.id for j in chunk.jobs for r in j.recipients if r.id not in chunk.done]
        ours = await queue.renew(self.pool, self.worker_id, left, self.delivery_cfg.lease_seconds, now=self._now())
        chunk.leased_at = time.monotonic()
        for j in chunk.jobs:
            lost = [r for r in j.recipients if r.id not in ours and r.id not in chunk.done]
            if lost:
                log.warning("lease lost on %d recipients of %s; leaving them to their new worker",
                            len(lost), j.message_id)
                chunk.done.update(r.id for r in lost)
                metrics.LEASES_LOST.inc(len(lost))
                j.recipients = [r for r in j.recipients if r.id in ours]
        return bool(job.recipients)

    async def _fetch_raw_messages(self, jobs: list[_MessageJob]) -> dict[uuid.UUID, bytes]:
        """Raw bytes of the next few messages in one query, bounded in count and bytes."""
        ids: list[uuid.UUID] = []
        total = 0
        for job in jobs:
            size = job.recipients[0].size if job.recipients else 0
            if ids and (len(ids) >= _RAW_BATCH or total + size > _RAW_BATCH_BYTES):
                break
            ids.append(job.message_id)
            total += size
        return await queue.raw_messages(self.pool, ids)

    def _outcome(self, r: queue.Claimed, res: client.RcptResult, session: client.RemoteSession) -> queue.Outcome:
        details: dict[str, Any] = {"mx": session.mx, "tls": session.tls_version, "tls_policy": session.tls_policy}
        if res.ok:
            return queue.Outcome(r.id, queue.DELIVERED, res.reply, details)
        reply = bounces.parse_line(res.reply) if res.code else bounces.RemoteReply(0, None, res.reply)
        category = bounces.classify(reply) if res.code else bounces.CONNECTION_FAILURE
        details["category"] = category
        if res.permanent:
            return queue.Outcome(r.id, queue.BOUNCED, res.reply, details)
        deferral = self._deferral(r, res.reply, category, session.mx, session.tls_version)
        deferral.details["tls_policy"] = session.tls_policy  # as the final outcomes carry it (the timeline shows it)
        return deferral
