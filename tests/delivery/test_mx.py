"""MX resolution (mailtrap_smtp.delivery.mx) against a real loopback DNS server."""

from __future__ import annotations

import dns.asyncresolver
import dns.resolver
import pytest

from mailtrap_smtp.delivery.mx import DnsPermanentError, DnsTemporaryError, MxHost, resolve_mx
from mailtrap_smtp.dnsresolve import make_resolver, parse_nameserver
from tests.dnsserver import TestDNSServer


def resolver_for(server: TestDNSServer, timeout: float = 0.5) -> dns.asyncresolver.Resolver:
    return make_resolver([server.address], timeout=timeout)


# -- dnsresolve ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("192.0.2.53", ("192.0.2.53", 53)),
        (" 192.0.2.53:5353 ", ("192.0.2.53", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("::1", ("::1", 53)),
        ("[2001:DB8::53]", ("2001:db8::53", 53)),
        ("[::1]:5300", ("::1", 5300)),
    ],
)
def test_parse_nameserver(entry: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(entry) == expected


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "dns.example.test",
        "192.0.2.1:",
        "192.0.2.1:0",
        "192.0.2.1:70000",
        "[::1",
        "[::1]x",
        "[192.0.2.1]:53",
        "1.2.3.4:53:53",
        "192.0.2.1:dns",
    ],
)
def test_parse_nameserver_rejects(entry: str) -> None:
    with pytest.raises(ValueError, match="invalid DNS nameserver entry") as info:
        parse_nameserver(entry)
    assert repr(entry) in str(info.value)


def test_make_resolver_settings() -> None:
    r = make_resolver(["192.0.2.1:5353", "[::1]"], timeout=3)
    assert [(ns.address, ns.port) for ns in r.nameservers] == [("192.0.2.1", 5353), ("::1", 53)]  # type: ignore[union-attr]
    assert r.lifetime == 3
    assert r.cache is None
    with pytest.raises(ValueError, match="bogus"):
        make_resolver(["bogus"])
    with pytest.raises(TypeError):
        make_resolver("192.0.2.1")


def test_make_resolver_empty_uses_system_config() -> None:
    try:
        r = make_resolver([], timeout=1)
    except dns.resolver.NoResolverConfiguration:
        pytest.skip("no system resolver configuration in this environment")
    assert r.lifetime == 1
    assert len(r.nameservers) >= 1


# -- resolve_mx -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_mx_in_preference_order_with_addresses(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "MX", "20 mx2.example.test.")
    dns_server.add("example.test", "MX", "10 MX1.example.test.")
    dns_server.add("example.test", "MX", "30 mx3.example.test.")
    dns_server.add("mx1.example.test", "A", "192.0.2.1")
    dns_server.add("mx1.example.test", "AAAA", "2001:db8::1")
    dns_server.add("mx2.example.test", "A", "192.0.2.2")
    dns_server.add("mx3.example.test", "AAAA", "2001:db8::3")
    hosts = await resolve_mx("example.test", resolver_for(dns_server))
    assert hosts == [
        MxHost("mx1.example.test", 10, ("192.0.2.1", "2001:db8::1")),
        MxHost("mx2.example.test", 20, ("192.0.2.2",)),
        MxHost("mx3.example.test", 30, ("2001:db8::3",)),
    ]


@pytest.mark.asyncio
async def test_equal_preferences_are_shuffled(dns_server: TestDNSServer) -> None:
    for name in ("a", "b"):
        dns_server.add("example.test", "MX", f"10 {name}.mx.example.test.")
        dns_server.add(f"{name}.mx.example.test", "A", "192.0.2.1")
    dns_server.add("example.test", "MX", "5 first.mx.example.test.")
    dns_server.add("first.mx.example.test", "A", "192.0.2.9")
    resolver = resolver_for(dns_server)
    orders = set()
    for _ in range(40):
        hosts = await resolve_mx("example.test", resolver)
        assert hosts[0].name == "first.mx.example.test"
        orders.add(tuple(h.name for h in hosts[1:]))
        if len(orders) == 2:
            break
    # P(same order 40 times) = 2**-39: a failure here is a real bug.
    assert orders == {("a.mx.example.test", "b.mx.example.test"), ("b.mx.example.test", "a.mx.example.test")}


@pytest.mark.asyncio
async def test_null_mx_is_permanent(dns_server: TestDNSServer) -> None:
    dns_server.add("nomail.test", "MX", "0 .")
    dns_server.add("nomail.test", "A", "192.0.2.1")  # must NOT fall back to A (RFC 7505)
    with pytest.raises(DnsPermanentError, match="null MX") as info:
        await resolve_mx("nomail.test", resolver_for(dns_server))
    assert info.value.domain == "nomail.test"


@pytest.mark.asyncio
async def test_null_mx_mixed_with_real_mx_uses_real_one(dns_server: TestDNSServer) -> None:
    dns_server.add("odd.test", "MX", "0 .")
    dns_server.add("odd.test", "MX", "10 mx.odd.test")
    dns_server.add("mx.odd.test", "A", "192.0.2.1")
    hosts = await resolve_mx("odd.test", resolver_for(dns_server))
    assert [h.name for h in hosts] == ["mx.odd.test"]


@pytest.mark.asyncio
async def test_no_mx_falls_back_to_a_and_aaaa(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "A", "192.0.2.10")
    dns_server.add("example.test", "AAAA", "2001:db8::10")
    dns_server.add("example.test", "TXT", "v=spf1 -all")
    hosts = await resolve_mx("Example.Test.", resolver_for(dns_server))
    assert hosts == [MxHost("example.test", 0, ("192.0.2.10", "2001:db8::10"))]


@pytest.mark.asyncio
async def test_no_mx_aaaa_only(dns_server: TestDNSServer) -> None:
    dns_server.add("v6.test", "AAAA", "2001:db8::6")
    assert await resolve_mx("v6.test", resolver_for(dns_server)) == [MxHost("v6.test", 0, ("2001:db8::6",))]


@pytest.mark.asyncio
async def test_no_mx_and_no_address_is_permanent(dns_server: TestDNSServer) -> None:
    dns_server.add("txtonly.test", "TXT", "hello")
    with pytest.raises(DnsPermanentError, match="no MX and no address"):
        await resolve_mx("txtonly.test", resolver_for(dns_server))


@pytest.mark.asyncio
async def test_nxdomain_is_permanent(dns_server: TestDNSServer) -> None:
    with pytest.raises(DnsPermanentError, match="NXDOMAIN"):
        await resolve_mx("does-not-exist.test", resolver_for(dns_server))


@pytest.mark.asyncio
async def test_servfail_is_temporary(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "MX", "10 mx.example.test")
    dns_server.servfail("example.test")
    with pytest.raises(DnsTemporaryError, match="SERVFAIL"):
        await resolve_mx("example.test", resolver_for(dns_server))


@pytest.mark.asyncio
async def test_timeout_is_temporary(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "MX", "10 mx.example.test")
    dns_server.drop("example.test")
    # How long a lookup may take is the resolver's lifetime (test_make_resolver_* above).
    with pytest.raises(DnsTemporaryError, match="timeout"):
        await resolve_mx("example.test", resolver_for(dns_server, timeout=0.5))
    assert ("example.test.", "MX", "udp") in dns_server.queries  # asked, and met with silence


@pytest.mark.asyncio
async def test_no_nameserver_listening_is_temporary(dns_server: TestDNSServer) -> None:
    address = dns_server.address
    dns_server.stop()
    with pytest.raises(DnsTemporaryError):
        await resolve_mx("example.test", make_resolver([address], timeout=0.3))


@pytest.mark.asyncio
async def test_mx_host_without_address_is_skipped(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "MX", "10 broken.example.test")
    dns_server.add("example.test", "MX", "20 good.example.test")
    dns_server.add("good.example.test", "A", "192.0.2.20")
    hosts = await resolve_mx("example.test", resolver_for(dns_server))
    assert hosts == [MxHost("good.example.test", 20, ("192.0.2.20",))]


@pytest.mark.asyncio
async def test_all_mx_hosts_without_address_is_permanent(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "MX", "10 gone1.example.test")
    dns_server.add("example.test", "MX", "20 mx.example.test")
    dns_server.add("mx.example.test", "TXT", "no address here")
    with pytest.raises(DnsPermanentError, match="no address for MX host"):
        await resolve_mx("example.test", resolver_for(dns_server))


@pytest.mark.asyncio
async def test_mx_hosts_without_address_and_one_failing_is_temporary(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "MX", "10 gone.example.test")
    dns_server.add("example.test", "MX", "20 flaky.example.test")
    dns_server.add("flaky.example.test", "A", "192.0.2.1")
    dns_server.servfail("flaky.example.test")
    with pytest.raises(DnsTemporaryError, match="no address for MX host"):
        await resolve_mx("example.test", resolver_for(dns_server))


@pytest.mark.asyncio
async def test_mx_host_addresses_use_the_same_resolver(dns_server: TestDNSServer) -> None:
    # "mx.example.test" exists only on the test server; the system resolver
    # could never return 192.0.2.55 for it.
    dns_server.add("example.test", "MX", "10 mx.example.test")
    dns_server.add("mx.example.test", "A", "192.0.2.55")
    await resolve_mx("example.test", resolver_for(dns_server))
    assert ("mx.example.test.", "A", "udp") in dns_server.queries
    assert ("mx.example.test.", "AAAA", "udp") in dns_server.queries


@pytest.mark.asyncio
async def test_mx_target_behind_cname(dns_server: TestDNSServer) -> None:
    # RFC 5321 §5.1 says MX targets must not be aliases, but senders cope.
    dns_server.add("example.test", "MX", "10 alias.example.test")
    dns_server.add("alias.example.test", "CNAME", "real.example.test")
    dns_server.add("real.example.test", "A", "192.0.2.3")
    hosts = await resolve_mx("example.test", resolver_for(dns_server))
    assert hosts == [MxHost("alias.example.test", 10, ("192.0.2.3",))]


@pytest.mark.asyncio
async def test_idn_domain_is_queried_as_a_labels(dns_server: TestDNSServer) -> None:
    dns_server.add("xn--bcher-kva.test", "MX", "10 mx.xn--bcher-kva.test")
    dns_server.add("mx.xn--bcher-kva.test", "A", "192.0.2.4")
    hosts = await resolve_mx("Bücher.test", resolver_for(dns_server))
    assert hosts == [MxHost("mx.xn--bcher-kva.test", 10, ("192.0.2.4",))]


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ["", "[192.0.2.1]", "192.0.2.1", "a..b"])
async def test_invalid_domains_are_permanent(dns_server: TestDNSServer, bad: str) -> None:
    with pytest.raises(DnsPermanentError):
        await resolve_mx(bad, resolver_for(dns_server))


@pytest.mark.asyncio
async def test_duplicate_exchange_kept_once_at_best_preference(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "MX", "20 mx.example.test")
    dns_server.add("example.test", "MX", "10 MX.example.test")
    dns_server.add("mx.example.test", "A", "192.0.2.1")
    hosts = await resolve_mx("example.test", resolver_for(dns_server))
    assert hosts == [MxHost("mx.example.test", 10, ("192.0.2.1",))]
