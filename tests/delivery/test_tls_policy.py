"""Outbound TLS policy against real parts: a loopback HTTPS policy server signed by the test CA,
the loopback DNS server (with the AD bit for "signed" names), and aiosmtpd MXs with and without
STARTTLS (a stripped STARTTLS is exactly what an active attacker's downgrade looks like)."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailtrap_smtp.delivery import dane, mtasts
from mailtrap_smtp.delivery.tlspolicy import TlsPolicy
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from tests.delivery_util import FAST, enqueue, event_list, states
from tests.dnsserver import TestDNSServer
from tests.mtasts_server import PolicyServer, policy_text
from tests.mx_sink import MxSink

# --- the policy file, the TXT record, MX patterns (pure) ---


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n",
                 mtasts.Policy("enforce", ("mail.example.com", "*.example.net"), 86400), id="enforce"),
    pytest.param("version: STSv1\r\nmode: testing\r\nmx: MAIL.example.com.\r\nmax_age: 604800\r\n",
                 mtasts.Policy("testing", ("mail.example.com",), 604800), id="testing-crlf-case"),
    pytest.param("version: STSv1\nmode: none\nmax_age: 1\n", mtasts.Policy("none", (), 1), id="none-without-mx"),
    pytest.param("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999999\n", None, id="max-age-too-long"),
    pytest.param("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 999999999\n",
                 mtasts.Policy("enforce", ("a.test",), mtasts.MAX_AGE_LIMIT), id="max-age-capped"),
    pytest.param("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", None, id="wrong-version"),
    pytest.param("mode: enforce\nmx: a.test\nmax_age: 1\n", None, id="no-version"),
    pytest.param("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", None, id="unknown-mode"),
    pytest.param("version: STSv1\nmode: enforce\nmode: testing\nmx: a.test\nmax_age: 1\n", None, id="two-modes"),
    pytest.param("version: STSv1\nmode: enforce\nmax_age: 1\n", None, id="enforce-without-mx"),
    pytest.param("version: STSv1\nmode: enforce\nmx: a.test\n", None, id="no-max-age"),
    pytest.param("version: STSv1\nmode: enforce\nmx: bad_host!\nmax_age: 1\n", None, id="only-invalid-mx"),
    pytest.param("<html>404</html>", None, id="html"),
])
def test_parse_policy(text: str, expected: mtasts.Policy | None) -> None:
    assert mtasts.parse_policy(text) == expected


@pytest.mark.parametrize(("values", "expected"), [
    pytest.param(["v=STSv1; id=20261201T000000;"], "20261201T000000", id="ok"),
    pytest.param(["v=STSv1;id=abc"], "abc", id="no-spaces"),
    pytest.param(["v=spf1 -all", "v=STSv1; id=x1"], "x1", id="with-unrelated-txt"),
    pytest.param(["v=STSv1; id=a", "v=STSv1; id=b"], None, id="two-records"),
    pytest.param(["v=STSv1; id=bad-id!"], None, id="bad-id"),
    pytest.param(["v=STSv1;"], None, id="no-id"),
    pytest.param(["v=STSv10; id=a"], None, id="other-version"),
])
def test_parse_txt(values: list[str], expected: str | None) -> None:
    assert mtasts.parse_txt(values) == expected


@pytest.mark.parametrize(("pattern", "host", "expected"), [
    ("mail.example.com", "mail.example.com", True), ("mail.example.com", "MAIL.example.com.", True),
    ("*.example.com", "mx1.example.com", True), ("*.example.com", "a.b.example.com", False),
    ("*.example.com", "example.com", False), ("mail.example.com", "mail.example.com.evil", False),
])
def test_mx_matches(pattern: str, host: str, expected: bool) -> None:
    assert mtasts.mx_matches(pattern, host) is expected


# --- real parts ---


@pytest.fixture
async def policy_server(ca: trustme.CA) -> AsyncIterator[PolicyServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mta-sts.dest.test").configure_cert(ctx)
    server = PolicyServer(ctx)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def tls_sink(cert_files: tuple[Path, Path]) -> Iterator[MxSink]:
    with MxSink(tls_cert=cert_files) as s:
        yield s


@pytest.fixture
def plain_sink() -> Iterator[MxSink]:
    with MxSink() as s:  # offers no STARTTLS: what a downgrade by an attacker on the path looks like
        yield s


def _zone(dns_server: TestDNSServer, policy_id: str | None = "1") -> None:
    dns_server.add("dest.test", "MX", "10 mail.test.")  # the test certificate names mail.test
    dns_server.add("mail.test", "A", "127.0.0.1")
    dns_server.add("mta-sts.dest.test", "A", "127.0.0.1")
    if policy_id is not None:
        dns_server.add("_mta-sts.dest.test", "TXT", f"v=STSv1; id={policy_id};")


def _service(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, sink: MxSink, ca_file: Path,
             policy_server: PolicyServer, **delivery: Any) -> DeliveryService:
    cfg = make_config(delivery={**FAST, "tls_ca_file": str(ca_file), **delivery},
                      dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0})
    resolver = make_resolver(cfg.dns.nameservers, 1.0)
    svc = DeliveryService(cfg, pool, resolver, mx_port=sink.port)
    svc.tls_policy = TlsPolicy(cfg, resolver, verify_context=svc.tls_verify_context, https_port=policy_server.port)
    return svc


async def _event(pool: asyncpg.Pool[Any], mid: Any, kind: str) -> dict[str, Any]:
    (details,) = [d for t, _, d in await event_list(pool, mid) if t == kind]
    return details


async def test_enforce_with_valid_tls_delivers_and_records_mta_sts(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, tls_sink: MxSink, ca_file: Path,
        policy_server: PolicyServer) -> None:
    _zone(dns_server)
    policy_server.body = policy_text("enforce", "mail.test")
    svc = _service(make_config, pool, dns_server, tls_sink, ca_file, policy_server)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}
    assert tls_sink.received[0].tls
    tp = (await _event(pool, mid, "delivery"))["tls_policy"]
    assert tp["policy"] == "mta-sts" and tp["mode"] == "enforce" and tp["version"].startswith("TLSv1.")
    assert policy_server.requests == ["GET /.well-known/mta-sts.txt HTTP/1.1"]


async def test_enforce_refuses_stripped_starttls(make_config: Any, pool: asyncpg.Pool[Any],
                                                 dns_server: TestDNSServer, plain_sink: MxSink, ca_file: Path,
                                                 policy_server: PolicyServer) -> None:
    _zone(dns_server)
    policy_server.body = policy_text("enforce", "mail.test")
    svc = _service(make_config, pool, dns_server, plain_sink, ca_file, policy_server)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "queued"}  # a temporary failure, never clear text
    assert plain_sink.received == []
    d = await _event(pool, mid, "transient_failure")
    assert d["reply"].startswith("451 4.7.10 TLS required but not offered by mail.test")
    assert d["category"] == "tls_required"
    assert d["tls_policy"]["policy"] == "mta-sts" and d["tls_policy"]["mode"] == "enforce"


async def test_enforce_refuses_mx_not_in_policy(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer,
                                                tls_sink: MxSink, ca_file: Path, policy_server: PolicyServer) -> None:
    _zone(dns_server)
    policy_server.body = policy_text("enforce", "*.dest.test")  # an attacker's MX record would not match either
    svc = _service(make_config, pool, dns_server, tls_sink, ca_file, policy_server)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "queued"}
    assert tls_sink.ehlos == []  # not even connected
    d = await _event(pool, mid, "transient_failure")
    assert d["reply"] == "451 4.7.10 MTA-STS policy of dest.test (enforce) lists none of its MX hosts"


async def test_enforce_refuses_certificate_from_untrusted_ca(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, ca_file: Path,
        policy_server: PolicyServer, tmp_path: Path) -> None:
    other = trustme.CA().issue_cert("mail.test")
    cert, key = tmp_path / "o.pem", tmp_path / "o.key"
    other.cert_chain_pems[0].write_to_path(str(cert))
    other.private_key_pem.write_to_path(str(key))
    _zone(dns_server)
    policy_server.body = policy_text("enforce", "mail.test")
    with MxSink(tls_cert=(cert, key)) as sink:
        svc = _service(make_config, pool, dns_server, sink, ca_file, policy_server)
        mid = await enqueue(pool, ["a@dest.test"])
        await svc.run_once()
        assert sink.received == []
    assert await states(pool, mid) == {"a@dest.test": "queued"}
    d = await _event(pool, mid, "transient_failure")
    assert "CERTIFICATE_VERIFY_FAILED" in d["reply"] and d["tls_policy"]["policy"] == "mta-sts"


async def test_testing_mode_delivers_and_records_the_failure(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, plain_sink: MxSink, ca_file: Path,
        policy_server: PolicyServer) -> None:
    _zone(dns_server)
    policy_server.body = policy_text("testing", "mail.test")
    svc = _service(make_config, pool, dns_server, plain_sink, ca_file, policy_server)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}
    tp = (await _event(pool, mid, "delivery"))["tls_policy"]
    assert tp["policy"] == "mta-sts" and tp["mode"] == "testing" and tp["version"] is None
    assert tp["failure"].startswith("TLS required but not offered by mail.test")


@pytest.mark.parametrize(("setup", "note"), [
    pytest.param({"body": "<html>nope</html>"}, "is not a valid STSv1 policy", id="not-a-policy"),
    pytest.param({"status": "302 Found", "extra": "Location: https://evil.test/\r\n"}, "redirects are not followed",
                 id="redirect"),
    pytest.param({"content_type": "text/html"}, "not text/plain", id="content-type"),
])
async def test_unusable_policy_means_no_policy(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer,
                                               plain_sink: MxSink, ca_file: Path, policy_server: PolicyServer,
                                               setup: dict[str, str], note: str) -> None:
    _zone(dns_server)
    policy_server.body = policy_text("enforce", "mail.test")
    for k, v in setup.items():
        setattr(policy_server, k, v)
    svc = _service(make_config, pool, dns_server, plain_sink, ca_file, policy_server)
    policy, why = await svc.tls_policy.mta_sts.policy("dest.test")
    assert policy is None and note in why
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}
    assert (await _event(pool, mid, "delivery"))["tls_policy"]["policy"] == "none"


async def test_policy_server_with_untrusted_certificate_gives_no_policy(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, plain_sink: MxSink,
        ca_file: Path) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("mta-sts.dest.test").configure_cert(ctx)
    server = PolicyServer(ctx)
    await server.start()
    try:
        server.body = policy_text("enforce", "mail.test")
        _zone(dns_server)
        svc = _service(make_config, pool, dns_server, plain_sink, ca_file, server)
        policy, why = await svc.tls_policy.mta_sts.policy("dest.test")
        assert policy is None and "CERTIFICATE_VERIFY_FAILED" in why
    finally:
        await server.stop()


async def test_policy_cached_refetched_on_new_id_and_kept_when_txt_vanishes(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, plain_sink: MxSink, ca_file: Path,
        policy_server: PolicyServer) -> None:
    _zone(dns_server)
    policy_server.body = policy_text("testing", "mail.test")
    svc = _service(make_config, pool, dns_server, plain_sink, ca_file, policy_server)
    cache = svc.tls_policy.mta_sts
    assert (await cache.policy("dest.test"))[0] == mtasts.Policy("testing", ("mail.test",), 86400, "1")
    assert (await cache.policy("dest.test"))[1] == "cached"
    assert len(policy_server.requests) == 1  # same id: not fetched again
    # The domain publishes a new policy and a new id: fetched again.
    policy_server.body = policy_text("enforce", "mail.test")
    dns_server.remove("_mta-sts.dest.test", "TXT")
    dns_server.add("_mta-sts.dest.test", "TXT", "v=STSv1; id=2;")
    policy, note = await cache.policy("dest.test")
    assert policy is not None and policy.mode == "enforce" and policy.id == "2" and note == "fetched"
    assert len(policy_server.requests) == 2
    # An attacker removes the TXT record and strips STARTTLS: the cached policy still applies.
    dns_server.remove("_mta-sts.dest.test", "TXT")
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "queued"} and plain_sink.received == []
    assert (await _event(pool, mid, "transient_failure"))["tls_policy"]["note"] == "cached (TXT nxdomain)"


async def test_stored_policy_survives_a_restart(make_config: Any, pool: asyncpg.Pool[Any],
                                               dns_server: TestDNSServer, plain_sink: MxSink, ca_file: Path,
                                               policy_server: PolicyServer) -> None:
    """A new process (or another node) applies the known policy even if discovery is blocked now."""
    _zone(dns_server)
    policy_server.body = policy_text("enforce", "mail.test")
    svc = _service(make_config, pool, dns_server, plain_sink, ca_file, policy_server)
    first = TlsPolicy(svc.cfg, svc.resolver, verify_context=svc.tls_verify_context,
                      https_port=policy_server.port, pool=pool)
    assert (await first.mta_sts.policy("dest.test"))[1] == "fetched"
    # Restart; the attacker now drops the TXT record and the policy host answers 404.
    dns_server.remove("_mta-sts.dest.test", "TXT")
    policy_server.status = "404 Not Found"
    svc.tls_policy = TlsPolicy(svc.cfg, svc.resolver, verify_context=svc.tls_verify_context,
                               https_port=policy_server.port, pool=pool)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "queued"} and plain_sink.received == []
    tp = (await _event(pool, mid, "transient_failure"))["tls_policy"]
    assert tp["policy"] == "mta-sts" and tp["mode"] == "enforce" and tp["note"] == "cached (TXT nxdomain)"
    assert len(policy_server.requests) == 1
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT policy_id, mode, mx, max_age FROM mta_sts_policies")
    assert tuple(row) == ("1", "enforce", ["mail.test"], 86400)


async def test_policy_expires_after_max_age(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer,
                                            plain_sink: MxSink, ca_file: Path, policy_server: PolicyServer) -> None:
    _zone(dns_server)
    policy_server.body = policy_text("enforce", "mail.test", max_age=600)
    svc = _service(make_config, pool, dns_server, plain_sink, ca_file, policy_server)
    now = [1000.0]
    svc.tls_policy.mta_sts.clock = lambda: now[0]
    assert (await svc.tls_policy.mta_sts.policy("dest.test"))[0] is not None
    dns_server.remove("_mta-sts.dest.test", "TXT")
    now[0] += 599
    assert (await svc.tls_policy.mta_sts.policy("dest.test"))[1] == "cached (TXT nxdomain)"
    now[0] += 2
    assert (await svc.tls_policy.mta_sts.policy("dest.test")) == (None, "no MTA-STS TXT (nxdomain)")


async def test_mx_cache_honours_ttl(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer,
                                    tls_sink: MxSink, ca_file: Path, policy_server: PolicyServer) -> None:
    dns_server.add("dest.test", "MX", "10 mail.test.", ttl=0)
    dns_server.add("mail.test", "A", "127.0.0.1", ttl=0)
    dns_server.add("long.test", "MX", "10 mail.test.", ttl=300)
    svc = _service(make_config, pool, dns_server, tls_sink, ca_file, policy_server)
    for _ in range(2):
        await svc._targets("dest.test")
        await svc._targets("long.test")
    mx_queries = [q[0] for q in dns_server.queries if q[1] == "MX"]
    # TTL 0: asked every time. long.test's MX has TTL 300 but its host's A record TTL 0, and the
    # answer lives as long as its shortest-lived record: asked every time too.
    assert mx_queries.count("dest.test.") == 2 and mx_queries.count("long.test.") == 2
    # With the A record at TTL 300 as well, the answer is reused.
    dns_server.remove("mail.test", "A")
    dns_server.add("mail.test", "A", "127.0.0.1", ttl=300)
    svc._mx_cache.clear()
    for _ in range(3):
        await svc._targets("long.test")
    assert [q[0] for q in dns_server.queries if q[1] == "MX"].count("long.test.") == 2 + 1


# --- DANE ---


def _spki_sha256(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@pytest.fixture
def ta_chain(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path, trustme.CA]:
    """An MX certificate for mail.test issued by an intermediate CA, the chain file including it."""
    inter = ca.create_child_ca()
    leaf = inter.issue_cert("mail.test")
    cert, key = tmp_path / "chain.pem", tmp_path / "leaf.key"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key, inter


def _dane_zone(dns_server: TestDNSServer, tlsa: str | None, *, secure: bool = True) -> None:
    _zone(dns_server, policy_id=None)
    if tlsa is not None:
        dns_server.add("_25._tcp.mail.test", "TLSA", tlsa)
    if secure:
        for name in ("dest.test", "mail.test", "_25._tcp.mail.test"):
            dns_server.secure(name)


@pytest.mark.parametrize(("usage", "expect"), [
    pytest.param("ee-good", "delivered", id="dane-ee-match"),
    pytest.param("ta-good", "delivered", id="dane-ta-match"),
    pytest.param("ee-wrong", "queued", id="dane-ee-mismatch"),
    pytest.param("ta-other-ca", "queued", id="dane-ta-other-anchor"),
    pytest.param("pkix-only", "delivered", id="pkix-usages-unusable-tls-still-mandatory"),
])
async def test_dane(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, ca_file: Path,
                    policy_server: PolicyServer, ta_chain: tuple[Path, Path, trustme.CA], usage: str,
                    expect: str) -> None:
    cert, key, inter = ta_chain
    leaf_pem = cert.read_bytes().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    tlsa = {
        "ee-good": f"3 1 1 {_spki_sha256(leaf_pem)}",
        "ta-good": f"2 1 1 {_spki_sha256(inter.cert_pem.bytes())}",
        "ee-wrong": "3 1 1 " + "00" * 32,
        "ta-other-ca": f"2 1 1 {_spki_sha256(trustme.CA().cert_pem.bytes())}",
        "pkix-only": f"1 1 1 {_spki_sha256(leaf_pem)}",
    }[usage]
    _dane_zone(dns_server, tlsa)
    with MxSink(tls_cert=(cert, key)) as sink:
        svc = _service(make_config, pool, dns_server, sink, ca_file, policy_server, dane=True, mta_sts=False)
        mid = await enqueue(pool, ["a@dest.test"])
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": expect}
        assert len(sink.received) == (1 if expect == "delivered" else 0)
    kind = "delivery" if expect == "delivered" else "transient_failure"
    d = await _event(pool, mid, kind)
    assert d["tls_policy"]["policy"] == "dane" and d["tls_policy"]["dane_hosts"] == ["mail.test"]
    if expect == "queued":
        assert d["reply"].startswith("451 4.7.10 TLS handshake with mail.test [127.0.0.1] failed: DANE: ")


async def test_dane_refuses_stripped_starttls(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer,
                                              plain_sink: MxSink, ca_file: Path, policy_server: PolicyServer) -> None:
    _dane_zone(dns_server, "3 1 1 " + "ab" * 32)
    svc = _service(make_config, pool, dns_server, plain_sink, ca_file, policy_server, dane=True)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "queued"} and plain_sink.received == []
    d = await _event(pool, mid, "transient_failure")
    assert d["reply"] == "451 4.7.10 TLS required but not offered by mail.test [127.0.0.1]"
    assert d["tls_policy"]["policy"] == "dane"


@pytest.mark.parametrize("signed", [
    pytest.param((), id="nothing-signed"),
    pytest.param(("dest.test", "_25._tcp.mail.test"), id="mx-host-address-insecure"),
    pytest.param(("mail.test", "_25._tcp.mail.test"), id="mx-rrset-insecure"),
    pytest.param(("dest.test", "mail.test"), id="tlsa-insecure"),
])
async def test_insecure_tlsa_is_ignored(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer,
                                        plain_sink: MxSink, ca_file: Path, policy_server: PolicyServer,
                                        signed: tuple[str, ...]) -> None:
    """Without the AD bit on the MX, the MX host's address and the TLSA RRsets (RFC 7672 §2.2), a TLSA
    record (which anyone on the path could forge) changes nothing."""
    _dane_zone(dns_server, "3 1 1 " + "ab" * 32, secure=False)
    for name in signed:
        dns_server.secure(name)
    svc = _service(make_config, pool, dns_server, plain_sink, ca_file, policy_server, dane=True)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}
    assert (await _event(pool, mid, "delivery"))["tls_policy"]["policy"] == "none"


async def test_dane_takes_precedence_over_mta_sts(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, ca_file: Path,
        policy_server: PolicyServer, ta_chain: tuple[Path, Path, trustme.CA]) -> None:
    cert, key, inter = ta_chain
    _dane_zone(dns_server, f"2 1 1 {_spki_sha256(inter.cert_pem.bytes())}")
    dns_server.add("_mta-sts.dest.test", "TXT", "v=STSv1; id=1;")
    policy_server.body = policy_text("enforce", "other.test")  # MTA-STS alone would refuse mail.test
    with MxSink(tls_cert=(cert, key)) as sink:
        svc = _service(make_config, pool, dns_server, sink, ca_file, policy_server, dane=True)
        mid = await enqueue(pool, ["a@dest.test"])
        await svc.run_once()
        assert len(sink.received) == 1
    tp = (await _event(pool, mid, "delivery"))["tls_policy"]
    assert tp["policy"] == "dane" and tp["mode"] == "enforce"


@pytest.mark.parametrize(("host", "expected"), [
    ("mail.test", None), ("MAIL.test.", None), ("other.test", "certificate does not name other.test"),
])
def test_dane_ta_checks_the_name(ta_chain: tuple[Path, Path, trustme.CA], host: str, expected: str | None) -> None:
    cert, _, inter = ta_chain
    chain = [x509.load_pem_x509_certificate(p + b"-----END CERTIFICATE-----\n").public_bytes(
        serialization.Encoding.DER) for p in cert.read_bytes().split(b"-----END CERTIFICATE-----\n") if p.strip()]
    record = dane.Tlsa(2, 1, 1, bytes.fromhex(_spki_sha256(inter.cert_pem.bytes())))
    assert dane.check_chain([record], chain, host) == expected
