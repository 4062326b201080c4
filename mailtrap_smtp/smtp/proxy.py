"""PROXY protocol v1 (text) and v2 (binary) headers, from trusted proxies only.

haproxy.org/download/2.9/doc/proxy-protocol.txt. A connection whose real peer is listed in
`server.proxy_protocol_from` MUST start with a header on a listener with `proxy_protocol = true`
(else it is closed), within `server.proxy_header_timeout_seconds`; every other peer is never
parsed for one, so a client cannot spoof its address. LOCAL / UNKNOWN headers keep the
real peer address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Awaitable, Callable

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107
# Addresses take at most 216 bytes (AF_UNIX); the rest is TLVs, a few dozen bytes from real proxies
# (AWS, GCP, HAProxy with SSL info). A header announcing more is refused before reading it.
V2_LENGTH_MAX = 512


class ProxyError(Exception):
    """A trusted peer sent no valid PROXY header."""


def trusted(peer_ip: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


def _ip(text: str, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyError("bad address") from None
    if addr.version != version:
        raise ProxyError("address family mismatch")
    return str(addr)


ReadExactly = Callable[[int], Awaitable[bytes]]


def stream_reader(reader: asyncio.StreamReader) -> ReadExactly:
    async def read(n: int) -> bytes:
        try:
            return await reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise ProxyError("short header") from None

    return read


def socket_reader(sock: socket.socket) -> ReadExactly:
    """Exact reads straight from the socket: not one byte past the header is consumed, so on an
    implicit-TLS listener the ClientHello that follows stays in the kernel for the TLS layer."""
    loop = asyncio.get_running_loop()

    async def read(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = await loop.sock_recv(sock, n - len(buf))
            if not chunk:
                raise ProxyError("short header")
            buf += chunk
        return buf

    return read


async def read_header(read: ReadExactly, peer_ip: str) -> str:
    """Consume the header and return the client IP it announces (or `peer_ip` for LOCAL/UNKNOWN)."""
    head = await read(12)
    if head == V2_SIGNATURE:
        ver_cmd, fam, length = struct.unpack("!BBH", await read(4))
        if length > V2_LENGTH_MAX:
            raise ProxyError("header too long")
        body = await read(length)
        if ver_cmd >> 4 != 2:
            raise ProxyError("bad version")
        if ver_cmd & 0x0F == 0:
            return peer_ip  # LOCAL: the proxy's own health check
        if ver_cmd & 0x0F != 1:
            raise ProxyError("bad command")
        if fam == 0x11 and length >= 12:
            return str(ipaddress.IPv4Address(body[:4]))
        if fam == 0x21 and length >= 36:
            return str(ipaddress.IPv6Address(body[:16]))
        if fam == 0x00:
            return peer_ip
        raise ProxyError("unsupported family")
    if not head.startswith(b"PROXY "):
        raise ProxyError("no header")
    line = head
    while not line.endswith(b"\r\n"):
        if len(line) >= V1_MAX:
            raise ProxyError("header too long")
        line += await read(1)  # byte by byte: never read past the header (at most 107 bytes)
    parts = line[:-2].decode("ascii", "replace").split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return peer_ip
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyError("bad v1 header")
    src = _ip(parts[2], 4 if parts[1] == "TCP4" else 6)
    _ip(parts[3], 4 if parts[1] == "TCP4" else 6)
    for port in parts[4:]:
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ProxyError("bad port")
    return src
