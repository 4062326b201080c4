"""A real DNS server on 127.0.0.1 serving a mutable in-memory zone, for tests.

The one job of this module: give tests a resolver target that speaks genuine
DNS over UDP and TCP (RFC 1035 §4.2), so code under test exercises the same
dnspython paths as in production: no mocks of DNS anywhere.

The server behaves like a recursive resolver that is authoritative for every
name it knows (it is what the client sees as its "nameserver"):

* names are case-insensitive (RFC 4343);
* a name with no records at all and nothing below it is NXDOMAIN, a name that
  exists but lacks the asked-for type is NOERROR with an empty answer
  ("NODATA", RFC 2308 §2.2); a name with only descendants (an "empty
  non-terminal", such as ``_domainkey.example.test``) also exists (RFC 8020);
* a CNAME is chased like a real server does (RFC 1034 §4.3.2 step 3a): the
  answer section carries the CNAME chain plus the final records; when the
  chain ends at a name that does not exist the rcode is NXDOMAIN (RFC 6604);
* UDP answers larger than 512 bytes (or the client's EDNS payload size,
  RFC 6891 §6.2.3) are truncated with TC set, so clients retry over TCP;
* faults can be injected per name: SERVFAIL, or silence (a dropped query, so
  the client times out);
* names can be marked DNSSEC-"secure": answers about them (records, NODATA or
  NXDOMAIN) carry the AD bit, as a validating resolver sets it (RFC 4035
  §3.2.3), which is all a DANE client (RFC 7672) looks at. No signatures are
  served: the test plays the operator's trusted validating resolver.

Usage::

    def test_x(dns_server: TestDNSServer) -> None:
        dns_server.add("example.test", "MX", "10 mx1.example.test.")
        dns_server.add("mx1.example.test", "A", "192.0.2.1")
        resolver = make_resolver([dns_server.address], timeout=0.5)
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TLSA, TXT, A, DNSError, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

__all__ = ["SUPPORTED_TYPES", "TestDNSServer", "dns_server", "running_dns_server"]

SUPPORTED_TYPES = ("A", "AAAA", "MX", "TXT", "CNAME", "TLSA")

# RFC 1035 §4.2.1: without EDNS a UDP DNS message is limited to 512 bytes.
_CLASSIC_UDP_LIMIT = 512
# RFC 1034 does not fix a limit on chain length; real resolvers give up after
# a handful of hops (BIND: 16 including the target). Also breaks CNAME loops.
_MAX_CNAME_HOPS = 16
# RFC 1035 §3.3: a <character-string> is at most 255 octets.
_MAX_CHARSTRING = 255


class _DropQuery(DNSError):  # type: ignore[misc]
    """Raised by the resolver to make the handler send nothing at all."""


@dataclass(frozen=True)
class _Record:
    rtype: str
    rdata: Any  # a dnslib RD instance
    ttl: int


def _key(name: str) -> str:
    """Canonical lookup key: lower case (RFC 4343), absolute, single trailing dot."""
    name = name.strip().lower().rstrip(".")
    return name + "."


def _txt_strings(value: str | Sequence[str] | Sequence[bytes]) -> list[bytes]:
    """Split TXT data into <character-string>s the way zone tools do.

    A single string longer than 255 octets cannot be one character-string
    (RFC 1035 §3.3), so zone software (and DKIM key publishing guides,
    RFC 6376 §3.6.2.2) splits it into consecutive 255-octet chunks. A list
    lets a test control the split exactly.
    """
    if isinstance(value, str):
        data = value.encode("utf-8")
        if not data:
            return [b""]
        return [data[i : i + _MAX_CHARSTRING] for i in range(0, len(data), _MAX_CHARSTRING)]
    chunks = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in value]
    for chunk in chunks:
        if len(chunk) > _MAX_CHARSTRING:
            raise ValueError(f"TXT character-string longer than 255 bytes: {chunk[:20]!r}...")
    return chunks


def _make_rdata(rtype: str, value: str | Sequence[str] | Sequence[bytes]) -> Any:
    if rtype == "TXT":
        return TXT(_txt_strings(value))
    if not isinstance(value, str):
        raise TypeError(f"{rtype} value must be a string")
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "CNAME":
        return CNAME(_key(value))
    if rtype == "TLSA":  # "3 1 1 <hex>" (RFC 6698 §2.2)
        usage, selector, mtype, data = value.split(None, 3)
        return TLSA(int(usage), int(selector), int(mtype), bytes.fromhex("".join(data.split())))
    if rtype == "MX":
        pref_text, _, exchange = value.strip().partition(" ")
        exchange = exchange.strip()
        if not pref_text.isdigit() or not exchange:
            raise ValueError(f"MX value must look like '10 mx.example.test.', got {value!r}")
        # "0 ." is the null MX of RFC 7505: the exchange is the root name.
        target = "." if exchange == "." else _key(exchange)
        return MX(DNSLabel(target), int(pref_text))
    raise ValueError(f"unsupported record type {rtype!r}; supported: {', '.join(SUPPORTED_TYPES)}")


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    """dnslib resolver answering from a mutable, thread-safe in-memory zone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[_Record]] = {}
        self._servfail: set[str] = set()
        self._drop: set[str] = set()
        self._secure: set[str] = set()
        self.queries: list[tuple[str, str, str]] = []  # (name, type, protocol) seen

    # -- zone editing --------------------------------------------------
    def add(self, name: str, rtype: str, value: Any, ttl: int) -> None:
        rtype = rtype.upper()
        record = _Record(rtype, _make_rdata(rtype, value), ttl)
        with self._lock:
            self._records.setdefault(_key(name), []).append(record)

    def remove(self, name: str, rtype: str | None) -> None:
        key = _key(name)
        with self._lock:
            if rtype is None:
                self._records.pop(key, None)
                return
            kept = [r for r in self._records.get(key, []) if r.rtype != rtype.upper()]
            if kept:
                self._records[key] = kept
            else:
                self._records.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._servfail.clear()
            self._drop.clear()
            self._secure.clear()
            self.queries.clear()

    def servfail(self, name: str) -> None:
        with self._lock:
            self._servfail.add(_key(name))

    def drop(self, name: str) -> None:
        with self._lock:
            self._drop.add(_key(name))

    def secure(self, name: str) -> None:
        with self._lock:
            self._secure.add(_key(name))

    def heal(self, name: str) -> None:
        with self._lock:
            self._servfail.discard(_key(name))
            self._drop.discard(_key(name))

    # -- answering -----------------------------------------------------
    def _exists(self, key: str) -> bool:
        # RFC 8020: a name exists if it owns records or has descendants
        # (an empty non-terminal); only otherwise is it NXDOMAIN.
        if key in self._records:
            return True
        suffix = "." + key
        return any(owner.endswith(suffix) for owner in self._records)

    @staticmethod
    def _fail(request: DNSRecord, rcode: int) -> DNSRecord:
        reply = request.reply()
        reply.header.rcode = rcode
        return reply

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()  # aa=1, ra=1, question echoed as sent
        qname = str(request.q.qname)
        qtype = QTYPE.get(request.q.qtype)
        key = _key(qname)
        with self._lock:
            self.queries.append((key, str(qtype), getattr(handler, "protocol", "?")))
            # Validated data only if every name on the chain is in a "signed" zone (checked below).
            reply.header.ad = 0
            owner = qname  # echo the case the client used for the first owner name
            seen: set[str] = set()
            for _ in range(_MAX_CNAME_HOPS):
                # Faults apply to every name on the chain: a recursive server
                # chasing a CNAME into a broken zone fails the whole query.
                if key in self._drop:
                    raise _DropQuery(f"dropping query for {qname}")
                if key in self._servfail:
                    return self._fail(request, RCODE.SERVFAIL)
                if not self._exists(key):
                    # RFC 6604: the rcode describes the last name in the chain.
                    reply.header.rcode = RCODE.NXDOMAIN
                    break
                seen.add(key)
                records = self._records.get(key, [])
                matching = [r for r in records if r.rtype == qtype or qtype == "ANY"]
                cname = [r for r in records if r.rtype == "CNAME"]
                if matching or not cname or qtype == "CNAME":
                    for r in matching:
                        reply.add_answer(RR(owner, QTYPE.reverse[r.rtype], rdata=r.rdata, ttl=r.ttl))
                    break
                # RFC 1034 §4.3.2 step 3a: the name is an alias; answer with
                # the CNAME and restart the lookup at its target.
                alias = cname[0]
                reply.add_answer(RR(owner, QTYPE.CNAME, rdata=alias.rdata, ttl=alias.ttl))
                owner = str(alias.rdata.label)
                key = _key(owner)
                if key in seen:
                    break  # CNAME loop: return what we have, as real servers do
            seen.add(key)
            reply.header.ad = int(all(k in self._secure for k in seen))
        return reply


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    """dnslib logs every packet to stdout by default; tests want silence."""

    def __init__(self) -> None:
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)


class _Handler(DNSHandler):  # type: ignore[misc]
    """DNSHandler with realistic UDP truncation and silent drops.

    dnslib's stock handler never truncates by default; real servers must
    (RFC 1035 §4.2.1, RFC 6891 §6.2.3), and that is what makes clients fall
    back to TCP (RFC 7766), so mimic them.
    """

    stop_event: threading.Event  # set on the class by TestDNSServer

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, struct.error):
            pass  # client went away; nothing useful to do in a test server

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        try:
            reply = self.server.resolver.resolve(request, self)
        except _DropQuery:
            if self.protocol == "tcp":
                # Keep the connection open but silent, as a hung server
                # would, so the client sees a timeout rather than EOF.
                self.stop_event.wait(30)
            raise
        packed: bytes = reply.pack()
        if self.protocol == "udp":
            limit = _CLASSIC_UDP_LIMIT
            for rr in request.ar:
                if rr.rtype == QTYPE.OPT:
                    # RFC 6891 §6.2.3/§6.2.5: the OPT CLASS is the payload
                    # size; values below 512 are treated as 512.
                    limit = max(_CLASSIC_UDP_LIMIT, int(rr.rclass))
            if len(packed) > limit:
                truncated = request.reply()
                truncated.header.tc = 1
                truncated.header.rcode = reply.header.rcode
                packed = truncated.pack()
        return packed


def _bind_pair(resolver: _ZoneResolver, handler: type[_Handler]) -> tuple[DNSServer, DNSServer]:
    """Bind UDP and TCP servers on the same ephemeral loopback port.

    The kernel picks a free UDP port; the TCP bind on the same number can
    race with another process, so retry with a fresh port when it does.
    """
    last_error: OSError | None = None
    for _ in range(50):
        udp = DNSServer(
            resolver, address="127.0.0.1", port=0, tcp=False, logger=_QuietLogger(), handler=handler
        )
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(
                resolver, address="127.0.0.1", port=port, tcp=True, logger=_QuietLogger(), handler=handler
            )
        except OSError as exc:
            last_error = exc
            udp.server.server_close()
            continue
        return udp, tcp
    raise RuntimeError(f"could not bind a UDP+TCP port pair on 127.0.0.1: {last_error}")


class TestDNSServer:
    """A loopback DNS server (UDP and TCP) with a mutable zone.

    ``address`` is ``"127.0.0.1:PORT"``, the form used by the
    ``dns.nameservers`` setting.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self) -> None:
        self._resolver = _ZoneResolver()
        self._stop_event = threading.Event()
        # Each server gets its own handler subclass so a dropped TCP query
        # can wait on this server's stop event.
        handler = type("_BoundHandler", (_Handler,), {"stop_event": self._stop_event})
        self._udp, self._tcp = _bind_pair(self._resolver, handler)
        self.port: int = self._udp.server.server_address[1]
        self.host = "127.0.0.1"
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def queries(self) -> list[tuple[str, str, str]]:
        """Queries received so far as (lower-case absolute name, type, "udp"|"tcp")."""
        return list(self._resolver.queries)

    # -- lifecycle -----------------------------------------------------
    def start(self) -> TestDNSServer:
        for srv in (self._udp, self._tcp):
            # A short poll interval keeps shutdown() fast (it waits for the
            # serve loop to notice the request).
            t = threading.Thread(
                target=srv.server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"dns-test-{self.port}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop_event.set()
        for srv in (self._udp, self._tcp):
            if self._threads:
                srv.server.shutdown()
            srv.server.server_close()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()

    def __enter__(self) -> TestDNSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- zone editing --------------------------------------------------
    def add(self, name: str, rtype: str, value: str | Sequence[str], ttl: int = 60) -> None:
        """Add one record. MX: "10 mx.example.test." (null MX: "0 ."). TXT: a str
        (split into 255-byte character-strings automatically) or a list of
        strings (one character-string each)."""
        self._resolver.add(name, rtype, value, ttl)

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove all records of ``rtype`` at ``name`` (all types when None)."""
        self._resolver.remove(name, rtype)

    def clear(self) -> None:
        """Remove every record and every injected fault."""
        self._resolver.clear()

    def servfail(self, name: str) -> None:
        """Answer SERVFAIL for queries about ``name``."""
        self._resolver.servfail(name)

    def drop(self, name: str) -> None:
        """Never answer queries about ``name`` (the client times out)."""
        self._resolver.drop(name)

    def secure(self, name: str) -> None:
        """Answers about ``name`` carry the AD bit (DNSSEC-validated, as a validating resolver says)."""
        self._resolver.secure(name)

    def heal(self, name: str) -> None:
        """Undo servfail()/drop() for ``name``."""
        self._resolver.heal(name)


@contextlib.contextmanager
def running_dns_server() -> Iterator[TestDNSServer]:
    """Context manager form, for use outside pytest fixtures."""
    server = TestDNSServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns_server() -> Iterator[TestDNSServer]:
    """A fresh, empty loopback DNS server for one test."""
    with running_dns_server() as server:
        yield server
