"""Server-side TLS that survives a client's half-close: the reply to the final dot still goes out.

A client may send its message, the final dot and then a TCP FIN (shutdown of its write side) and
wait for our answer. The TLS protocols of asyncio and uvloop treat that FIN as the end of the whole
connection: they deliver the data, then shut TLS down at once, so our `250` (written a moment later,
after the commit) is dropped and the client, seeing no answer, sends the message again.

`HalfCloseTLS` is the event loop's own SSL protocol (uvloop's compiled one under uvloop; every
record still goes through it unchanged) with one override: once the handshake is done, the peer's
EOF is held back (`eof_pending`) and the TCP connection stays half-open, so replies can still be
written. The session lets the EOF through (`release_eof`) when it has answered everything it read
and would wait for more input: it then reads EOF and closes, as after any client close. A close
from our side releases it too, so the TLS shutdown does not wait for a close_notify that cannot
come. (A close_notify alert from the client still ends the connection at once, as before.)

`start_tls` upgrades a STARTTLS stream; `server_factory` builds implicit-TLS connections for
`loop.create_server`; `accepted` wraps a raw socket (implicit TLS behind a PROXY header).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import socket
import ssl
from collections.abc import Callable
from typing import Any

_classes: dict[type, type] = {}


class _HalfClose:
    """Mixed into the loop's SSL protocol class (see `layer_class`)."""

    wrapped = False  # handshake done and a session uses the stream: from now on EOF is held back
    eof_pending = False
    on_eof: Callable[[], None] | None = None

    def eof_received(self) -> bool | None:
        if not self.wrapped:
            return super().eof_received()  # type: ignore[misc,no-any-return]
        self.eof_pending = True
        if self.on_eof is not None:
            self.on_eof()
        return True  # keep the TCP connection half-open: our side may still write

    def release_eof(self) -> None:
        if self.eof_pending:
            self.eof_pending = False
            super().eof_received()  # type: ignore[misc]


def layer_class(loop: asyncio.AbstractEventLoop) -> type:
    """HalfCloseTLS for this loop: a subclass of uvloop's or asyncio's SSL protocol."""
    base: type = asyncio.sslproto.SSLProtocol
    if type(loop).__module__.startswith("uvloop"):
        import uvloop.loop

        base = uvloop.loop.SSLProtocol  # type: ignore[attr-defined]
    cls = _classes.get(base)
    if cls is None:
        cls = _classes[base] = type("HalfCloseTLS", (_HalfClose, base), {})
    return cls


def layer_of(writer: asyncio.StreamWriter) -> Any:
    """The HalfCloseTLS under a stream, or None (plaintext)."""
    return getattr(writer._protocol, "tls_layer", None)  # type: ignore[attr-defined]


async def start_tls(writer: asyncio.StreamWriter, context: ssl.SSLContext, *,
                    handshake_timeout: float) -> None:
    """`StreamWriter.start_tls` (server side) with a HalfCloseTLS layer (as BaseEventLoop.start_tls)."""
    loop = asyncio.get_running_loop()
    protocol: Any = writer._protocol  # type: ignore[attr-defined]
    transport: Any = writer.transport
    await writer.drain()
    waiter = loop.create_future()
    layer = layer_class(loop)(loop, protocol, context, waiter, True, None, call_connection_made=False,
                              ssl_handshake_timeout=handshake_timeout)
    transport.pause_reading()  # so the layer sees no data before its connection_made
    transport.set_protocol(layer)
    conmade = loop.call_soon(layer.connection_made, transport)
    resume = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        conmade.cancel()
        resume.cancel()
        raise
    writer._transport = layer._get_app_transport()  # type: ignore[attr-defined]
    protocol._replace_writer(writer)
    protocol.tls_layer = layer
    layer.wrapped = True


def server_factory(on_connect: Any, context: ssl.SSLContext, *, handshake_timeout: float,
                   limit: int) -> Callable[[], Any]:
    """A protocol factory for `loop.create_server`: implicit TLS from the first byte, then
    `on_connect(reader, writer)` as `asyncio.start_server` would call it."""
    loop = asyncio.get_running_loop()
    cls = layer_class(loop)

    def factory() -> Any:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, on_connect, loop=loop)
        layer = cls(loop, protocol, context, None, True, None, ssl_handshake_timeout=handshake_timeout)
        protocol.tls_layer = layer  # type: ignore[attr-defined]
        return layer

    return factory


async def accepted(sock: socket.socket, context: ssl.SSLContext, *, handshake_timeout: float,
                   limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Implicit TLS on an accepted raw socket (whose PROXY header was already read)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    waiter = loop.create_future()
    layer = layer_class(loop)(loop, protocol, context, waiter, True, None, ssl_handshake_timeout=handshake_timeout)
    await loop.connect_accepted_socket(lambda: layer, sock)
    try:
        await waiter
    except BaseException:
        layer._get_app_transport().abort()
        raise
    protocol.tls_layer = layer  # type: ignore[attr-defined]
    writer = asyncio.StreamWriter(layer._get_app_transport(), protocol, reader, loop)
    return reader, writer
