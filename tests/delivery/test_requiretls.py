"""REQUIRETLS (RFC 8689) and the TLS outcome of an attempt, against real parts.

Submission: smtplib over STARTTLS giving `MAIL FROM:<…> REQUIRETLS`, a raw client trying it before
TLS and with hostile values, the `TLS-Required: No` header, the account option (CLI and use case).
Delivery: aiosmtpd MXs with the test CA's certificate that offer REQUIRETLS or not, a plain one,
one with an untrusted certificate; the loopback DNS server marking the MX records DNSSEC-validated
(AD bit) or not; a loopback MTA-STS policy server for the `TLS-Required: No` cases.
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trustme

from mailtrap_smtp import maillog, metrics
from mailtrap_smtp.core import accounts as accounts_core
from mailtrap_smtp.delivery.tlspolicy import TlsPolicy
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from tests.delivery_util import FAST, enqueue, event_list, states
from tests.dnsserver import TestDNSServer
from tests.http_util import ApiEnv, minimal
from tests.inbound_util import Inbound
from tests.mtasts_server import PolicyServer, policy_text
from tests.mx_sink import MxSink, free_port
from tests.smtp_util import SENDER, Env, message, reply_line

# --- submission ---


def _submit(env: Env, extra: str = "", mail_options: tuple[str, ...] = ()) -> uuid.UUID:
    with smtplib.SMTP("127.0.0.1", env.port, timeout=10) as s:
        s.starttls(context=env.ssl_context)
        s.ehlo()
        s.login("api", env.token)
        s.mail(SENDER, list(mail_options))
        s.rcpt("user@dest.test")
        code, text = s.data(message(extra=extra))
        assert code == 250, text
        return uuid.UUID(text.decode().rsplit(" ", 1)[1])


async def _stored_request(env: Env, message_id: uuid.UUID) -> bool | None:
    value: bool | None = await env.pool.fetchval("SELECT tls_required FROM messages WHERE id = $1", message_id)
    return value


async def test_requiretls_is_offered_only_over_tls(smtp: Env) -> None:
    async with smtp.raw() as c:
        assert "REQUIRETLS" not in await c.cmd("EHLO client.test")
        await c.starttls()
        assert "REQUIRETLS" in [line[4:] for line in (await c.cmd("EHLO client.test")).split("\n")]
    async with smtp.raw(implicit=True) as c:
        assert "REQUIRETLS" in await c.cmd("EHLO client.test")


async def test_smtplib_requiretls_over_starttls_is_stored(smtp: Env) -> None:
    def run() -> tuple[bool, uuid.UUID]:
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as s:
            s.starttls(context=smtp.ssl_context)
            s.ehlo()
            offered = s.has_extn("requiretls")
        return offered, _submit(smtp, mail_options=("REQUIRETLS",))

    offered, mid = await asyncio.to_thread(run)
    assert offered
    assert await _stored_request(smtp, mid) is True


async def test_requiretls_before_tls_is_refused_and_nothing_stored(smtp: Env) -> None:
    async with smtp.raw() as c:
        await c.cmd("EHLO client.test")
        assert await c.cmd(f"MAIL FROM:<{SENDER}> REQUIRETLS") == "530 5.7.0 Must issue a STARTTLS command first"
        assert await c.cmd("RCPT TO:<user@dest.test>") == reply_line("STARTTLS_REQUIRED")
    await smtp.assert_nothing_stored()


@pytest.mark.parametrize(("params", "expected"), [
    pytest.param("REQUIRETLS=YES", "501 5.5.4 Syntax error in parameters", id="with-a-value"),
    pytest.param("REQUIRETLS REQUIRETLS", "501 5.5.4 Syntax error in parameters", id="twice"),
    pytest.param("requiretls=", "501 5.5.4 Syntax error in parameters", id="empty-value"),
])
async def test_hostile_requiretls_parameter(smtp: Env, params: str, expected: str) -> None:
    async with smtp.raw() as c:
        assert await c.login(smtp.token) == reply_line("AUTH_OK")
        assert await c.cmd(f"MAIL FROM:<{SENDER}> {params}") == expected
        assert await c.cmd("RCPT TO:<user@dest.test>") == reply_line("NEED_MAIL")
        assert await c.cmd("DATA") == reply_line("NEED_MAIL")
    await smtp.assert_nothing_stored()


@pytest.mark.parametrize(("extra", "options", "expected"), [
    pytest.param("", (), None, id="nothing-asked"),
    pytest.param("TLS-Required: No\r\n", (), False, id="tls-required-no"),
    pytest.param("tls-required:   NO  \r\n", (), False, id="tls-required-no-any-case"),
    pytest.param("TLS-Required: Yes\r\n", (), None, id="only-no-means-something"),
    pytest.param("", ("REQUIRETLS",), True, id="requiretls"),
    pytest.param("TLS-Required: No\r\n", ("REQUIRETLS",), True, id="requiretls-wins-over-the-header"),
])
async def test_what_the_message_asked_is_stored(smtp: Env, extra: str, options: tuple[str, ...],
                                                expected: bool | None) -> None:
    mid = await asyncio.to_thread(_submit, smtp, extra, options)
    assert await _stored_request(smtp, mid) is expected
    raw = await smtp.pool.fetchval("SELECT raw FROM messages WHERE id = $1", mid)
    assert (b"TLS-Required:" in raw or b"tls-required:" in raw) == bool(extra)  # kept for the next hops


async def test_account_option_makes_every_message_requiretls(smtp: Env) -> None:
    await accounts_core.set_require_tls(smtp.pool, smtp.account.name, True)
    mid = await asyncio.to_thread(_submit, smtp, "TLS-Required: No\r\n")
    assert await _stored_request(smtp, mid) is True
    await accounts_core.set_require_tls(smtp.pool, smtp.account.name, False)
    assert await _stored_request(smtp, await asyncio.to_thread(_submit, smtp)) is None


def test_account_require_tls_cli(cli_run: Any) -> None:
    assert cli_run("account", "create", "acme")[0] == 0
    assert json.loads(cli_run("account", "show", "acme", "--json")[1])["require_tls"] is False
    code, out, err = cli_run("account", "require-tls", "acme", "on")
    assert (code, out) == (0, "account acme: REQUIRETLS (RFC 8689) for every message on\n"), err
    assert json.loads(cli_run("account", "show", "acme", "--json")[1])["require_tls"] is True
    code, out, _ = cli_run("account", "require-tls", "acme", "off", "--json")
    assert code == 0 and json.loads(out)["require_tls"] is False
    assert cli_run("account", "require-tls", "nobody", "on")[:2] == (1, "")


@pytest.mark.parametrize(("headers", "account_option", "expected"), [
    pytest.param(None, False, None, id="nothing-asked"),
    pytest.param({"TLS-Required": "No"}, False, False, id="tls-required-no-in-headers"),
    pytest.param(None, True, True, id="account-requiretls"),
    pytest.param({"TLS-Required": "No"}, True, True, id="account-requiretls-wins"),
])
async def test_send_api_follows_the_header_and_the_account(api: ApiEnv, headers: dict[str, str] | None,
                                                           account_option: bool, expected: bool | None) -> None:
    """The JSON API has no REQUIRETLS field (Mailtrap's has none): the account option asks for it;
    `TLS-Required: No` travels in `headers` like any other field."""
    await accounts_core.set_require_tls(api.pool, api.account.name, account_option)
    async with api.client() as c:
        r = await c.post("/api/send", json=minimal(**({"headers": headers} if headers else {})), headers=api.auth())
    assert r.status_code == 200, r.text
    (rid,) = r.json()["message_ids"]
    stored = await api.pool.fetchval(
        "SELECT m.tls_required FROM messages m JOIN recipients r ON r.message_id = m.id WHERE r.public_id = $1::uuid",
        rid)
    assert stored is expected


# --- the inbound listener: the bounce of a REQUIRETLS message comes back with REQUIRETLS (RFC 8689 §5) ---


async def test_inbound_listener_takes_requiretls_over_tls_only(inbound: Inbound) -> None:
    async with inbound.raw() as c:
        assert "REQUIRETLS" not in await c.cmd("EHLO reporter.test")
        assert await c.cmd("MAIL FROM:<> REQUIRETLS") == \
            "530 5.7.10 REQUIRETLS needs a TLS-protected session: issue STARTTLS first"
        await c.starttls()
        assert "REQUIRETLS" in [line[4:] for line in (await c.cmd("EHLO reporter.test")).split("\n")]
        assert await c.cmd("MAIL FROM:<> REQUIRETLS=YES") == reply_line("BAD_PARAMETER")
        assert await c.cmd("MAIL FROM:<> REQUIRETLS") == reply_line("SENDER_OK")
        assert await c.cmd(f"RCPT TO:<{inbound.verp}>") == reply_line("RECIPIENT_OK")
    assert await inbound.feedback_events() == []


# --- delivery ---


def _zone(dns_server: TestDNSServer, *, dnssec: bool = True) -> None:
    dns_server.add("dest.test", "MX", "10 mail.test.")  # the test certificate names mail.test
    dns_server.add("mail.test", "A", "127.0.0.1")
    if dnssec:  # a validating resolver's AD bit: the MX host is authenticated (RFC 8689 §4.2.1 step 2)
        for name in ("dest.test", "mail.test"):
            dns_server.secure(name)


def _service(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, port: int, ca_file: Path,
             https_port: int = 443, **delivery: Any) -> DeliveryService:
    cfg = make_config(delivery={**FAST, "tls_ca_file": str(ca_file), "dane": True, **delivery},
                      dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0})
    resolver = make_resolver(cfg.dns.nameservers, 1.0)
    svc = DeliveryService(cfg, pool, resolver, mx_port=port)
    svc.tls_policy = TlsPolicy(cfg, resolver, verify_context=svc.tls_verify_context, https_port=https_port)
    return svc


async def _event(pool: asyncpg.Pool[Any], mid: Any, kind: str) -> dict[str, Any]:
    (details,) = [d for t, _, d in await event_list(pool, mid) if t == kind]
    return details


def _counted(counter: Any, **labels: str) -> float:
    """The sum of a counter's samples with these label values (the metrics the node endpoint serves)."""
    return sum(sample.value for family in counter.collect() for sample in family.samples
               if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items()))


def _delivery_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "mailtrap_smtp.maillog" and r.getMessage().startswith("delivery ")]


@pytest.fixture
def text_maillog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    maillog.configure("text")
    caplog.set_level(logging.INFO)
    return caplog


async def test_requiretls_delivered_to_an_authenticated_mx_that_offers_it(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, cert_files: tuple[Path, Path],
        ca_file: Path, text_maillog: pytest.LogCaptureFixture) -> None:
    _zone(dns_server)
    sessions = _counted(metrics.DELIVERY_TLS_POLICY, policy="requiretls")
    with MxSink(tls_cert=cert_files, requiretls=True) as sink:
        svc = _service(make_config, pool, dns_server, sink.port, ca_file)
        mid = await enqueue(pool, ["a@dest.test"], tls_required=True)
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": "delivered"}
        (got,) = sink.received
    assert got.tls and "REQUIRETLS" in got.mail_options  # RFC 8689 §4.2.1: MAIL carries it on
    tp = (await _event(pool, mid, "delivery"))["tls_policy"]
    assert (tp["policy"], tp["request"], tp["mx_auth"]) == ("requiretls", "requiretls", "dnssec")
    assert tp["version"].startswith("TLSv1.") and "failure" not in tp
    assert _counted(metrics.DELIVERY_TLS_POLICY, policy="requiretls", version=tp["version"]) == sessions + 1
    (line,) = _delivery_lines(text_maillog)
    assert " status=delivered mx=mail.test tls=TLSv1." in line
    assert " tls_policy=requiretls tls_request=requiretls delay=" in line


async def test_requiretls_tries_the_next_mx_host(make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer,
                                                 ca: trustme.CA, ca_file: Path, tmp_path: Path) -> None:
    """RFC 8689 §4.2.1: a host that falls short gets QUIT and the next MX host is tried."""
    cert, key = tmp_path / "mx.pem", tmp_path / "mx.key"
    issued = ca.issue_cert("mx1.test", "mx2.test")
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    dns_server.add("dest.test", "MX", "10 mx1.test.")
    dns_server.add("dest.test", "MX", "20 mx2.test.")
    dns_server.add("mx1.test", "A", "127.0.0.1")
    dns_server.add("mx2.test", "A", "127.0.0.2")
    for name in ("dest.test", "mx1.test", "mx2.test"):
        dns_server.secure(name)
    port = free_port()
    with MxSink(host="127.0.0.1", port=port, tls_cert=(cert, key)) as first, \
            MxSink(host="127.0.0.2", port=port, tls_cert=(cert, key), requiretls=True) as second:
        svc = _service(make_config, pool, dns_server, port, ca_file)
        mid = await enqueue(pool, ["a@dest.test"], tls_required=True)
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": "delivered"}
        assert first.ehlos and first.received == [] and len(second.received) == 1
    assert (await _event(pool, mid, "delivery"))["mx"] == "mx2.test"


@pytest.mark.parametrize(("case", "reply"), [
    pytest.param("not-offered", "550 5.7.30 mail.test [127.0.0.1] does not offer REQUIRETLS",
                 id="mx-without-requiretls"),
    pytest.param("plain", "550 5.7.10 TLS required but not offered by mail.test [127.0.0.1]", id="starttls-stripped"),
    pytest.param("untrusted", "550 5.7.10 TLS handshake with mail.test [127.0.0.1] failed: ",
                 id="untrusted-certificate"),
    pytest.param("unauthenticated-mx", "550 5.7.10 REQUIRETLS: no MX host of dest.test is authenticated (no "
                 "DNSSEC-validated MX records, no MTA-STS policy listing one: no MTA-STS TXT (nxdomain))",
                 id="mx-not-dnssec-no-mta-sts"),
])
async def test_requiretls_not_met_returns_the_message(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, cert_files: tuple[Path, Path],
        ca_file: Path, tmp_path: Path, text_maillog: pytest.LogCaptureFixture, case: str, reply: str) -> None:
    _zone(dns_server, dnssec=case != "unauthenticated-mx")
    kwargs: dict[str, Any] = {"tls_cert": cert_files, "requiretls": True}
    if case == "not-offered":
        kwargs["requiretls"] = False
    elif case == "plain":
        kwargs = {"requiretls": True}  # no STARTTLS: what an attacker who strips it leaves
    elif case == "untrusted":
        other = trustme.CA().issue_cert("mail.test")
        kwargs["tls_cert"] = (tmp_path / "o.pem", tmp_path / "o.key")
        other.cert_chain_pems[0].write_to_path(str(kwargs["tls_cert"][0]))
        other.private_key_pem.write_to_path(str(kwargs["tls_cert"][1]))
    failures = _counted(metrics.DELIVERY_TLS_POLICY_FAILURES, policy="requiretls")
    with MxSink(**kwargs) as sink:
        svc = _service(make_config, pool, dns_server, sink.port, ca_file)
        mid = await enqueue(pool, ["a@dest.test"], tls_required=True)
        await svc.run_once()
        assert sink.data_started == [] and sink.received == []  # never in clear, never to a host without it
        assert bool(sink.ehlos) is (case != "unauthenticated-mx")
    assert await states(pool, mid) == {"a@dest.test": "bounced"}
    d = await _event(pool, mid, "bounce")
    assert d["reply"].startswith(reply) and d["category"] == "tls_required"
    assert d["tls_policy"]["policy"] == "requiretls" and d["tls_policy"]["request"] == "requiretls"
    assert d["tls_policy"]["failure"] == d["reply"][len("550 5.7.xx "):]
    assert _counted(metrics.DELIVERY_TLS_POLICY_FAILURES, policy="requiretls") == failures + 1
    (line,) = _delivery_lines(text_maillog)
    assert " status=bounced " in line and " tls_policy=requiretls tls_request=requiretls tls_failure=" in line


async def test_requiretls_waits_for_an_mx_that_cannot_be_reached(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, ca_file: Path) -> None:
    """Not reaching the host says nothing about REQUIRETLS: a temporary failure, retried."""
    _zone(dns_server)
    svc = _service(make_config, pool, dns_server, free_port(), ca_file)
    mid = await enqueue(pool, ["a@dest.test"], tls_required=True)
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "queued"}
    d = await _event(pool, mid, "transient_failure")
    assert d["reply"].startswith("451 4.4.1 cannot connect to mail.test [127.0.0.1]")
    assert d["tls_policy"]["policy"] == "requiretls"


async def test_requiretls_through_a_route_checks_the_route_certificate(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, cert_files: tuple[Path, Path],
        ca_file: Path) -> None:
    with MxSink(tls_cert=cert_files, requiretls=True) as sink:
        svc = _service(make_config, pool, dns_server, sink.port, ca_file, routes={"dest.test": sink.address})
        mid = await enqueue(pool, ["a@dest.test"], tls_required=True)
        await svc.run_once()
        assert ["REQUIRETLS" in r.mail_options for r in sink.received] == [True]
    tp = (await _event(pool, mid, "delivery"))["tls_policy"]
    assert (tp["policy"], tp["mx_auth"]) == ("requiretls", "route")


# --- TLS-Required: No (RFC 8689 §4.2.2) ---


@pytest.fixture
async def policy_server(ca: trustme.CA) -> AsyncIterator[PolicyServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mta-sts.dest.test").configure_cert(ctx)
    server = PolicyServer(ctx)
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize(("mx", "failure"), [
    pytest.param("mail.test", "TLS required but not offered by mail.test [127.0.0.1]", id="starttls-stripped"),
    pytest.param("other.test", "MTA-STS policy of dest.test (enforce) lists none of its MX hosts", id="mx-not-listed"),
])
async def test_tls_required_no_is_delivered_despite_an_enforce_policy(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, ca_file: Path,
        policy_server: PolicyServer, text_maillog: pytest.LogCaptureFixture, mx: str, failure: str) -> None:
    _zone(dns_server, dnssec=False)
    dns_server.add("mta-sts.dest.test", "A", "127.0.0.1")
    dns_server.add("_mta-sts.dest.test", "TXT", "v=STSv1; id=1;")
    policy_server.body = policy_text("enforce", mx)
    with MxSink() as sink:  # no STARTTLS at all
        svc = _service(make_config, pool, dns_server, sink.port, ca_file, https_port=policy_server.port, dane=False)
        held = await enqueue(pool, ["held@dest.test"])
        free = await enqueue(pool, ["free@dest.test"], tls_required=False)
        await svc.run_once()
        assert [r.rcpts for r in sink.received] == [["free@dest.test"]] and not sink.received[0].tls
    assert await states(pool, held) == {"held@dest.test": "queued"}  # the policy holds for everyone else
    assert await states(pool, free) == {"free@dest.test": "delivered"}
    tp = (await _event(pool, free, "delivery"))["tls_policy"]
    assert (tp["policy"], tp["mode"], tp["request"], tp["version"]) == ("mta-sts", "enforce", "tls-required-no", None)
    assert tp["failure"] == failure
    (line,) = [x for x in _delivery_lines(text_maillog) if "free@dest.test" in x]
    assert f' tls_policy=mta-sts tls_request=tls-required-no tls_failure="{failure}" ' in line


@pytest.mark.parametrize("mode", ["enforce", "testing"])
async def test_requiretls_mx_authenticated_by_mta_sts(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, cert_files: tuple[Path, Path],
        ca_file: Path, policy_server: PolicyServer, mode: str) -> None:
    """Without DNSSEC, an MTA-STS policy that lists the MX host authenticates it (RFC 8689 §4.2.1 step 2)."""
    _zone(dns_server, dnssec=False)
    dns_server.add("mta-sts.dest.test", "A", "127.0.0.1")
    dns_server.add("_mta-sts.dest.test", "TXT", "v=STSv1; id=1;")
    policy_server.body = policy_text(mode, "mail.test")
    with MxSink(tls_cert=cert_files, requiretls=True) as sink:
        svc = _service(make_config, pool, dns_server, sink.port, ca_file, https_port=policy_server.port, dane=False)
        mid = await enqueue(pool, ["a@dest.test"], tls_required=True)
        await svc.run_once()
        assert ["REQUIRETLS" in r.mail_options for r in sink.received] == [True]
    tp = (await _event(pool, mid, "delivery"))["tls_policy"]
    assert (tp["policy"], tp["mx_auth"], tp["mode"]) == ("requiretls", "mta-sts", mode)


async def test_requiretls_waits_when_the_mta_sts_policy_cannot_be_fetched(
        make_config: Any, pool: asyncpg.Pool[Any], dns_server: TestDNSServer, ca_file: Path,
        policy_server: PolicyServer) -> None:
    """The TXT record says a policy exists; unfetched, it may yet list the MX host: wait, do not return."""
    _zone(dns_server, dnssec=False)
    dns_server.add("mta-sts.dest.test", "A", "127.0.0.1")
    dns_server.add("_mta-sts.dest.test", "TXT", "v=STSv1; id=1;")
    policy_server.status = "404 Not Found"
    svc = _service(make_config, pool, dns_server, free_port(), ca_file, https_port=policy_server.port, dane=False)
    mid = await enqueue(pool, ["a@dest.test"], tls_required=True)
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "queued"}
    d = await _event(pool, mid, "transient_failure")
    assert d["reply"].startswith("451 4.7.10 REQUIRETLS: no MX host of dest.test is authenticated")
    assert "policy fetch failed" in d["reply"] and d["tls_policy"]["policy"] == "requiretls"
