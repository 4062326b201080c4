"""Which webhook URLs may be called: ports 80/443 and public addresses, checked again at connect time.

A URL is checked when it is saved and, because DNS answers can change between the check and the
request (DNS rebinding), again inside the HTTP client's connect: the host name is resolved there,
every address is checked, and the connection goes to a checked address, never to a second
resolution. TLS still verifies the certificate against the host name in the URL.
`webhooks.allow_private_targets = true` lifts both rules (development and tests on loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpcore
import httpx

ALLOWED_PORTS = (80, 443)


class UnsafeTarget(Exception):
    """The URL or the address it resolves to may not be called; `str()` says why."""


def check_url(url: str, *, allow_private: bool) -> SplitResult:
    """Syntax, scheme and port of a webhook URL; raises UnsafeTarget."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeTarget("url: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("url: must be an http:// or https:// URL with a host")
    if any(c in url for c in " \r\n\t"):
        raise UnsafeTarget("url: must not contain white space")
    port = port or (443 if parts.scheme == "https" else 80)
    if not allow_private and port not in ALLOWED_PORTS:
        raise UnsafeTarget("url: only ports 80 and 443 may be used")
    return parts


def check_address(address: str, *, allow_private: bool) -> None:
    """A resolved address may be called only if it is public (unless allowed); raises UnsafeTarget."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private:
        return
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        raise UnsafeTarget("url: the host is not a public address")


async def resolve(host: str, port: int) -> list[str]:
    """Every address of `host` (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise UnsafeTarget("url: the host name does not resolve") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_resolved(url: str, *, allow_private: bool) -> None:
    """Everything `check_url` checks, and every address the host resolves to now."""
    parts = check_url(url, allow_private=allow_private)
    if allow_private or parts.hostname is None:
        return  # any address is allowed: nothing to resolve for
    for address in await resolve(parts.hostname, parts.port or 443):
        check_address(address, allow_private=allow_private)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks in `connect_tcp`, then connects to the checked address itself."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 (httpcore's API)
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
            for a in addresses:
                check_address(a, allow_private=self._allow_private)
        except UnsafeTarget as e:
            raise httpcore.ConnectError(str(e)) from None
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        raise last or httpcore.ConnectError("no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over `_GuardedBackend` (no proxies from the environment: they would
    connect on our behalf to addresses we never checked)."""

    def __init__(self, *, allow_private: bool, verify: ssl.SSLContext | bool = True,
                 limits: httpx.Limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_GuardedBackend(allow_private))
