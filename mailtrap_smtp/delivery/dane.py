"""DANE for SMTP (RFC 7672): TLSA records of an MX host, and whether a server's certificates match.

One job: say whether DANE applies to an MX host and, after the TLS handshake, whether the chain the
server presented satisfies its TLSA records. DANE applies only to what a validating resolver
reports as DNSSEC-authenticated (the AD bit, RFC 4035 §3.2.3; RFC 6698 §4.1): the MX RRset of the
domain (§2.2.1, else an attacker who forges it could point to a host with no TLSA) and the TLSA
RRset at `_25._tcp.<mx>` (§2.2.3). The resolver is the operator's (`dns.nameservers`), trusted to
validate; that trust is the premise of RFC 7672 §1.3 as well.

Usages (§3.1): DANE-EE (3) matches the server's own certificate or key, without name or expiry
checks (§3.1.1); DANE-TA (2) matches a trust anchor in the presented chain, to which the server's
certificate must chain, and then the name is checked against the MX host (§3.2.2) and the validity
dates too. PKIX-TA/PKIX-EE (0/1) are not usable for SMTP (§3.1.3); a secure TLSA RRset with no
usable record still makes TLS mandatory (§2.2), without authentication.
"""

from __future__ import annotations

import _ssl
import datetime as dt
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.resolver
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

DANE_TA, DANE_EE = 2, 3


@dataclass(frozen=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes


Status = Literal["secure", "insecure", "none", "error"]


def validating(resolver: dns.asyncresolver.Resolver) -> dns.asyncresolver.Resolver:
    """A copy of `resolver` that asks for DNSSEC status: DO (RFC 3225) and AD (RFC 6840 §5.7) set."""
    res = dns.asyncresolver.Resolver(configure=False)
    res.nameservers = resolver.nameservers
    res.lifetime, res.timeout, res.cache = resolver.lifetime, resolver.timeout, None
    res.use_edns(0, dns.flags.DO, 1232)
    res.flags = dns.flags.RD | dns.flags.AD
    return res


async def _query(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> tuple[Status, Any]:
    try:
        answer = await resolver.resolve(dns.name.from_text(name.rstrip(".") + "."), rdtype,
                                        raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN as e:
        # A denial of existence is authenticated too when the AD bit is set on it.
        responses: dict[Any, Any] = e.kwargs.get("responses") or {}
        secure = any(r is not None and r.flags & dns.flags.AD for r in responses.values())
        return ("none" if secure else "insecure"), None
    except (dns.exception.DNSException, OSError, ValueError):
        return "error", None
    secure = bool(answer.response.flags & dns.flags.AD)
    if answer.rrset is None or len(answer.rrset) == 0:
        return ("none" if secure else "insecure"), None
    return ("secure" if secure else "insecure"), answer.rrset


async def mx_secure(resolver: dns.asyncresolver.Resolver, domain: str) -> bool:
    """Whether the domain's MX RRset (or, with no MX, its own address) is DNSSEC-authenticated."""
    status, _ = await _query(resolver, domain, "MX")
    if status == "none":
        status, _ = await _query(resolver, domain, "A")
    return status == "secure"


async def tlsa_records(resolver: dns.asyncresolver.Resolver, host: str, port: int = 25) -> tuple[Status, list[Tlsa]]:
    """The TLSA RRset of `_<port>._tcp.<host>` and its status (only "secure" ones may be used).

    §2.2.2: TLSA records are looked up only for an MX host whose address records are secure; an
    insecure address answer makes the host's TLSA "insecure" too.
    """
    address, _ = await _query(resolver, host, "A")
    if address == "none":
        address, _ = await _query(resolver, host, "AAAA")
    if address != "secure":
        return ("error" if address == "error" else "insecure"), []
    status, rrset = await _query(resolver, f"_{port}._tcp.{host}", "TLSA")
    if status != "secure":
        return status, []
    return status, [Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in rrset]


def usable(records: Sequence[Tlsa]) -> list[Tlsa]:
    """§3.1.3: only DANE-TA and DANE-EE, selectors 0/1, matching types 0/1/2."""
    return [r for r in records if r.usage in (DANE_TA, DANE_EE) and r.selector in (0, 1) and r.mtype in (0, 1, 2)]


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return cert.public_bytes(serialization.Encoding.DER)
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _matches(record: Tlsa, cert: x509.Certificate) -> bool:
    data = _selected(cert, record.selector)
    if record.mtype == 1:
        data = hashlib.sha256(data).digest()
    elif record.mtype == 2:
        data = hashlib.sha512(data).digest()
    return data == record.data


def _name_ok(cert: x509.Certificate, host: str) -> bool:
    """§3.2.3: the MX host name against the DNS-ID SANs, a wildcard covering one leftmost label."""
    host = host.lower().rstrip(".")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    for name in names.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and host.partition(".")[2] == name[2:] and host.partition(".")[0]:
            return True
    return False


def check_chain(records: Sequence[Tlsa], chain_der: Sequence[bytes], host: str,
                now: dt.datetime | None = None) -> str | None:
    """None when the presented chain satisfies one usable TLSA record, else the reason it does not."""
    try:
        chain = [x509.load_der_x509_certificate(d) for d in chain_der]
    except ValueError:
        return "unreadable server certificate"
    if not chain:
        return "no server certificate"
    leaf = chain[0]
    records = usable(records)
    if any(r.usage == DANE_EE and _matches(r, leaf) for r in records):
        return None
    for i, cert in enumerate(chain):
        if not any(r.usage == DANE_TA and _matches(r, cert) for r in records):
            continue
        try:
            for child, parent in itertools.pairwise(chain[: i + 1]):
                child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as e:
            return f"certificate does not chain to the DANE-TA trust anchor ({type(e).__name__})"
        when = now or dt.datetime.now(dt.UTC)
        if not (leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc):
            return "certificate outside its validity period"
        if not _name_ok(leaf, host):
            return f"certificate does not name {host}"
        return None
    return "no TLSA record matches the server's certificates"


def peer_chain(ssl_object: Any) -> list[bytes]:
    """The chain the server sent, leaf first (DER). Python < 3.13 exposes it only on `_sslobj`."""
    get = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if get is not None:
        chain = get() or []
        der = getattr(_ssl, "ENCODING_DER", 2)  # the private module's constant (X509_FILETYPE_ASN1)
        return [c if isinstance(c, bytes) else c.public_bytes(der) for c in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []
