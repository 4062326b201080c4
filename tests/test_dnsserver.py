"""Tests for the loopback DNS test server itself (tests/dnsserver.py).

Queries go over real UDP/TCP with dnspython's low-level query functions so
rcodes, flags and sections can be inspected exactly.
"""

from __future__ import annotations

import socket
import threading

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.dnsserver import TestDNSServer, running_dns_server


def ask(
    server: TestDNSServer, name: str, rtype: str, *, tcp: bool = False, edns: int = -1, timeout: float = 1.0
) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, use_edns=edns, payload=1232)
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=timeout)
    return dns.query.udp(query, server.host, port=server.port, timeout=timeout)


def answers(msg: dns.message.Message, rtype: str) -> list[str]:
    rdtype = dns.rdatatype.from_text(rtype)
    return [rd.to_text() for rrset in msg.answer if rrset.rdtype == rdtype for rd in rrset]


def test_address_is_host_port(dns_server: TestDNSServer) -> None:
    host, port = dns_server.address.rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) == dns_server.port > 0


def test_a_aaaa_over_udp_and_tcp(dns_server: TestDNSServer) -> None:
    dns_server.add("host.example.test", "A", "192.0.2.1")
    dns_server.add("host.example.test", "A", "192.0.2.2", ttl=300)
    dns_server.add("host.example.test", "AAAA", "2001:db8::1")
    for tcp in (False, True):
        a = ask(dns_server, "host.example.test", "A", tcp=tcp)
        assert a.rcode() == dns.rcode.NOERROR
        assert sorted(answers(a, "A")) == ["192.0.2.1", "192.0.2.2"]
        assert answers(ask(dns_server, "host.example.test", "AAAA", tcp=tcp), "AAAA") == ["2001:db8::1"]
    assert {proto for _, _, proto in dns_server.queries} == {"udp", "tcp"}


def test_mx_and_null_mx(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "MX", "10 mx1.example.test.")
    dns_server.add("example.test", "MX", "20 mx2.example.test")
    dns_server.add("nomail.test", "MX", "0 .")
    assert sorted(answers(ask(dns_server, "example.test", "MX"), "MX")) == [
        "10 mx1.example.test.",
        "20 mx2.example.test.",
    ]
    assert answers(ask(dns_server, "nomail.test", "MX"), "MX") == ["0 ."]


def test_txt_long_value_is_split_into_255_byte_strings(dns_server: TestDNSServer) -> None:
    value = "v=DKIM1; k=rsa; p=" + "A" * 600
    dns_server.add("sel._domainkey.example.test", "TXT", value)
    msg = ask(dns_server, "sel._domainkey.example.test", "TXT", edns=0)
    (rrset,) = msg.answer
    strings = rrset[0].strings
    assert [len(s) for s in strings] == [255, 255, len(value) - 510]
    assert b"".join(strings).decode() == value


def test_txt_explicit_split_and_multiple_records(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "TXT", ["v=spf1 ", "include:a.test ~all"])
    dns_server.add("example.test", "TXT", "google-site-verification=x")
    (rrset,) = ask(dns_server, "example.test", "TXT").answer
    assert sorted(tuple(rd.strings) for rd in rrset) == [
        (b"google-site-verification=x",),
        (b"v=spf1 ", b"include:a.test ~all"),
    ]
    with pytest.raises(ValueError):
        dns_server.add("example.test", "TXT", ["x" * 256])


def test_large_answer_truncated_over_udp_then_served_over_tcp(dns_server: TestDNSServer) -> None:
    dns_server.add("big.example.test", "TXT", "x" * 2000)
    udp = ask(dns_server, "big.example.test", "TXT")  # no EDNS: 512-byte limit
    assert udp.flags & dns.flags.TC
    assert udp.answer == []
    tcp = ask(dns_server, "big.example.test", "TXT", tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert len(b"".join(tcp.answer[0][0].strings)) == 2000


def test_cname_chain_is_chased(dns_server: TestDNSServer) -> None:
    dns_server.add("www.example.test", "CNAME", "alias.example.test")
    dns_server.add("alias.example.test", "CNAME", "real.example.test.")
    dns_server.add("real.example.test", "A", "192.0.2.7")
    msg = ask(dns_server, "www.example.test", "A")
    assert msg.rcode() == dns.rcode.NOERROR
    chain = [(rr.name.to_text(), dns.rdatatype.to_text(rr.rdtype), rr[0].to_text()) for rr in msg.answer]
    assert chain == [
        ("www.example.test.", "CNAME", "alias.example.test."),
        ("alias.example.test.", "CNAME", "real.example.test."),
        ("real.example.test.", "A", "192.0.2.7"),
    ]
    # Asking for the CNAME itself returns only that record.
    assert answers(ask(dns_server, "www.example.test", "CNAME"), "CNAME") == ["alias.example.test."]


def test_cname_to_missing_target_is_nxdomain_with_chain(dns_server: TestDNSServer) -> None:
    dns_server.add("dangling.example.test", "CNAME", "gone.example.test")
    msg = ask(dns_server, "dangling.example.test", "TXT")
    assert msg.rcode() == dns.rcode.NXDOMAIN  # RFC 6604
    assert answers(msg, "CNAME") == ["gone.example.test."]


def test_cname_loop_terminates(dns_server: TestDNSServer) -> None:
    dns_server.add("a.example.test", "CNAME", "b.example.test")
    dns_server.add("b.example.test", "CNAME", "a.example.test")
    msg = ask(dns_server, "a.example.test", "A")
    assert len(msg.answer) == 2


def test_nxdomain_vs_nodata(dns_server: TestDNSServer) -> None:
    dns_server.add("sel._domainkey.example.test", "TXT", "v=DKIM1; p=x")
    dns_server.add("example.test", "A", "192.0.2.1")
    nx = ask(dns_server, "nothing.example.test", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    nodata = ask(dns_server, "example.test", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
    # Empty non-terminal: exists because something lives below it (RFC 8020).
    ent = ask(dns_server, "_domainkey.example.test", "TXT")
    assert ent.rcode() == dns.rcode.NOERROR and ent.answer == []


def test_names_are_case_insensitive(dns_server: TestDNSServer) -> None:
    dns_server.add("MiXeD.Example.TEST.", "A", "192.0.2.5")
    msg = ask(dns_server, "mixed.EXAMPLE.test", "A")
    assert answers(msg, "A") == ["192.0.2.5"]
    dns_server.remove("MIXED.example.test", "A")
    assert ask(dns_server, "mixed.example.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_remove_and_clear(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "A", "192.0.2.1")
    dns_server.add("example.test", "MX", "10 mx.example.test")
    dns_server.remove("example.test", "MX")
    assert ask(dns_server, "example.test", "MX").answer == []
    assert answers(ask(dns_server, "example.test", "A"), "A") == ["192.0.2.1"]
    dns_server.remove("example.test")
    assert ask(dns_server, "example.test", "A").rcode() == dns.rcode.NXDOMAIN
    dns_server.add("example.test", "A", "192.0.2.1")
    dns_server.servfail("other.test")
    dns_server.clear()
    assert ask(dns_server, "example.test", "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(dns_server, "other.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_unsupported_type_rejected(dns_server: TestDNSServer) -> None:
    with pytest.raises(ValueError, match="unsupported record type"):
        dns_server.add("example.test", "SRV", "0 0 25 mx.example.test")
    with pytest.raises(ValueError, match="MX value"):
        dns_server.add("example.test", "MX", "mx.example.test")


def test_servfail_and_heal(dns_server: TestDNSServer) -> None:
    dns_server.add("example.test", "A", "192.0.2.1")
    dns_server.servfail("EXAMPLE.test")
    assert ask(dns_server, "example.test", "A").rcode() == dns.rcode.SERVFAIL
    dns_server.heal("example.test")
    assert answers(ask(dns_server, "example.test", "A"), "A") == ["192.0.2.1"]


def test_servfail_on_cname_target(dns_server: TestDNSServer) -> None:
    dns_server.add("alias.example.test", "CNAME", "broken.example.test")
    dns_server.add("broken.example.test", "A", "192.0.2.1")
    dns_server.servfail("broken.example.test")
    assert ask(dns_server, "alias.example.test", "A").rcode() == dns.rcode.SERVFAIL


@pytest.mark.parametrize("tcp", [False, True])
def test_drop_times_out_then_heals(dns_server: TestDNSServer, tcp: bool) -> None:
    dns_server.add("example.test", "A", "192.0.2.1")
    dns_server.drop("example.test")
    with pytest.raises(dns.exception.Timeout):
        ask(dns_server, "example.test", "A", tcp=tcp, timeout=0.3)
    # The query arrived and was met with silence (not refused, not answered).
    assert ("example.test.", "A", "tcp" if tcp else "udp") in dns_server.queries
    dns_server.heal("example.test")
    assert answers(ask(dns_server, "example.test", "A", tcp=tcp), "A") == ["192.0.2.1"]


def test_stop_frees_the_port_and_its_threads() -> None:
    threads = threading.active_count()
    with running_dns_server() as server:
        server.add("example.test", "A", "192.0.2.1")
        assert answers(ask(server, "example.test", "A"), "A") == ["192.0.2.1"]
    assert threading.active_count() == threads
    # Both sockets are closed: the port can be bound again at once, over UDP and TCP.
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((server.host, server.port))


def test_two_servers_get_distinct_ports() -> None:
    with running_dns_server() as one, running_dns_server() as two:
        assert one.port != two.port
        one.add("example.test", "A", "192.0.2.1")
        assert ask(two, "example.test", "A").rcode() == dns.rcode.NXDOMAIN
