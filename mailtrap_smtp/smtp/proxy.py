"""PROXY protocol v1 (text) and v2 (binary) headers, from trusted proxies only.

haproxy.org/download/2.9/doc/proxy-protocol.txt. A connection whose real peer is listed in
`server.proxy_protocol_from` MUST start with a header (else it is closed); every other peer is
never parsed for one, so a client cannot spoof its address. LOCAL / UNKNOWN headers keep the
real peer address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107


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


async def read_header(reader: asyncio.StreamReader, peer_ip: str) -> str:
    """Consume the header and return the client IP it announces (or `peer_ip` for LOCAL/UNKNOWN)."""
    try:
        head = await reader.readexactly(12)
    except asyncio.IncompleteReadError:
        raise ProxyError("short header") from None
    if head == V2_SIGNATURE:
        try:
            ver_cmd, fam, length = struct.unpack("!BBH", await reader.readexactly(4))
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise ProxyError("short header") from None
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
    try:
        rest = await reader.readuntil(b"\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise ProxyError("short header") from None
    line = head + rest
    if len(line) > V1_MAX:
        raise ProxyError("header too long")
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
