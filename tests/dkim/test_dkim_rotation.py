"""DKIM keys as DNS serves them: signatures verify against the published record, and rotation is safe.

Signing goes through `signing.KeyStore` (what submission uses); verification is dkimpy's own verifier,
whose `dnsfunc` asks the real loopback DNS server through dnspython, so a signature only verifies if the
record the customer was told to publish really carries the key that signed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import dkim as dkimpy
import pytest

from mailtrap_smtp import domainops
from mailtrap_smtp.config import Config
from mailtrap_smtp.events import Event
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.store import domains as domains_store
from tests.dnsserver import TestDNSServer
from tests.domain_util import (
    KEK,
    T0,
    dnsfunc_for,
    domain_config,
    event_types,
    make_account,
    may_send,
    publish,
    resolver_for,
)

HOUR = dt.timedelta(hours=1)


def message(n: int = 1) -> bytes:
    return (
        b"From: Sender <sender@example.test>\r\n"
        b"To: someone@elsewhere.test\r\n"
        b"Subject: rotation " + str(n).encode() + b"\r\n"
        b"Date: Thu, 26 Nov 2026 08:00:00 +0000\r\n"
        b"Message-ID: <" + str(n).encode() + b"@example.test>\r\n"
        b"\r\n"
        b"Hello.\r\n"
    )


def selector_of(signed: bytes) -> str:
    """The s= tag of the message's one DKIM-Signature."""
    head = signed.split(b"\r\n\r\n", 1)[0]
    assert head.count(b"DKIM-Signature:") == 1
    m = re.search(rb";\s*s=([A-Za-z0-9-]+)\s*;", head)
    assert m is not None
    return m.group(1).decode()


@pytest.fixture
def cfg(make_config: Callable[..., Config], dns_server: TestDNSServer) -> Config:
    return domain_config(make_config, dns_server)


@pytest.fixture
async def verified(pool: Any, cfg: Config, dns_server: TestDNSServer) -> domainops.DomainReport:
    """example.test added, its printed records published, verified."""
    await make_account(pool)
    report = await domainops.add_domain(pool, cfg, KEK, "acme", "example.test")
    publish(dns_server, report.records)
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    assert report.domain["state"] == "verified"
    return report


async def test_signature_verifies_against_the_published_record(
        pool: Any, dns_server: TestDNSServer, verified: domainops.DomainReport) -> None:
    signed = await KeyStore(pool, KEK).sign(message(), "example.test")
    assert selector_of(signed) == "mt1"
    assert dkimpy.verify(signed, dnsfunc=dnsfunc_for(dns_server))
    # The same message with a changed body, or with the record gone, does not verify.
    assert not dkimpy.verify(signed.replace(b"Hello.", b"Hullo."), dnsfunc=dnsfunc_for(dns_server))
    dns_server.remove("mt1._domainkey.example.test")
    assert not dkimpy.verify(signed, dnsfunc=dnsfunc_for(dns_server))


async def test_a_domain_without_keys_is_left_unsigned(pool: Any) -> None:
    assert await KeyStore(pool, KEK).sign(message(), "unknown.test") == message()


async def test_a_new_domain_publishes_its_next_key_and_the_first_rotation_needs_no_dns_change(
        pool: Any, cfg: Config, dns_server: TestDNSServer, verified: domainops.DomainReport) -> None:
    """dkim1/dkim2 are the two selectors: mt1 signs, mt2 carries the next key, published with the rest."""
    store = KeyStore(pool, KEK, cache_seconds=0)
    dnsfunc = dnsfunc_for(dns_server)
    records = {r.key: r for r in verified.records}
    assert (records["dkim:mt1"].mailtrap_key, records["dkim:mt1"].required) == ("dkim1", True)
    assert (records["dkim:mt2"].mailtrap_key, records["dkim:mt2"].required) == ("dkim2", False)
    assert records["dkim:mt2"].note == domainops.KEY_NOTES["next"]
    assert records["dkim:mt2"].value != records["dkim:mt1"].value
    assert verified.checks is not None and {c.record.key: c.status for c in verified.checks}["dkim:mt2"] == "pass"
    before = await store.sign(message(1), "example.test")
    assert selector_of(before) == "mt1" and dkimpy.verify(before, dnsfunc=dnsfunc)
    # No check ever makes the next key sign: only a rotation does.
    await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + HOUR)
    assert selector_of(await store.sign(message(2), "example.test")) == "mt1"

    step, keys = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "activated" and [k["selector"] for k in keys] == ["mt2"]
    after = await store.sign(message(3), "example.test")
    assert selector_of(after) == "mt2" and dkimpy.verify(after, dnsfunc=dnsfunc)
    assert dkimpy.verify(before, dnsfunc=dnsfunc)  # the previous key is still served
    assert Event.DKIM_ROTATED in await event_types(pool, verified.domain)
    # mt1 now carries the previous key: listed (keep it a few days), no longer required.
    records = {r.key: r for r in await domainops.expected_for(pool, cfg, verified.domain)}
    assert records["dkim:mt2"].required and not records["dkim:mt1"].required
    assert records["dkim:mt1"].note == domainops.KEY_NOTES["retired"]
    dns_server.remove("mt1._domainkey.example.test")
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + 2 * HOUR)
    assert report.domain["state"] == "verified"


async def test_rotation_by_command(pool: Any, cfg: Config, dns_server: TestDNSServer) -> None:
    """The customer left the next key out: the rotation waits for DNS to serve it, then switches."""
    await make_account(pool)
    added = await domainops.add_domain(pool, cfg, KEK, "acme", "example.test")
    publish(dns_server, added.records, skip=("dkim:mt2",))
    verified = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    assert verified.domain["state"] == "verified"  # the next key is not required
    store = KeyStore(pool, KEK, cache_seconds=0)
    dnsfunc = dnsfunc_for(dns_server)
    before = await store.sign(message(1), "example.test")
    assert selector_of(before) == "mt1" and dkimpy.verify(before, dnsfunc=dnsfunc)

    # Step 1: the next key becomes the rotation's key, pending; signing still uses the old one.
    step, keys = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "waiting" and [(k["selector"], k["state"]) for k in keys] == [("mt2", "pending")]
    during = await store.sign(message(2), "example.test")
    assert selector_of(during) == "mt1" and dkimpy.verify(during, dnsfunc=dnsfunc)
    # The pending record is listed, but not required: the domain stays verified and may send.
    records = {r.key: r for r in await domainops.expected_for(pool, cfg, verified.domain)}
    assert records["dkim:mt1"].required and not records["dkim:mt2"].required
    assert records["dkim:mt2"].note == domainops.KEY_NOTES["pending"]
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + HOUR)
    assert report.checks is not None
    assert {c.record.key: c.status for c in report.checks}["dkim:mt2"] == "missing"
    assert report.domain["state"] == "verified"

    # Not published yet: running the command again waits and changes nothing.
    step, keys = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "waiting" and [k["selector"] for k in keys] == ["mt2"]
    assert selector_of(await store.sign(message(3), "example.test")) == "mt1"

    # Step 2: published (split into 255-byte strings by the zone) → activated.
    dns_server.add(records["dkim:mt2"].name, "TXT", records["dkim:mt2"].value)
    step, keys = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "activated" and [k["selector"] for k in keys] == ["mt2"]
    after = await store.sign(message(4), "example.test")
    assert selector_of(after) == "mt2" and dkimpy.verify(after, dnsfunc=dnsfunc)
    # Messages signed before the switch still verify: the old record is still served.
    assert dkimpy.verify(before, dnsfunc=dnsfunc) and dkimpy.verify(during, dnsfunc=dnsfunc)
    assert Event.DKIM_ROTATED in await event_types(pool, verified.domain)

    # From now on mt2 is the required record and mt1 (the previous key) may go.
    records = {r.key: r for r in await domainops.expected_for(pool, cfg, verified.domain)}
    assert list(records) == ["ownership", "dkim:mt1", "dkim:mt2", "spf", "dmarc", "link"]
    assert records["dkim:mt2"].required and not records["dkim:mt1"].required
    dns_server.remove("mt1._domainkey.example.test")
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + 2 * HOUR)
    assert report.domain["state"] == "verified"


async def test_rotation_completed_by_the_periodic_recheck(
        pool: Any, cfg: Config, dns_server: TestDNSServer) -> None:
    await make_account(pool)
    added = await domainops.add_domain(pool, cfg, KEK, "acme", "example.test")
    publish(dns_server, added.records, skip=("dkim:mt2",))
    await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0)
    store = KeyStore(pool, KEK, cache_seconds=0)
    step, _ = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "waiting"
    pending = next(r for r in await domainops.expected_for(pool, cfg, added.domain) if r.key == "dkim:mt2")
    now = T0 + HOUR
    rechecker = domainops.DomainRechecker(cfg, pool, resolver_for(cfg), clock=lambda: now)
    assert await rechecker.run_once() == 1
    assert selector_of(await store.sign(message(), "example.test")) == "mt1"  # not served yet

    dns_server.add(pending.name, "TXT", pending.value)
    now += HOUR
    assert await rechecker.run_once() == 1
    signed = await store.sign(message(), "example.test")
    assert selector_of(signed) == "mt2" and dkimpy.verify(signed, dnsfunc=dnsfunc_for(dns_server))
    row = await domainops._get(pool, "example.test")
    assert row["state"] == "verified"


async def test_a_stale_key_after_rotation_is_a_mismatch_and_is_not_activated(
        pool: Any, cfg: Config, dns_server: TestDNSServer, verified: domainops.DomainReport) -> None:
    """Second rotation back onto mt1: DNS still serves mt1's *old* key, so the new key must wait."""
    store = KeyStore(pool, KEK, cache_seconds=0)
    account = await domains_store.get_by_name(pool, "example.test")
    assert account is not None
    old_mt1 = next(r for r in verified.records if r.key == "dkim:mt1")
    assert (await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test"))[0] == "activated"

    step, keys = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "created" and [k["selector"] for k in keys] == ["mt1"]
    new_mt1 = next(r for r in await domainops.expected_for(pool, cfg, verified.domain) if r.key == "dkim:mt1")
    assert new_mt1.value != old_mt1.value and not new_mt1.required

    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test", now=T0 + HOUR)
    assert report.checks is not None
    check = next(c for c in report.checks if c.record.key == "dkim:mt1")
    assert check.status == "mismatch" and check.found == (old_mt1.value,) and "old key" in check.detail
    assert report.domain["state"] == "verified"  # the signing key (mt2) is published
    assert (await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test"))[0] == "waiting"
    signed = await store.sign(message(), "example.test")
    assert selector_of(signed) == "mt2" and dkimpy.verify(signed, dnsfunc=dnsfunc_for(dns_server))

    # The customer replaces the stale record: the new key activates and verifies.
    dns_server.remove(new_mt1.name, "TXT")
    dns_server.add(new_mt1.name, "TXT", new_mt1.value)
    assert (await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test"))[0] == "activated"
    signed = await store.sign(message(), "example.test")
    assert selector_of(signed) == "mt1" and dkimpy.verify(signed, dnsfunc=dnsfunc_for(dns_server))
    assert await may_send(pool, {"id": account["account_id"]}, "example.test")


async def test_rotation_of_an_unknown_domain_is_refused(pool: Any, cfg: Config) -> None:
    with pytest.raises(domainops.DomainOpError, match="no domain"):
        await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "nope.test")


async def test_key_hosting_zone_rotation_needs_no_customer_change(
        pool: Any, make_config: Callable[..., Config], dns_server: TestDNSServer) -> None:
    """With domains.dkim_cname_zone the customer publishes CNAMEs once (both selectors, Mailtrap's
    dkim1/dkim2); the operator publishes both keys in its zone, each CNAME's target serving the key we
    print, and rotations are completed by the operator alone."""
    cfg = domain_config(make_config, dns_server, dkim_cname_zone="dkim.mx.service.test")
    await make_account(pool)
    report = await domainops.add_domain(pool, cfg, KEK, "acme", "example.test")
    by_key = {r.key: r for r in report.records}
    assert list(by_key) == ["ownership", "dkim:mt1", "dkim:mt2", "spf", "dmarc", "link"]
    assert (by_key["dkim:mt1"].type, by_key["dkim:mt1"].name, by_key["dkim:mt1"].value, by_key["dkim:mt1"].required
            ) == ("CNAME", "mt1._domainkey.example.test", "mt1.example.test.dkim.mx.service.test", True)
    assert (by_key["dkim:mt2"].type, by_key["dkim:mt2"].value, by_key["dkim:mt2"].required
            ) == ("CNAME", "mt2.example.test.dkim.mx.service.test", False)
    publish(dns_server, report.records)  # the customer's part, once

    keys = await domains_store.slot_keys(pool, report.domain["id"])
    operator = [domainops.dkim_publication(cfg, "example.test", k) for k in keys]
    assert [(n, t) for n, t, _ in operator] == [("mt1.example.test.dkim.mx.service.test", "TXT"),
                                               ("mt2.example.test.dkim.mx.service.test", "TXT")]
    assert [(n, t, v) for n, t, v in operator] == [
        (r["name"], r["type"], r["value"]) for r in await domainops.operator_records(pool, cfg, report.domain)]
    # Each CNAME's target is where the operator serves exactly the key the record expects.
    assert [(by_key[f"dkim:{k['selector']}"].value, by_key[f"dkim:{k['selector']}"].target_value) for k in keys] == [
        (n, v) for n, _, v in operator]
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert report.checks is not None
    statuses = {c.record.key: c.status for c in report.checks}
    assert (statuses["dkim:mt1"], statuses["dkim:mt2"]) == ("error", "error")  # operator's keys not yet up
    assert report.domain["state"] == "unverified"
    for name, rtype, value in operator:
        dns_server.add(name, rtype, value)  # the operator's part
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert report.domain["state"] == "verified"
    assert report.checks is not None and {c.record.key: c.status for c in report.checks}["dkim:mt2"] == "pass"

    store = KeyStore(pool, KEK, cache_seconds=0)
    step, activated = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "activated" and [k["selector"] for k in activated] == ["mt2"]
    signed = await store.sign(message(), "example.test")
    assert selector_of(signed) == "mt2" and dkimpy.verify(signed, dnsfunc=dnsfunc_for(dns_server))

    step, created = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "created" and [k["selector"] for k in created] == ["mt1"]
    name, rtype, value = domainops.dkim_publication(cfg, "example.test", created[0])
    assert name == "mt1.example.test.dkim.mx.service.test"
    dns_server.remove(name, rtype)
    dns_server.add(name, rtype, value)
    assert (await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test"))[0] == "activated"
    signed = await store.sign(message(), "example.test")
    assert selector_of(signed) == "mt1" and dkimpy.verify(signed, dnsfunc=dnsfunc_for(dns_server))
    records = [r.key for r in await domainops.expected_for(pool, cfg, report.domain)]
    assert records == ["ownership", "dkim:mt1", "dkim:mt2", "spf", "dmarc", "link"]
    report = await domainops.verify_domain(pool, cfg, resolver_for(cfg), "example.test")
    assert report.domain["state"] == "verified"


async def test_rotation_adds_a_newly_enabled_algorithm_as_pending(
        pool: Any, make_config: Callable[..., Config], dns_server: TestDNSServer,
        verified: domainops.DomainReport) -> None:
    cfg = domain_config(make_config, dns_server)
    cfg.dkim.ed25519 = True
    step, created = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "created"
    assert [(k["selector"], k["algorithm"], k["state"]) for k in created] == [
        ("mte1", "ed25519-sha256", "pending")]
    # Nothing new signs before DNS serves it.
    assert selector_of(await KeyStore(pool, KEK).sign(message(), "example.test")) == "mt1"
    for k in created:
        dns_server.add(*domainops.dkim_publication(cfg, "example.test", k))
    step, activated = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "activated" and [k["selector"] for k in activated] == ["mte1"]
    signed = await KeyStore(pool, KEK, cache_seconds=0).sign(message(), "example.test")
    assert signed.count(b"DKIM-Signature:") == 2
    # RSA's next key (published with the domain) takes the following turn.
    step, activated = await domainops.rotate_dkim(pool, cfg, KEK, resolver_for(cfg), "example.test")
    assert step == "activated" and [k["selector"] for k in activated] == ["mt2"]
