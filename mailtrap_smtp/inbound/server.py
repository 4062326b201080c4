"""The inbound listener (`serve --role inbound`): accept connections on `[inbound] listeners`.

One job: own the listening sockets and the sessions on them (at most `inbound.max_connections`,
and `limits.connections_per_ip` per client address, counted as submission counts them), and stop
them cleanly. What a session does is inbound/session.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .. import replies
from ..config import Config
from ..delivery.return_path import load_key
from ..smtp.peers import Admission, PeerTable
from ..smtp.tls import TlsContexts
from .session import InboundParts, InboundSession

log = logging.getLogger(__name__)


class InboundService:
    def __init__(self, cfg: Config, pool: Any, *, key: bytes | None = None) -> None:
        self.cfg = cfg
        self.pool = pool
        self.key = key if key is not None else load_key(cfg)
        self.tls = TlsContexts(cfg)
        self.feedback_addresses = {a.lower() for a in cfg.inbound.feedback_addresses}
        self.peers = PeerTable(None)
        self._parts = InboundParts(cfg, pool, self.tls, self.key, frozenset(self.feedback_addresses))
        self.ports: list[int] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        for listen in self.cfg.inbound.listeners:
            host, _, port = listen.rpartition(":")
            server = await asyncio.start_server(self._on_connect, host.strip("[]"), int(port),
                                                reuse_port=True, backlog=256)
            self.ports.append(server.sockets[0].getsockname()[1])
            self._servers.append(server)
            log.info("inbound SMTP (bounces, complaints) listening on %s:%d", host, self.ports[-1])

    @property
    def active(self) -> int:
        """Sessions open now."""
        return len(self._tasks)

    def reload_tls(self) -> None:
        self.tls.reload()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._tasks) >= self.cfg.inbound.max_connections:
            with contextlib.suppress(Exception):
                writer.write(replies.INBOUND_BUSY.wire())
                writer.close()
            return
        peer = writer.get_extra_info("peername") or ("0.0.0.0", 0)
        client_ip = str(peer[0])
        admission = self.peers.enter(client_ip, self.cfg.limits.connections_per_ip)
        if admission is Admission.REFUSED:
            with contextlib.suppress(Exception):
                writer.write(replies.TOO_MANY_CONNECTIONS_IP.wire())
                writer.close()
            return
        if task is not None:
            self._tasks.add(task)
        try:
            await InboundSession(self._parts, reader, writer, client_ip).run()
        finally:
            if task is not None:
                self._tasks.discard(task)
            if admission is Admission.COUNTED:
                self.peers.leave(client_ip)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        for server in self._servers:
            server.close()
        if self._tasks:
            # A report in flight is finished (its 250 tells the remote MTA to forget it).
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(grace_seconds, 0))
            for t in pending:
                t.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()
