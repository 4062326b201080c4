"""A real HTTP/1.1 server on loopback that records webhook POSTs and answers as a test tells it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def events(self) -> list[dict[str, Any]]:
        if self.headers.get("content-type") == "application/jsonl":
            return [json.loads(line) for line in self.body.decode().splitlines()]
        events: list[dict[str, Any]] = json.loads(self.body)["events"]
        return events


@dataclass
class Receiver:
    """`statuses` are answered in turn (the last one repeats); "hang" never answers; `delay` slows answers."""

    statuses: list[int | str] = field(default_factory=lambda: [200])
    delay: float = 0.0
    tls: ssl.SSLContext | None = None
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, path: str = "/hook", userinfo: str = "", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{userinfo + '@' if userinfo else ''}{host}:{self.port}{path}"

    def events(self) -> list[dict[str, Any]]:
        return [e for r in self.requests for e in r.events()]

    async def wait_for(self, n_requests: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < n_requests:
                self.arrived.clear()
                await self.arrived.wait()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Received(method, path, headers, body))
                self.arrived.set()
                status = self.statuses[min(len(self.requests) - 1, len(self.statuses) - 1)]
                if status == "hang":
                    await asyncio.Event().wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                body_out = b"" if status in (204, 304) else b"ok"
                length = "" if status in (204, 304) else f"Content-Length: {len(body_out)}\r\n"
                writer.write(f"HTTP/1.1 {status} X\r\n{length}\r\n".encode() + body_out)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
