"""SMTP listeners: accept connections, apply connect-time limits, run sessions, stop gracefully.

Each configured listener binds with SO_REUSEPORT so `serve --processes N` runs N processes on the
same ports. `implicit` listeners do TLS from the first byte (port 465 style); `starttls` listeners
start in plaintext. The per-IP connection cap, new-connection rate and AUTH-failure windows hold
across the processes of one `serve` (shared memory, `peers.py`); the per-account session cap is
cluster-wide (PostgreSQL advisory locks, `auth.py`).

PROXY protocol (per listener, `proxy_protocol = true`; trusted proxies in `server.proxy_protocol_from`):
there a trusted peer must open with a v1 or v2 header within `server.proxy_header_timeout_seconds`
and the session is keyed on the address it announces; anyone else is keyed on the real peer and
never parsed for a header. On implicit-TLS listeners the header precedes the handshake, so proxied
implicit listeners accept by themselves (`_AcceptLoop`) and read the header with
exact-size reads from the raw socket before any transport exists: the ClientHello behind it (often
in the same segment) stays in the kernel for the TLS layer. This works the same on both event
loops (`server.event_loop`).

SIGTERM (`stop`): stop accepting, answer idle sessions `421 4.3.2`, let commands in flight (a DATA
transfer, an acceptance transaction) finish and then answer 421, abort what is left after the
grace period. SIGHUP (`reload_tls`): new handshakes use freshly loaded certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
from collections.abc import Iterator
from typing import Any

from .. import maillog, metrics, replies, supervise
from ..auth import Authenticator, SessionSlots
from ..config import Config
from ..submission import Submission
from . import halfclose, proxy
from .listener import Listener
from .peers import Admission, PeerTable, SharedState, WindowTable, auth_brake
from .session import Session, SessionParts
from .tls import TlsContexts

log = logging.getLogger(__name__)

STREAM_LIMIT = 1 << 20  # asyncio stream buffer before it pauses the socket


def _listening_socket(address: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.create_server((address, port), family=family, backlog=1024, reuse_port=True)
    sock.setblocking(False)
    return sock


class _AcceptLoop:
    """A listener that accepts by itself, for implicit TLS behind PROXY-protocol proxies.

    The PROXY header precedes the TLS handshake, so the connection must not be handed to a
    transport (which reads whatever is there) before the header is read: `on_socket` gets the raw
    socket and reads exactly the header's bytes from it, leaving the ClientHello in the kernel.
    """

    def __init__(self, sock: socket.socket, on_socket: Any) -> None:
        self.sockets = [sock]
        self._on_socket = on_socket
        self._connections: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        # Watched: an accept loop that ended would leave the port silently unserved.
        self._task = supervise.spawn("smtp accept loop", self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.sockets[0]
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError:
                # Out of descriptors or a connection reset before accept: keep serving.
                log.warning("accept failed on %s", sock.getsockname(), exc_info=True)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._on_socket(conn, addr))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    def close(self) -> None:
        self._task.cancel()
        self.sockets[0].close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class SmtpService:
    """The SMTP front door: listeners and connect-time limits around sessions.

    The use cases (submission, authentication, per-account session slots) are built by the
    composition root (`app.smtp_service`) and handed in; the service closes its session slots when
    it stops, and the submission too unless the process shares it with the API (`close_submission`
    False: the composition root closes it after both doors).
    """

    def __init__(self, cfg: Config, *, submission: Submission, authenticator: Authenticator,
                 slots: SessionSlots, process_index: int = 0, port_override: int | None = None,
                 shared: SharedState | None = None, close_submission: bool = True) -> None:
        self.cfg = cfg
        maillog.configure(cfg.maillog.format)
        self.process_index = process_index
        self._port_override = port_override
        self.tls = TlsContexts(cfg)
        self.submission = submission
        self.authenticator = authenticator
        self.slots = slots
        self._close_submission = close_submission
        # Per-IP state shared with the other processes of this `serve` when it runs several (peers.py).
        self.peers = PeerTable(shared[0], ledger=shared[3], index=process_index) if shared else PeerTable()
        self.auth_failures = auth_brake(cfg.limits, shared)
        self.connection_rate = WindowTable(cfg.limits.connection_rate_per_ip, 60.0, shared[2] if shared else None)
        self._session_parts = SessionParts(cfg, self.tls, submission, authenticator, slots, self.auth_failures)
        self._proxies = [ipaddress.ip_network(a, strict=False) for a in cfg.server.proxy_protocol_from]
        self.listeners: list[Listener] = []
        self._servers: list[Any] = []  # asyncio.Server or _AcceptLoop
        self._sessions: set[Session] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def ports(self) -> list[int]:
        return [lst.port for lst in self.listeners]

    async def start(self) -> None:
        for conf in self.cfg.smtp.listeners:
            port = conf.port if self._port_override is None else self._port_override
            # Implicit TLS is done by asyncio from the first byte unless PROXY headers may come
            # first (they precede the TLS handshake); then the session starts TLS itself.
            lst = Listener(conf.address, port, conf.mode, conf.proxy_protocol, conf.stream)
            on_connect = functools.partial(self._on_connect, lst)
            handshake_timeout = self.cfg.smtp.tls_handshake_timeout_seconds
            server: Any
            if conf.mode == "implicit" and conf.proxy_protocol:
                server = _AcceptLoop(_listening_socket(conf.address, port),
                                     functools.partial(self._on_implicit_socket, lst))
            elif conf.mode == "implicit":
                # TLS from the first byte, in the layer that lets a client half-close (halfclose.py).
                factory = halfclose.server_factory(on_connect, self.tls.front, handshake_timeout=handshake_timeout,
                                                   limit=STREAM_LIMIT)
                server = await asyncio.get_running_loop().create_server(
                    factory, conf.address, port, reuse_port=True, backlog=1024)
            else:
                server = await asyncio.start_server(
                    on_connect, conf.address, port, reuse_port=True, limit=STREAM_LIMIT, backlog=1024,
                )
            lst.port = server.sockets[0].getsockname()[1]
            self.listeners.append(lst)
            self._servers.append(server)
            log.info("SMTP listening on %s (process %d)", lst.label, self.process_index)

    def reload_tls(self) -> None:
        self.tls.reload()

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _on_connect(self, lst: Listener, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        """A connection from asyncio's server: plaintext, or implicit TLS already negotiated."""
        with self._tracked():
            peer = writer.get_extra_info("peername") or ("0.0.0.0", 0)
            client_ip = str(peer[0])
            tls = writer.get_extra_info("ssl_object") is not None
            if tls:
                metrics.TLS_HANDSHAKES.labels("success").inc()
            if lst.proxy and proxy.trusted(client_ip, self._proxies):
                try:
                    async with asyncio.timeout(self.cfg.server.proxy_header_timeout_seconds):
                        client_ip = await proxy.read_header(proxy.stream_reader(reader), client_ip)
                except (proxy.ProxyError, TimeoutError, OSError):
                    metrics.SMTP_CONNECTIONS_REFUSED.labels("proxy_header").inc()
                    writer.transport.abort()
                    return
            await self._serve(lst, reader, writer, client_ip, tls=tls)

    async def _on_implicit_socket(self, lst: Listener, sock: socket.socket, peer: Any) -> None:
        """A raw connection on an implicit-TLS listener that PROXY-protocol proxies may use."""
        with self._tracked():
            client_ip = str(peer[0]) if isinstance(peer, tuple) else "0.0.0.0"
            if self._stopping:
                sock.close()
                return
            if proxy.trusted(client_ip, self._proxies):
                try:
                    async with asyncio.timeout(self.cfg.server.proxy_header_timeout_seconds):
                        client_ip = await proxy.read_header(proxy.socket_reader(sock), client_ip)
                except (proxy.ProxyError, TimeoutError, OSError):
                    metrics.SMTP_CONNECTIONS_REFUSED.labels("proxy_header").inc()
                    sock.close()
                    return
            try:
                reader, writer = await halfclose.accepted(
                    sock, self.tls.current, handshake_timeout=self.cfg.smtp.tls_handshake_timeout_seconds,
                    limit=STREAM_LIMIT)
            except (TimeoutError, ConnectionError, OSError) as e:
                metrics.TLS_HANDSHAKES.labels("timeout" if isinstance(e, TimeoutError) else "failure").inc()
                sock.close()
                return
            metrics.TLS_HANDSHAKES.labels("success").inc()
            await self._serve(lst, reader, writer, client_ip, tls=True)

    async def _serve(self, lst: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     client_ip: str, *, tls: bool) -> None:
        """Connect-time limits, then the SMTP session."""
        counted = False
        try:
            if self._stopping:
                writer.transport.abort()
                return
            metrics.SMTP_CONNECTIONS.labels(lst.label).inc()
            if self.connection_rate.hit(client_ip):
                await self._refuse(writer, replies.CONNECTION_RATE_IP, "rate_per_ip", client_ip)
                return
            admission = self.peers.enter(client_ip, self.cfg.limits.connections_per_ip)
            if admission is Admission.REFUSED:
                await self._refuse(writer, replies.TOO_MANY_CONNECTIONS_IP, "per_ip", client_ip)
                return
            counted = admission is Admission.COUNTED
            session = Session(self._session_parts, lst, reader, writer, client_ip, tls=tls)
            self._sessions.add(session)
            metrics.SMTP_SESSIONS_ACTIVE.inc()
            try:
                await session.run()
            finally:
                self._sessions.discard(session)
                metrics.SMTP_SESSIONS_ACTIVE.dec()
        except Exception:
            log.exception("SMTP connection handler failed")
            writer.transport.abort()
        finally:
            if counted:
                self.peers.leave(client_ip)

    @staticmethod
    async def _refuse(writer: asyncio.StreamWriter, reply: replies.Reply, reason: str, client_ip: str) -> None:
        """Answer a connection refused at connect time, then close it."""
        metrics.SMTP_CONNECTIONS_REFUSED.labels(reason).inc()
        maillog.blocked(peer=client_ip, why=reason)
        metrics.MESSAGES_REJECTED.labels(reply.name).inc()
        writer.write(reply.wire())
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await writer.drain()
        writer.close()

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting, tell idle sessions 421, let transactions finish within the grace bound."""
        self._stopping = True
        for server in self._servers:
            server.close()
        for session in list(self._sessions):
            session.shutdown()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_seconds)
        for session in list(self._sessions):
            session.writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for server in self._servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()
        self._servers.clear()
        await self.slots.close()
        if self._close_submission:
            await self.submission.close()
