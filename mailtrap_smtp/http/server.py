"""API listeners: sockets bound with SO_REUSEPORT (like SMTP's, so `serve --processes N` shares
the ports), TLS always with the [tls] certificates (the same `TlsContexts` as SMTP: SIGHUP reloads
them for new handshakes), served by uvicorn (httptools parser) inside the service's event loop.

One uvicorn server per listener, each wrapping the same FastAPI app with the listener's stream
(`principal.STREAM_SCOPE_KEY`). Stopping: the listeners close, idle keep-alive connections are
closed, requests in flight finish within `server.shutdown_grace_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..auth import Authenticator
from ..config import Config
from ..core.templates import Templates
from ..list_unsubscribe import ListUnsubscribe
from ..smtp.peers import WindowTable, auth_brake
from ..smtp.tls import TlsContexts
from ..submission import Submission
from . import errors
from .app import create_app
from .context import ApiContext, TokenCache
from .principal import STREAM_SCOPE_KEY
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)


def _listening_socket(address: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.create_server((address, port), family=family, backlog=1024, reuse_port=True)
    sock.setblocking(False)
    return sock


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering a request it cannot parse with Mailtrap's JSON error
    shape instead of its plain-text page (every answer is JSON, `app.py`)."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(errors.send_error(400, "Malformed HTTP request").body()).encode("ascii")
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json; charset=utf-8\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join([*head, body]))
        self.transport.close()


class _WithStream:
    """The listener's stream, put where `principal.stream_of` reads it."""

    def __init__(self, app: ASGIApp, stream: str) -> None:
        self.app = app
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[STREAM_SCOPE_KEY] = self.stream
        await self.app(scope, receive, send)


@dataclass
class HttpListener:
    address: str
    port: int  # the bound one (tests ask for port 0)
    stream: str


class HttpService:
    """The HTTPS front door: its listeners around one FastAPI app.

    The use cases (submission, authentication) are built by the composition root (`app.http_service`,
    the same instances as SMTP's in a process serving both) and handed in; the service closes the
    submission when it stops only with `close_submission` (no other door shares it).
    """

    def __init__(self, cfg: Config, pool: Any, *, submission: Submission, authenticator: Authenticator,
                 close_submission: bool = False, rate_memory: tuple[Any, Any] | None = None, kek: bytes = b"",
                 resolver: Any = None, process_index: int = 0, auth_failures: WindowTable | None = None,
                 port_override: int | None = None) -> None:
        self.cfg = cfg
        self.process_index = process_index
        self._port_override = port_override
        self.tls = TlsContexts(cfg)
        self._close_submission = close_submission
        self.submission = submission
        self.authenticator = authenticator
        limiter = RateLimiter(cfg.http.rate_limit_requests, cfg.http.rate_limit_window_seconds, rate_memory)
        self.context = ApiContext(cfg, pool, self.submission, authenticator, limiter,
                                  Templates(pool), kek=kek, resolver=resolver,
                                  list_unsubscribe=self.submission.list_unsubscribe or ListUnsubscribe(cfg),
                                  token_cache=TokenCache(cfg.http.token_cache_seconds),
                                  auth_failures=auth_failures or auth_brake(cfg.limits))
        self.app = create_app(self.context)
        self.listeners: list[HttpListener] = []
        self._servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    @property
    def ports(self) -> list[int]:
        return [lst.port for lst in self.listeners]

    async def start(self) -> None:
        for conf in self.cfg.http.listeners:
            port = conf.port if self._port_override is None else self._port_override
            sock = _listening_socket(conf.address, port)
            config = uvicorn.Config(
                _WithStream(self.app, conf.stream), lifespan="off", http=_Protocol, ws="none", loop="none",
                log_config=None, access_log=False, server_header=False, proxy_headers=False,
                timeout_keep_alive=int(self.cfg.http.keepalive_timeout_seconds),
                timeout_graceful_shutdown=int(self.cfg.server.shutdown_grace_seconds),
            )
            config.load()
            config.ssl = self.tls.front  # ours: TLS 1.2+, forward secrecy, reloadable (smtp/tls.py)
            server = uvicorn.Server(config)
            server.lifespan = config.lifespan_class(config)  # "off": a no-op, as `Server.serve` sets it
            await server.startup(sockets=[sock])
            # The main loop refreshes the Date header each second and ends when should_exit is set.
            task = asyncio.get_running_loop().create_task(server.main_loop())
            self._servers.append((server, task))
            lst = HttpListener(conf.address, sock.getsockname()[1], conf.stream)
            self.listeners.append(lst)
            log.info("HTTPS API listening on %s:%d/%s (process %d)", lst.address, lst.port, lst.stream,
                     self.process_index)

    def reload_tls(self) -> None:
        self.tls.reload()

    async def stop(self, grace_seconds: float) -> None:
        for server, task in self._servers:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await task
            server.config.timeout_graceful_shutdown = max(1, int(grace_seconds))
            try:
                await server.shutdown()
            except Exception:
                log.exception("stopping an API listener failed")
            # Whatever is left after the grace period (a TLS close waiting for a peer that does not
            # answer) is cut.
            for connection in list(server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
        self._servers.clear()
        if self._close_submission:
            await self.submission.close()
