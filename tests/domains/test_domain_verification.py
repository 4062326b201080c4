"""Sending-domain verification end to end below the CLI: add → publish → verify → may send.

Every test talks to a real DNS server on loopback (tests/dnsserver.py) through the service's own
dnspython resolver, and to a real PostgreSQL. The sender check asserted on is
`store.domains.sending_domain`, the exact query the SMTP front end runs at MAIL FROM / DATA.
Time is injected (`now=` / `clock=`): nothing here sleeps through a grace period.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from mailtrap_smtp import dnsresolve, domainops
from mailtrap_smtp.config import Config
from mailtrap_smtp.domains import ExpectedRecord
from mailtrap_smtp.events import Event
from mailtrap_smtp.store import accounts as accounts_store
from mailtrap_smtp.store import domains as domains_store
from mailtrap_smtp.store import events as events_store
from tests.dnsserver import TestDNSServer
from tests.domain_util import (
    HOUR,
    KEK,
    T0,
    domain_config,
    event_types,
    make_account,
    may_send,
    publish,
    resolver_for,
)

# Every record of a new domain (default config): Mailtrap's verification, dkim1, dkim2, spf, dmarc and
# link_verification.
ALL_KEYS = ("ownership", "dkim:mt1", "dkim:mt2", "spf", "dmarc", "link")


def statuses(report: domainops.DomainReport) -> dict[str, str]:
    assert report.checks is not None
    return {c.record.key: c.status for c in report.checks}


@pytest.fixture
def cfg(make_config: Callable[..., Config], dns_server: TestDNSServer) -> Config:
    return domain_config(make_config, dns_server)


@pytest.fixture
async def added(pool: Any, cfg: Config) -> tuple[Any, domainops.DomainReport]:
    account = await make_account(pool)
    return account, await domainops.add_domain(pool, cfg, KEK, "acme", "example.test")


# ---------------------------------------------------------------- add

async def test_add_records_unverified_domain_and_the_records_to_publish(
        pool: Any, cfg: Config, added: tuple[Any, domainops.DomainReport]) -> None:
    account, report = added
    assert report.domain["state"] == "unverified"
    assert not await may_send(pool, account, "example.test")
    by_key = {r.key: r for r in report.records}
    assert list(by_key) == ["ownership", "dkim:mt1", "dkim:mt2", "spf", "dmarc", "link"]
    assert [r.mailtrap_key for r in report.records] == [
        "verification", "dkim1", "dkim2", "spf", "dmarc", "link_verification"]
    assert [r.key for r in report.records if r.required] == ["ownership", "dkim:mt1", "dmarc"]
    assert (by_key["dkim:mt2"].type, by_key["dkim:mt2"].name) == ("TXT", "mt2._domainkey.example.test")
    assert by_key["dkim:mt2"].value.startswith("v=DKIM1; k=rsa; p=MII")  # the next key, a real one
    assert (by_key["link"].type, by_key["link"].name, by_key["link"].value) == (
        "CNAME", "mt-link.example.test", "t.mx.service.test")
    token = report.domain["verification_token"]
    assert (by_key["ownership"].type, by_key["ownership"].name, by_key["ownership"].value) == (
        "CNAME", f"{token}.example.test", "rp.mx.service.test")
    dkim = by_key["dkim:mt1"]
    assert (dkim.type, dkim.name) == ("TXT", "mt1._domainkey.example.test")
    assert dkim.value.startswith("v=DKIM1; k=rsa; p=MII") and len(dkim.value) > 255  # split when published
    assert by_key["spf"].value == "v=spf1 include:_spf.mx.service.test ~all"
    assert not by_key["spf"].required  # cname mode: SPF is evaluated on the return-path host
    assert (by_key["dmarc"].name, by_key["dmarc"].value) == ("_dmarc.example.test", "v=DMARC1; p=none")


async def test_add_with_ed25519_publishes_two_dkim_records(
        pool: Any, make_config: Callable[..., Config], dns_server: TestDNSServer) -> None:
    cfg = make_config(dns={"nameservers": [dns_server.address]}, dkim={"ed25519": True})
    await make_account(pool)
    report = await domainops.add_domain(pool, cfg, KEK, "acme", "example.test")
    dkim = {r.key: r.value for r in report.records if r.key.startswith("dkim:")}
    assert set(dkim) == {"dkim:mt1", "dkim:mt2", "dkim:mte1", "dkim:mte2"}
    assert [r.mailtrap_key for r in report.records if r.key.startswith("dkim:")] == [
        "dkim1", "dkim2", "dkim1_ed25519", "dkim2_ed25519"]
    assert dkim["dkim:mte1"].startswith("v=DKIM1; k=ed25519; p=")
    publish(dns_server, report.records)
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert set(statuses(report).values()) == {"pass"} and report.domain["state"] == "verified"


async def test_txt_ownership_mode_requires_spf(
        pool: Any, make_config: Callable[..., Config], dns_server: TestDNSServer) -> None:
    cfg = domain_config(make_config, dns_server, ownership="txt")
    account = await make_account(pool)
    report = await domainops.add_domain(pool, cfg, KEK, "acme", "example.test")
    by_key = {r.key: r for r in report.records}
    assert (by_key["ownership"].type, by_key["ownership"].name) == ("TXT", "_mailtrap-smtp.example.test")
    assert by_key["ownership"].value == "mailtrap-smtp-verification=" + report.domain["verification_token"]
    assert by_key["spf"].required
    publish(dns_server, report.records, skip=("spf",))
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert statuses(report)["spf"] == "missing" and report.domain["state"] == "unverified"
    dns_server.add("example.test", "TXT", "v=spf1 ip4:192.0.2.1 include:_spf.mx.service.test -all")
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert report.domain["state"] == "verified" and await may_send(pool, account, "example.test")


@pytest.mark.parametrize("name", ["www.example.test", "WWW.Example.Test."])
async def test_www_is_refused_unless_forced(pool: Any, cfg: Config, name: str) -> None:
    await make_account(pool)
    with pytest.raises(domainops.DomainOpError, match=r"web host name.*example\.test.*--force"):
        await domainops.add_domain(pool, cfg, KEK, "acme", name)
    assert await domains_store.list_all(pool) == []
    report = await domainops.add_domain(pool, cfg, KEK, "acme", "WWW.Example.Test.", force=True)
    assert report.domain["name"] == "www.example.test"


async def test_idn_is_stored_as_a_labels(pool: Any, cfg: Config) -> None:
    await make_account(pool)
    report = await domainops.add_domain(pool, cfg, KEK, "acme", "Bücher.Example")
    assert report.domain["name"] == "xn--bcher-kva.example"
    assert {r.name for r in report.records} >= {"_dmarc.xn--bcher-kva.example",
                                                 "mt1._domainkey.xn--bcher-kva.example"}
    # Looked up by either spelling afterwards.
    assert (await domainops._get(pool, "bücher.example"))["id"] == report.domain["id"]


INVALID_NAMES = ["exa mple.test", "-bad.test", "example", "user@example.test", "192.0.2.1", "[192.0.2.1]",
                 "a..b.test", "under_score.test", "", "x" * 64 + ".test", "example.123", "xn--zz.test"]


async def test_invalid_names_are_rejected(pool: Any, cfg: Config) -> None:
    await make_account(pool)
    for name in INVALID_NAMES:
        with pytest.raises(domainops.DomainOpError):
            await domainops.add_domain(pool, cfg, KEK, "acme", name)
    assert await domains_store.list_all(pool) == []


async def test_duplicate_and_unknown_account_are_refused(
        pool: Any, cfg: Config, added: tuple[Any, domainops.DomainReport]) -> None:
    with pytest.raises(domainops.DomainOpError, match="already exists"):
        await domainops.add_domain(pool, cfg, KEK, "acme", "EXAMPLE.test")
    with pytest.raises(domainops.DomainOpError, match="no account"):
        await domainops.add_domain(pool, cfg, KEK, "nobody", "other.test")


# ---------------------------------------------------------------- verify

async def test_every_record_passing_verifies_and_allows_sending(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    account, report = added
    publish(dns_server, report.records)
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    assert statuses(report) == dict.fromkeys(ALL_KEYS, "pass")
    assert report.domain["state"] == "verified"
    assert report.domain["verified_at"] == T0 and report.domain["last_checked_at"] == T0
    assert await may_send(pool, account, "example.test")
    assert await event_types(pool, report.domain) == [Event.DOMAIN_VERIFIED]
    # Verifying again changes nothing and records no second event.
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + HOUR)
    assert report.domain["verified_at"] == T0 and report.domain["last_checked_at"] == T0 + HOUR
    assert await event_types(pool, report.domain) == [Event.DOMAIN_VERIFIED]


@pytest.mark.parametrize("missing", ["ownership", "dkim:mt1", "dmarc"])
async def test_each_required_record_missing(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport],
        missing: str) -> None:
    account, report = added
    publish(dns_server, report.records, skip=(missing,))
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert statuses(report) == {**dict.fromkeys(ALL_KEYS, "pass"), missing: "missing"}
    assert report.domain["state"] == "unverified"
    assert not await may_send(pool, account, "example.test")
    rows = await domains_store.list_all(pool)
    assert [c["key"] for c in _last_check(rows[0]) if c["status"] != "pass"] == [missing]


async def test_missing_spf_is_informational_in_cname_mode(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    _, report = added
    publish(dns_server, report.records, skip=("spf",))
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert statuses(report)["spf"] == "missing" and report.domain["state"] == "verified"


async def test_wrong_dkim_key_is_a_mismatch_showing_what_was_found(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    from mailtrap_smtp import dkim

    _, report = added
    publish(dns_server, report.records, skip=("dkim:mt1",))
    wrong = dkim.dns_txt_value("rsa-sha256", dkim.generate_key("rsa-sha256")[1])
    dns_server.add("mt1._domainkey.example.test", "TXT", wrong)
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert report.checks is not None
    check = next(c for c in report.checks if c.record.key == "dkim:mt1")
    assert check.status == "mismatch" and check.found == (wrong,)
    assert "differs from the expected key" in check.detail
    assert report.domain["state"] == "unverified"


async def test_txt_value_split_across_strings(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    _, report = added
    publish(dns_server, report.records, skip=("dkim:mt1", "dmarc"))
    dkim_value = next(r.value for r in report.records if r.key == "dkim:mt1")
    # Split at odd places (inside "p=", inside the base64), as some DNS panels do.
    cuts = [0, 7, 20, 200, 333, len(dkim_value)]
    dns_server.add("mt1._domainkey.example.test", "TXT",
                   [dkim_value[a:b] for a, b in itertools.pairwise(cuts)])
    dns_server.add("_dmarc.example.test", "TXT", ["v=DMARC1;", " p=none"])
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert set(statuses(report).values()) == {"pass"} and report.domain["state"] == "verified"


async def test_cname_chains_and_case_differences(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    _, report = added
    by_key = {r.key: r for r in report.records}
    # Ownership: the customer points at their own alias, which points at us (two hops), in upper case.
    dns_server.add(by_key["ownership"].name.upper(), "CNAME", "Bounce.Example.Test.")
    dns_server.add("bounce.example.test", "CNAME", "RP.MX.SERVICE.TEST.")
    # DKIM: the key lives elsewhere and the selector is a CNAME to it.
    dns_server.add("MT1._DomainKey.Example.Test", "CNAME", "keys.dns-host.test")
    dns_server.add("keys.dns-host.test", "TXT", by_key["dkim:mt1"].value)
    dns_server.add("_DMARC.example.TEST", "TXT", "v=DMARC1; p=quarantine")
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert statuses(report) == {"ownership": "pass", "dkim:mt1": "pass", "dkim:mt2": "missing", "spf": "missing",
                                "dmarc": "pass", "link": "missing"}
    assert report.domain["state"] == "verified"


async def test_servfail_is_error_and_state_unchanged(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    account, report = added
    publish(dns_server, report.records)
    dns_server.servfail("mt1._domainkey.example.test")
    # Unverified stays unverified (not blamed as a failure, not verified either) ...
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    assert statuses(report)["dkim:mt1"] == "error" and report.domain["state"] == "unverified"
    assert report.checks is not None
    assert "SERVFAIL" in next(c.detail for c in report.checks if c.status == "error")
    dns_server.heal("mt1._domainkey.example.test")
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    assert report.domain["state"] == "verified"
    # ... and a verified domain stays verified, with no failing event, for as long as DNS is broken.
    dns_server.servfail("example.test")
    dns_server.servfail("_dmarc.example.test")
    for hours in (1, 100):
        report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test",
                                               now=T0 + hours * HOUR)
        assert "error" in statuses(report).values()
        assert report.domain["state"] == "verified" and report.domain["failing_since"] is None
    assert await may_send(pool, account, "example.test")
    assert await event_types(pool, report.domain) == [Event.DOMAIN_VERIFIED]


async def test_timeout_is_error_and_state_unchanged(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    account, report = added
    publish(dns_server, report.records)
    row = (await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)).domain
    assert row["state"] == "verified"
    dns_server.drop("_dmarc.example.test")  # the server never answers: the client times out
    quick = dnsresolve.make_resolver(cfg.dns.nameservers, 0.3)
    report = await domainops.verify_domain(pool, cfg, quick, "example.test", now=T0 + 80 * HOUR)
    assert report.checks is not None
    check = next(c for c in report.checks if c.record.key == "dmarc")
    assert check.status == "error" and "timeout" in check.detail
    assert report.domain["state"] == "verified" and await may_send(pool, account, "example.test")


async def test_a_definite_failure_is_not_hidden_by_a_dns_error_elsewhere(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    _, report = added
    publish(dns_server, report.records)
    await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    dns_server.remove("mt1._domainkey.example.test")  # the customer's doing: NXDOMAIN, authoritative
    dns_server.servfail("_dmarc.example.test")  # a network problem
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + HOUR)
    assert statuses(report)["dkim:mt1"] == "missing" and statuses(report)["dmarc"] == "error"
    assert report.domain["state"] == "failing" and report.domain["failing_since"] == T0 + HOUR


async def test_subdomain_of_a_verified_domain_is_not_verified(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    account, report = added
    publish(dns_server, report.records)
    await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert await may_send(pool, account, "example.test")
    assert not await may_send(pool, account, "mail.example.test")  # never added
    sub = await domainops.add_domain(pool, cfg, KEK, "acme", "mail.example.test")
    assert sub.domain["state"] == "unverified"
    assert not await may_send(pool, account, "mail.example.test")
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "mail.example.test")
    # The parent's records say nothing about the subdomain's.
    assert statuses(report) == dict.fromkeys(ALL_KEYS, "missing")
    assert not await may_send(pool, account, "mail.example.test")


async def test_another_accounts_verified_domain_is_not_allowed(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    _, report = added
    other = await make_account(pool, "other")
    publish(dns_server, report.records)
    await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert not await may_send(pool, other, "example.test")


# ---------------------------------------------------------------- re-checks and the grace period

async def test_grace_period_then_suspension_with_an_injected_clock(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    account, report = added
    publish(dns_server, report.records)
    now = T0
    rechecker = domainops.DomainRechecker(cfg, pool, resolver_for(cfg), clock=lambda: now)
    assert await rechecker.run_once() == 1
    assert (await domainops._get(pool, "example.test"))["state"] == "verified"
    assert await rechecker.run_once() == 0  # checked less than an hour ago: not due

    dns_server.remove("mt1._domainkey.example.test")
    now = T0 + HOUR
    assert await rechecker.run_once() == 1
    row = await domainops._get(pool, "example.test")
    assert (row["state"], row["failing_since"]) == ("failing", T0 + HOUR)
    assert await may_send(pool, account, "example.test")  # still sending inside the grace period
    assert await event_types(pool, row) == [Event.DOMAIN_VERIFIED, Event.DOMAIN_FAILING]
    failing_event = (await events_store.for_domain(pool, row["id"]))[0]
    assert "dkim:mt1" in failing_event["details"]

    now = T0 + HOUR + dt.timedelta(hours=72) - dt.timedelta(seconds=1)
    await rechecker.run_once()
    assert (await domainops._get(pool, "example.test"))["state"] == "failing"
    assert await may_send(pool, account, "example.test")

    now = T0 + HOUR + dt.timedelta(hours=72)
    await rechecker.run_once()
    row = await domainops._get(pool, "example.test")
    assert row["state"] == "suspended"
    assert not await may_send(pool, account, "example.test")
    assert await event_types(pool, row) == [Event.DOMAIN_VERIFIED, Event.DOMAIN_FAILING, Event.DOMAIN_SUSPENDED]

    # Publishing the record again restores sending at the next check.
    publish(dns_server, report.records, skip=("ownership", "spf", "dmarc"))
    now += HOUR
    await rechecker.run_once()
    row = await domainops._get(pool, "example.test")
    assert (row["state"], row["failing_since"]) == ("verified", None)
    assert await may_send(pool, account, "example.test")


async def test_nodes_rechecking_at_once_share_the_work_and_record_one_event(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    import asyncio

    _, report = added
    publish(dns_server, report.records)
    await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    dns_server.remove("_dmarc.example.test")
    # Checks racing each other (all read "verified" before asking DNS) record the transition once.
    await asyncio.gather(*(domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + HOUR)
                           for _ in range(4)))
    row = await domainops._get(pool, "example.test")
    assert await event_types(pool, row) == [Event.DOMAIN_VERIFIED, Event.DOMAIN_FAILING]
    # Re-checkers on several nodes split the due domains between them.
    now = T0 + 2 * HOUR
    nodes = [domainops.DomainRechecker(cfg, pool, resolver_for(cfg), clock=lambda: now) for _ in range(3)]
    assert sorted(await asyncio.gather(*(n.run_once() for n in nodes))) == [0, 0, 1]


async def test_failing_is_logged_until_fixed(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport],
        caplog: pytest.LogCaptureFixture) -> None:
    _, report = added
    publish(dns_server, report.records)
    await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    dns_server.remove("_dmarc.example.test")
    with caplog.at_level("WARNING", logger="mailtrap_smtp.domainops"):
        await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + HOUR)
        await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + 2 * HOUR)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "domain example.test: verified -> failing (failing records: dmarc)"
    assert messages[1].startswith("domain example.test: records still failing (dmarc); sending stops at "
                                  + (T0 + HOUR + dt.timedelta(hours=72)).isoformat())


async def test_records_coming_back_within_grace_clear_the_failure(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    _, report = added
    publish(dns_server, report.records)
    await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    dns_server.remove("_dmarc.example.test")
    row = (await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + HOUR)).domain
    assert row["state"] == "failing"
    publish(dns_server, report.records, skip=("ownership", "dkim:mt1", "spf"))
    row = (await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + 2 * HOUR)).domain
    assert (row["state"], row["failing_since"]) == ("verified", None)
    # A failure later starts a fresh grace period.
    dns_server.remove("_dmarc.example.test")
    row = (await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test",
                                         now=T0 + 80 * HOUR)).domain
    assert (row["state"], row["failing_since"]) == ("failing", T0 + 80 * HOUR)


async def test_failing_is_counted_in_the_metric(
        pool: Any, cfg: Config, dns_server: TestDNSServer, added: tuple[Any, domainops.DomainReport]) -> None:
    from mailtrap_smtp import metrics

    _, report = added
    publish(dns_server, report.records)
    now = T0
    rechecker = domainops.DomainRechecker(cfg, pool, resolver_for(cfg), clock=lambda: now)
    await rechecker.run_once()
    assert metrics.DOMAINS_FAILING._value.get() == 0
    dns_server.remove("_dmarc.example.test")
    now += HOUR
    await rechecker.run_once()
    assert metrics.DOMAINS_FAILING._value.get() == 1


async def test_rechecker_start_stop(pool: Any, cfg: Config, dns_server: TestDNSServer,
                                    added: tuple[Any, domainops.DomainReport]) -> None:
    import asyncio

    _, report = added
    publish(dns_server, report.records)
    rechecker = domainops.DomainRechecker(cfg, pool, resolver_for(cfg))
    await rechecker.start()
    for _ in range(100):
        if (await domainops._get(pool, "example.test"))["state"] == "verified":
            break
        await asyncio.sleep(0.02)
    await rechecker.stop(1.0)
    assert (await domainops._get(pool, "example.test"))["state"] == "verified"


@pytest.mark.parametrize(("grace", "round_finished"), [(30.0, True), (0.0, False)])
async def test_rechecker_stop_lets_a_round_under_way_finish_within_grace(
        pool: Any, make_config: Callable[..., Config], dns_server: TestDNSServer, grace: float,
        round_finished: bool) -> None:
    import asyncio

    cfg = domain_config(make_config, dns_server, timeout=0.5)
    await make_account(pool)
    report = await domainops.add_domain(pool, cfg, KEK, "acme", "example.test")
    publish(dns_server, report.records)
    dns_server.drop("_dmarc.example.test")  # never answered: the round waits for the resolver's timeout
    rechecker = domainops.DomainRechecker(cfg, pool, resolver_for(cfg))
    await rechecker.start()
    for _ in range(500):  # until the round is under way (bounded: 10 s)
        if any(name == "_dmarc.example.test." for name, _, _ in dns_server.queries):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the re-check round never asked for the DMARC record")
    await rechecker.stop(grace)
    row = await domainops._get(pool, "example.test")
    # The round's result is written once all of the domain's checks are in.
    assert (row["last_check"] is not None) is round_finished


async def test_skipped_dns_domain_is_not_rechecked_or_suspended(
        pool: Any, cfg: Config, dns_server: TestDNSServer) -> None:
    account = await make_account(pool)
    report = await domainops.add_domain(pool, cfg, KEK, "acme", "dev.test", skip_dns=True)
    assert report.domain["state"] == "verified" and report.domain["dns_skipped"]
    assert await may_send(pool, account, "dev.test")
    now = T0
    rechecker = domainops.DomainRechecker(cfg, pool, resolver_for(cfg), clock=lambda: now)
    assert await rechecker.run_once() == 0
    # An explicit verify with nothing published reports the records but does not take sending away.
    for hours in (0, 100):
        row = (await domainops.verify_domain(pool, cfg, resolver_for(cfg), "dev.test", now=T0 + hours * HOUR)).domain
        assert row["state"] == "verified" and row["dns_skipped"]
    assert await may_send(pool, account, "dev.test")
    # Once DNS does verify, the domain becomes an ordinary DNS-managed one.
    publish(dns_server, report.records)
    row = (await domainops.verify_domain(pool, cfg, resolver_for(cfg), "dev.test")).domain
    assert row["state"] == "verified" and not row["dns_skipped"]


# ---------------------------------------------------------------- approval

async def test_approval_required(
        pool: Any, make_config: Callable[..., Config], dns_server: TestDNSServer) -> None:
    cfg = domain_config(make_config, dns_server, require_approval=True)
    account = await make_account(pool)
    report = await domainops.add_domain(pool, cfg, KEK, "acme", "example.test")
    publish(dns_server, report.records)
    row = (await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")).domain
    assert row["state"] == "verified"
    assert not await may_send(pool, account, "example.test", require_approval=True)
    assert await may_send(pool, account, "example.test", require_approval=False)
    row = await domainops.approve_domain(pool, "Example.Test")
    assert row["approved_at"] is not None
    assert await may_send(pool, account, "example.test", require_approval=True)
    again = await domainops.approve_domain(pool, "example.test")  # idempotent, one event
    assert again["approved_at"] == row["approved_at"]
    assert (await event_types(pool, row)).count(Event.DOMAIN_APPROVED) == 1
    # Approval does not override DNS: a suspended domain may not send.
    with pytest.raises(domainops.DomainOpError, match="no domain"):
        await domainops.approve_domain(pool, "nope.test")


# ---------------------------------------------------------------- the pure state machine

def _row(state: str, verified_at: dt.datetime | None = None,
         failing_since: dt.datetime | None = None) -> dict[str, Any]:
    return {"state": state, "verified_at": verified_at, "failing_since": failing_since}


def _checks(*statuses: str) -> list[Any]:
    from mailtrap_smtp.domains import RecordCheck

    return [RecordCheck(ExpectedRecord(f"k{i}", "TXT", "x.test", "v"), s, (), "")  # type: ignore[arg-type]
            for i, s in enumerate(statuses)]


GRACE = dt.timedelta(hours=72)


@pytest.mark.parametrize(("row", "checks", "expected"), [
    (_row("unverified"), ("pass", "pass"), ("verified", Event.DOMAIN_VERIFIED)),
    (_row("unverified"), ("pass", "missing"), ("unverified", None)),
    (_row("unverified"), ("pass", "error"), ("unverified", None)),
    (_row("verified", T0), ("pass", "mismatch"), ("failing", Event.DOMAIN_FAILING)),
    (_row("verified", T0), ("error", "pass"), ("verified", None)),
    (_row("verified", T0), ("error", "missing"), ("failing", Event.DOMAIN_FAILING)),
    (_row("failing", T0, T0), ("missing",), ("failing", None)),
    (_row("failing", T0, T0 - GRACE), ("missing",), ("suspended", Event.DOMAIN_SUSPENDED)),
    (_row("failing", T0, T0 - GRACE), ("error",), ("failing", None)),
    (_row("failing", T0, T0), ("pass",), ("verified", Event.DOMAIN_VERIFIED)),
    (_row("suspended", T0, T0 - GRACE), ("missing",), ("suspended", None)),
    (_row("suspended", T0, T0 - GRACE), ("pass",), ("verified", Event.DOMAIN_VERIFIED)),
])
def test_next_state(row: dict[str, Any], checks: tuple[str, ...], expected: tuple[str, Event | None]) -> None:
    t = domainops.next_state(row, _checks(*checks), T0, GRACE)
    assert (t.state, t.event) == expected
    if t.state == "failing" and row["state"] == "verified":
        assert t.failing_since == T0
    if t.state == "verified":
        assert t.failing_since is None


def test_informational_records_do_not_count() -> None:
    from mailtrap_smtp.domains import RecordCheck

    spf = RecordCheck(ExpectedRecord("spf", "TXT", "x.test", "v", required=False), "missing", (), "")
    t = domainops.next_state(_row("unverified"), [*_checks("pass"), spf], T0, GRACE)
    assert t.state == "verified"


def _last_check(row: Any) -> list[dict[str, Any]]:
    import json

    return list(json.loads(row["last_check"]))


async def test_failing_domain_past_grace_stops_sending_without_a_recheck(pool: Any) -> None:
    """With no delivery node re-checking, the grace period still ends, by the database's clock."""
    from mailtrap_smtp.store import domains as domains_store

    acct = await accounts_store.create(pool, "graceless", monthly_limit=10, max_message_size=1000)
    row = await domains_store.create(pool, acct["id"], "late.example", verification_token="mtx")
    grace = 72 * 3600
    await pool.execute("UPDATE sending_domains SET state = 'failing', failing_since = now() - interval '71 hours'"
                       " WHERE id = $1", row["id"])
    assert await domains_store.sending_domain(pool, acct["id"], "late.example", require_approval=False,
                                              grace_seconds=grace) is not None
    await pool.execute("UPDATE sending_domains SET failing_since = now() - interval '73 hours' WHERE id = $1",
                       row["id"])
    assert await domains_store.sending_domain(pool, acct["id"], "late.example", require_approval=False,
                                              grace_seconds=grace) is None
