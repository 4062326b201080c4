"""Decide where to deliver a recipient domain's mail.

The one job of this module: turn a recipient domain into the ordered list of
SMTP servers to try, following RFC 5321 §5.1 (MX lookup, preference order,
implicit MX) and RFC 7505 (null MX), and classify failures as permanent
(bounce now) or temporary (queue and retry, RFC 5321 §4.5.4.1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass
from itertools import groupby

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdtypes.ANY.MX

from mailtrap_smtp.dnsresolve import Lookup, lookup

__all__ = ["DnsPermanentError", "DnsTemporaryError", "MxHost", "resolve_mx", "resolve_mx_ttl"]

# The TTL of an answer whose records carry none we could read (never: every RRset has one).
_NO_TTL = 2**31 - 1


@dataclass(frozen=True)
class MxHost:
    """One SMTP server for a domain.

    ``name`` is the MX exchange host name in A-label form, lower case, no
    trailing dot (use it for TLS SNI and certificate checks, RFC 7672 / MTA-STS
    RFC 8461). ``addresses`` are IPv4 then IPv6 addresses, in DNS order.
    """

    name: str
    preference: int
    addresses: tuple[str, ...]


class _DnsError(Exception):
    """Base: ``str(exc)`` is a short human reason; ``domain`` is what was resolved."""

    def __init__(self, reason: str, domain: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.domain = domain


class DnsPermanentError(_DnsError):
    """The domain cannot receive mail: NXDOMAIN, null MX, no address at all.

    Delivery should fail permanently (5.1.2 / 5.1.10 style bounce)."""


class DnsTemporaryError(_DnsError):
    """DNS could not be consulted (SERVFAIL, timeout, ...); retry later."""


async def _addresses(resolver: dns.asyncresolver.Resolver, host: dns.name.Name) -> tuple[list[str], bool, int]:
    """A and AAAA of ``host`` through ``resolver``: (addresses, any lookup was temporary, least TTL)."""
    v4, v6 = await asyncio.gather(lookup(resolver, host, "A"), lookup(resolver, host, "AAAA"))
    addresses: list[str] = []
    ttl = _NO_TTL
    for result in (v4, v6):
        if result.status == "ok" and result.rrset is not None:
            addresses.extend(rdata.address for rdata in result.rrset)
            ttl = min(ttl, result.rrset.ttl)
    temporary = any(r.status == "error" for r in (v4, v6))
    return addresses, temporary, ttl


def _qname(domain: str) -> dns.name.Name:
    text = domain.strip().rstrip(".")
    if not text:
        raise DnsPermanentError("empty domain", domain)
    if text.startswith("[") or _is_ip(text):
        # RFC 5321 §4.1.3 address literals bypass DNS; this service only
        # delivers to domains, so refuse rather than connect to arbitrary IPs.
        raise DnsPermanentError("address literal, not a domain", domain)
    try:
        # dns.name uses IDNA 2008 with UTS #46 mapping when the idna package
        # is installed, so U-label domains are queried as A-labels (RFC 5891).
        return dns.name.from_text(text + ".")
    except (dns.exception.DNSException, UnicodeError, ValueError):
        raise DnsPermanentError("invalid domain name", domain) from None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _temporary_or_permanent(result: Lookup, domain: str) -> None:
    if result.status == "nxdomain":
        raise DnsPermanentError("NXDOMAIN", domain)
    if result.status == "error":
        raise DnsTemporaryError(result.reason or "DNS failure", domain)


async def resolve_mx(domain: str, resolver: dns.asyncresolver.Resolver) -> list[MxHost]:
    """Return the SMTP servers for ``domain``, most preferred first (see `resolve_mx_ttl`)."""
    return (await resolve_mx_ttl(domain, resolver))[0]


async def resolve_mx_ttl(domain: str, resolver: dns.asyncresolver.Resolver) -> tuple[list[MxHost], int]:
    """Return the SMTP servers for ``domain``, most preferred first, and for how many seconds the
    answer may be reused: the least TTL of the MX and address records it came from (RFC 1035 §3.2.1).

    * MX records sorted by preference; equal preferences are shuffled so load
      spreads across them (RFC 5321 §5.1).
    * A single MX "0 ." is a null MX: the domain accepts no mail (RFC 7505 §3)
      → :class:`DnsPermanentError`.
    * No MX records (NODATA) → the domain itself is the implicit MX with
      preference 0 if it has A/AAAA records (RFC 5321 §5.1).
    * NXDOMAIN → permanent; SERVFAIL, timeout, no nameservers → temporary.
    * Exchange addresses come from the same ``resolver`` (so a configured
      ``dns.nameservers`` is honoured everywhere). Hosts without addresses are
      skipped; if none is left the error is temporary when any of those
      lookups failed temporarily, else permanent.
    """
    qname = _qname(domain)
    label = qname.to_text(omit_final_dot=True).lower()

    mx = await lookup(resolver, qname, "MX")
    _temporary_or_permanent(mx, domain)

    if mx.status == "nodata" or mx.rrset is None:
        # RFC 5321 §5.1: no MX at all → treat the domain as its own MX.
        addresses, temporary, ttl = await _addresses(resolver, qname)
        if addresses:
            return [MxHost(label, 0, tuple(addresses))], ttl
        if temporary:
            raise DnsTemporaryError("no MX and address lookup failed", domain)
        raise DnsPermanentError("no MX and no address records", domain)

    records: list[dns.rdtypes.ANY.MX.MX] = list(mx.rrset)
    if any(r.exchange == dns.name.root for r in records):
        if len(records) == 1 and records[0].preference == 0:
            raise DnsPermanentError("null MX", domain)
        # RFC 7505 §3 forbids mixing a null MX with other MX records; the
        # root name has no addresses anyway, so ignore it and use the rest.
        records = [r for r in records if r.exchange != dns.name.root]
        if not records:
            raise DnsPermanentError("null MX", domain)

    # One entry per exchange, at its best preference (duplicates would just
    # make us retry the same server).
    best: dict[dns.name.Name, int] = {}
    for r in records:
        if r.exchange not in best or r.preference < best[r.exchange]:
            best[r.exchange] = r.preference

    ordered: list[tuple[int, dns.name.Name]] = []
    for pref, group in groupby(sorted(best.items(), key=lambda kv: kv[1]), key=lambda kv: kv[1]):
        names = [name for name, _ in group]
        # RFC 5321 §5.1: "the sender-SMTP MUST randomize them to spread the
        # load across multiple mail exchangers for a specific organization".
        random.shuffle(names)
        ordered.extend((pref, name) for name in names)

    resolved = await asyncio.gather(*(_addresses(resolver, name) for _, name in ordered))
    hosts: list[MxHost] = []
    any_temporary = False
    ttl = mx.rrset.ttl
    for (pref, name), (addresses, temporary, address_ttl) in zip(ordered, resolved, strict=True):
        any_temporary = any_temporary or temporary
        if addresses:
            hosts.append(MxHost(name.to_text(omit_final_dot=True).lower(), pref, tuple(addresses)))
            ttl = min(ttl, address_ttl)
    if hosts:
        return hosts, ttl
    if any_temporary:
        raise DnsTemporaryError("no address for MX host (lookup failed)", domain)
    raise DnsPermanentError("no address for MX host", domain)
