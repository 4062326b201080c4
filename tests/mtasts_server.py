"""A loopback HTTPS server playing `mta-sts.<domain>` (RFC 8461 §3.3), for the outbound TLS policy tests:
it serves /.well-known/mta-sts.txt with an answer the test scripts (body, status, content type)."""

from __future__ import annotations

import asyncio
import ssl


class PolicyServer:
    """HTTPS on loopback serving /.well-known/mta-sts.txt with a scriptable answer."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.body = ""
        self.status = "200 OK"
        self.content_type = "text/plain"
        self.extra = ""
        self.requests: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head.decode().split("\r\n")[0])
            body = self.body.encode()
            writer.write(f"HTTP/1.1 {self.status}\r\nContent-Type: {self.content_type}\r\n{self.extra}"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


def policy_text(mode: str, *mx: str, max_age: int = 86400) -> str:
    return "version: STSv1\nmode: " + mode + "\n" + "".join(f"mx: {m}\n" for m in mx) + f"max_age: {max_age}\n"
