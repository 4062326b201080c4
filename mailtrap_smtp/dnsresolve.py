"""Build the DNS resolver every lookup in mailtrap-smtp goes through.

The one job of this module: turn the ``dns.nameservers`` setting into a
configured :class:`dns.asyncresolver.Resolver`, and give callers a single,
exception-free way to ask it one question (:func:`lookup`) whose outcome is
already classified the way mail code needs it: answer, NXDOMAIN, NODATA, or
a temporary failure. Both MX resolution (RFC 5321 §5.1) and sending-domain
verification depend on telling "the name does not exist" (permanent) apart
from "we could not find out" (temporary, RFC 5321 §4.5.4.1: retry later).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.rrset

__all__ = ["Lookup", "lookup", "make_resolver", "parse_nameserver"]

DEFAULT_DNS_PORT = 53
# DNS Flag Day 2020 recommends an EDNS buffer of 1232 bytes: large enough for
# typical DKIM keys over UDP, small enough to avoid IP fragmentation. Larger
# answers come back truncated and are retried over TCP (RFC 7766).
_EDNS_PAYLOAD = 1232
# Per-attempt timeout cap; dnspython retries within the overall lifetime.
_PER_TRY_TIMEOUT = 2.0


def parse_nameserver(entry: str) -> tuple[str, int]:
    """Parse one ``dns.nameservers`` entry into ``(ip_address, port)``.

    Accepted forms: ``"192.0.2.53"``, ``"192.0.2.53:5353"``, ``"2001:db8::53"``,
    ``"[2001:db8::53]"`` and ``"[2001:db8::53]:5353"``. A bare IPv6 address
    never carries a port (``"::1:53"`` is itself an address), so use brackets.

    Host names are refused: the resolver would need DNS to find its own DNS
    server. Raises :class:`ValueError` naming the bad entry.
    """
    text = entry.strip() if isinstance(entry, str) else ""
    if not text:
        raise ValueError(f"invalid DNS nameserver entry {entry!r}: empty")
    host, port_text = text, ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"invalid DNS nameserver entry {entry!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"invalid DNS nameserver entry {entry!r}: expected ':port' after ']'")
            port_text = rest[1:]
            if not port_text:
                raise ValueError(f"invalid DNS nameserver entry {entry!r}: empty port")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"invalid DNS nameserver entry {entry!r}: brackets are only for IPv6 addresses"
            ) from None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text:
            raise ValueError(f"invalid DNS nameserver entry {entry!r}: empty port")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"invalid DNS nameserver entry {entry!r}: {host!r} is not an IP address "
            "(use an IP, optionally with :port; IPv6 with a port as [addr]:port)"
        ) from None
    if getattr(address, "scope_id", None):
        # Keep link-local zone ids ("fe80::1%eth0") as written; dnspython
        # passes the text to the socket layer.
        host_out = host
    else:
        host_out = str(address)
    port = DEFAULT_DNS_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"invalid DNS nameserver entry {entry!r}: port must be 1-65535")
        port = int(port_text)
    return host_out, port


def make_resolver(nameservers: Sequence[str], timeout: float = 5.0) -> dns.asyncresolver.Resolver:
    """Return an async resolver using ``nameservers``, or the system's when empty.

    ``timeout`` bounds each whole lookup (dnspython's ``lifetime``), retries
    included. The resolver does not cache: every call asks the servers, so
    verification re-checks see DNS changes as soon as the servers do.
    """
    if isinstance(nameservers, str):
        # A lone string is a Sequence[str] too; iterating it would parse
        # single characters, so refuse it loudly.
        raise TypeError("nameservers must be a list of strings, not a string")
    if timeout <= 0:
        raise ValueError("DNS timeout must be positive")
    parsed = [parse_nameserver(entry) for entry in nameservers]
    if parsed:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in parsed]
    else:
        # /etc/resolv.conf (or the platform equivalent).
        resolver = dns.asyncresolver.Resolver(configure=True)
    resolver.cache = None
    resolver.lifetime = timeout
    resolver.timeout = min(_PER_TRY_TIMEOUT, timeout)
    resolver.use_edns(0, 0, _EDNS_PAYLOAD)
    return resolver


@dataclass(frozen=True)
class Lookup:
    """Outcome of one DNS question.

    ``status``:
      * ``"ok"``: ``rrset`` holds the answer (after any CNAME chain);
      * ``"nodata"``: the name exists but has no record of that type;
      * ``"nxdomain"``: the name does not exist;
      * ``"error"``: no usable answer (SERVFAIL, REFUSED, timeout, network
        error); ``reason`` says which. This is always *temporary*.
    ``canonical_name`` is the name at the end of any CNAME chain (no trailing dot).
    """

    status: Literal["ok", "nodata", "nxdomain", "error"]
    rrset: dns.rrset.RRset | None = None
    reason: str = ""
    canonical_name: str = ""


def _no_nameservers_reason(exc: dns.resolver.NoNameservers) -> str:
    """Summarise why every server failed, e.g. "SERVFAIL" or "REFUSED"."""
    errors = exc.kwargs.get("errors") or []
    reasons: list[str] = []
    for err in errors:
        # dnspython records (server, tcp, port, error, response) tuples.
        what = err[3] if len(err) > 3 else err
        text = what if isinstance(what, str) else type(what).__name__
        if isinstance(what, dns.exception.Timeout):
            text = "timeout"
        elif isinstance(what, OSError):
            text = f"network error ({what.strerror or what})"
        if text not in reasons:
            reasons.append(text)
    return ", ".join(reasons) if reasons else "no nameservers"


def _to_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


async def lookup(resolver: dns.asyncresolver.Resolver, name: str | dns.name.Name, rdtype: str) -> Lookup:
    """Ask ``resolver`` for ``rdtype`` records at ``name``; never raises for DNS outcomes.

    ``name`` may be a U-label domain; it is converted to A-labels (IDNA 2008,
    UTS #46) and always made absolute so no resolv.conf search list applies.
    A name that cannot be encoded at all raises :class:`ValueError`.
    """
    if isinstance(name, str):
        try:
            qname = dns.name.from_text(name.strip().rstrip(".") + ".")
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise ValueError(f"invalid domain name {name!r}: {exc}") from None
    else:
        qname = name
    try:
        answer = await resolver.resolve(qname, rdtype, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return Lookup("nxdomain")
    except dns.resolver.NoNameservers as exc:
        return Lookup("error", reason=_no_nameservers_reason(exc))
    except dns.exception.Timeout:
        return Lookup("error", reason="timeout")
    except dns.resolver.YXDOMAIN:
        return Lookup("error", reason="YXDOMAIN")
    except dns.resolver.NoResolverConfiguration:
        return Lookup("error", reason="no nameservers configured")
    except dns.resolver.NoAnswer:  # only if raise_on_no_answer is overridden
        return Lookup("nodata")
    except (dns.exception.DNSException, OSError) as exc:
        return Lookup("error", reason=f"DNS failure ({type(exc).__name__}: {exc})")
    canonical = _to_text(answer.canonical_name)
    if answer.rrset is None or len(answer.rrset) == 0:
        return Lookup("nodata", canonical_name=canonical)
    return Lookup("ok", rrset=answer.rrset, canonical_name=canonical)
