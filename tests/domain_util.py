"""Shared helpers for the sending-domain tests: the config and resolver pointed at the loopback DNS
server, publishing the records a customer is told to, an account, the sender check, domain events,
and dkimpy's DNS hook answered by the same server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import dns.resolver

from mailtrap_smtp import dnsresolve
from mailtrap_smtp.config import Config
from mailtrap_smtp.domains import ExpectedRecord
from mailtrap_smtp.store import accounts as accounts_store
from mailtrap_smtp.store import domains as domains_store
from mailtrap_smtp.store import events as events_store
from tests.dnsserver import TestDNSServer

KEK = bytes(range(32))
T0 = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def domain_config(make_config: Callable[..., Config], dns_server: TestDNSServer, *, timeout: float = 1.0,
                  **domains: Any) -> Config:
    return make_config(dns={"nameservers": [dns_server.address], "timeout_seconds": timeout},
                       domains=domains)


def resolver_for(cfg: Config) -> Any:
    return dnsresolve.make_resolver(cfg.dns.nameservers, cfg.dns.timeout_seconds)


def publish(dns_server: TestDNSServer, records: list[ExpectedRecord] | list[dict[str, Any]],
            *, skip: tuple[str, ...] = ()) -> None:
    """Put the printed records into the zone, exactly as a customer would paste them."""
    for r in records:
        key, rtype, name, value = ((r["key"], r["type"], r["name"], r["value"]) if isinstance(r, dict)
                                   else (r.key, r.type, r.name, r.value))
        if key not in skip:
            dns_server.add(name, rtype, value)


async def make_account(pool: Any, name: str = "acme") -> Any:
    return await accounts_store.create(pool, name, monthly_limit=1000, max_message_size=10_000_000)


async def may_send(pool: Any, account: Any, name: str, *, require_approval: bool = False) -> bool:
    return await domains_store.sending_domain(pool, account["id"], name,
                                              require_approval=require_approval) is not None


async def event_types(pool: Any, domain: Any) -> list[str]:
    return [e["type"] for e in reversed(await events_store.for_domain(pool, domain["id"]))]


def dnsfunc_for(dns_server: TestDNSServer) -> Callable[..., bytes | None]:
    """dkimpy's DNS hook, answered by the loopback server over real DNS (dnspython, blocking)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns_server.host]
    resolver.port = dns_server.port
    resolver.lifetime = 2.0
    resolver.cache = None

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode("ascii"), "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        # RFC 6376 §3.6.2.2: the strings of one TXT RR are concatenated.
        return b"".join(answer[0].strings)

    return dnsfunc
