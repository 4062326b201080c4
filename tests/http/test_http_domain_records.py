"""Mailtrap's five DNS records and their per-record status (MAILTRAP_COMPAT.md §4.1, §9 items 19-20),
parsed by the official SDK's `sending_domains_api`, with the records published step by step in the
loopback DNS server and re-checked on demand: `verification`, `dkim1` gate verification; `dkim2` (the
next key), `spf` (cname mode) and `link_verification` (click tracking, not built) are shown and
checked, never required."""

from __future__ import annotations

import asyncio
from typing import Any

import mailtrap as mt
import mailtrap.client
import pytest

from mailtrap_smtp import domainops
from tests.dnsserver import TestDNSServer
from tests.http_util import ApiEnv

KEYS = ["verification", "dkim1", "dkim2", "spf", "dmarc", "link_verification"]


async def _env(api_factory: Any, dns_server: TestDNSServer, **domains: Any) -> ApiEnv:
    env: ApiEnv = await api_factory(dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0},
                                    domains=domains)
    env.account.token = await env.new_token(level="admin")
    return env


def _sdk(env: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", env.ca_path)
    monkeypatch.setattr(mailtrap.client, "GENERAL_HOST", f"127.0.0.1:{env.port}")
    client = mt.MailtrapClient(token=env.account.token, account_id=str(env.account.id))
    return client.sending_domains_api.sending_domains


async def _check(env: ApiEnv, sdk: Any, domain_id: int) -> tuple[str, dict[str, str]]:
    """Re-check now (the "Re-check" button), then read the domain back through the SDK."""
    async with env.client() as c:
        r = await c.post(f"/api/domains/{domain_id}/check", headers=env.auth())
    assert r.status_code == 200, r.text
    domain = await asyncio.to_thread(sdk.get_by_id, domain_id)
    return domain.compliance_status, {rec.key: rec.status for rec in domain.dns_records}


async def test_five_records_and_their_status_transitions(
        api_factory: Any, dns_server: TestDNSServer, monkeypatch: pytest.MonkeyPatch) -> None:  # §9 item 20
    env = await _env(api_factory, dns_server)
    sdk = _sdk(env, monkeypatch)
    created = await asyncio.to_thread(sdk.create, mt.CreateSendingDomainParams(domain_name="five.test"))
    assert [r.key for r in created.dns_records] == KEYS
    assert {r.key: r.status for r in created.dns_records} == dict.fromkeys(KEYS, "unchecked")
    rec = {r.key: r for r in created.dns_records}
    token = (await domainops.get_domain(env.pool, "five.test"))["verification_token"]
    assert [(rec[k].type, rec[k].name, rec[k].domain) for k in KEYS] == [
        ("CNAME", token, f"{token}.five.test"),
        ("TXT", "mt1._domainkey", "mt1._domainkey.five.test"),
        ("TXT", "mt2._domainkey", "mt2._domainkey.five.test"),
        ("TXT", "", "five.test"),
        ("TXT", "_dmarc", "_dmarc.five.test"),
        ("CNAME", "mt-link", "mt-link.five.test"),
    ]
    assert rec["verification"].value == "rp.mx.service.test" and rec["link_verification"].value == "t.mx.service.test"
    assert rec["dkim1"].value.startswith("v=DKIM1; k=rsa; p=") and rec["dkim2"].value.startswith("v=DKIM1; k=rsa; p=")
    assert rec["dkim1"].value != rec["dkim2"].value  # two real keys: the signing key and the next one

    # Nothing published: every record missing.
    assert await _check(env, sdk, created.id) == ("unverified_dns", dict.fromkeys(KEYS, "missing"))
    # The ownership record and the signing key: still no DMARC, so not yet compliant.
    for k in ("verification", "dkim1"):
        dns_server.add(rec[k].domain, rec[k].type, rec[k].value)
    status, records = await _check(env, sdk, created.id)
    assert (status, records) == ("unverified_dns", {**dict.fromkeys(KEYS, "missing"), "verification": "pass",
                                                    "dkim1": "pass"})
    # DMARC: compliant, although dkim2, spf and link_verification are still missing (they never gate).
    dns_server.add(rec["dmarc"].domain, "TXT", rec["dmarc"].value)
    status, records = await _check(env, sdk, created.id)
    assert (status, records) == ("compliant", {**dict.fromkeys(KEYS, "pass"), "dkim2": "missing", "spf": "missing",
                                               "link_verification": "missing"})
    # dkim2 with the wrong key (dkim1's pasted twice): fail; the right one: pass.
    dns_server.add(rec["dkim2"].domain, "TXT", rec["dkim1"].value)
    assert (await _check(env, sdk, created.id))[1]["dkim2"] == "fail"
    dns_server.remove(rec["dkim2"].domain, "TXT")
    dns_server.add(rec["dkim2"].domain, "TXT", rec["dkim2"].value)
    dns_server.add(rec["link_verification"].domain, "CNAME", "somewhere-else.test")
    status, records = await _check(env, sdk, created.id)
    assert (records["dkim2"], records["link_verification"], status) == ("pass", "fail", "compliant")
    dns_server.remove(rec["link_verification"].domain)
    dns_server.add(rec["link_verification"].domain, "CNAME", rec["link_verification"].value)
    dns_server.add(rec["spf"].domain, "TXT", rec["spf"].value)
    assert await _check(env, sdk, created.id) == ("compliant", dict.fromkeys(KEYS, "pass"))
    # The next key's record removed again: shown missing, the domain stays compliant.
    dns_server.remove(rec["dkim2"].domain)
    status, records = await _check(env, sdk, created.id)
    assert (status, records["dkim2"]) == ("compliant", "missing")
    # The signing key's record removed: the domain is failing (Mailtrap's "compliant" while the grace
    # period runs), and dkim1 is missing.
    dns_server.remove(rec["dkim1"].domain)
    status, records = await _check(env, sdk, created.id)
    assert (records["dkim1"], status) == ("missing", "compliant")
    assert (await domainops.get_domain(env.pool, "five.test"))["state"] == "failing"


async def test_key_hosting_zone_records_are_mailtraps_cnames(
        api_factory: Any, dns_server: TestDNSServer, monkeypatch: pytest.MonkeyPatch) -> None:  # §9 item 20
    """With domains.dkim_cname_zone, dkim1/dkim2 are CNAMEs like Mailtrap's rwmt1/rwmt2, and each target
    serves (once the operator publishes its records) exactly the key the check expects."""
    env = await _env(api_factory, dns_server, dkim_cname_zone="dkim.mx.service.test")
    sdk = _sdk(env, monkeypatch)
    created = await asyncio.to_thread(sdk.create, mt.CreateSendingDomainParams(domain_name="zone.test"))
    rec = {r.key: r for r in created.dns_records}
    assert [r.key for r in created.dns_records] == KEYS
    assert [(rec[k].type, rec[k].name, rec[k].value) for k in ("dkim1", "dkim2")] == [
        ("CNAME", "mt1._domainkey", "mt1.zone.test.dkim.mx.service.test"),
        ("CNAME", "mt2._domainkey", "mt2.zone.test.dkim.mx.service.test")]
    for r in created.dns_records:
        dns_server.add(r.domain, r.type, r.value)
    status, records = await _check(env, sdk, created.id)
    # The customer's CNAMEs are right, the operator's keys are not up yet: not the customer's fault.
    assert (status, records["dkim1"], records["dkim2"]) == ("unverified_dns", "network_error", "network_error")
    row = await domainops.get_domain(env.pool, "zone.test")
    operator = await domainops.operator_records(env.pool, env.cfg, row)
    assert [o["name"] for o in operator] == [rec["dkim1"].value, rec["dkim2"].value]
    for o in operator:
        dns_server.add(o["name"], o["type"], o["value"])
    assert await _check(env, sdk, created.id) == ("compliant", dict.fromkeys(KEYS, "pass"))


async def test_link_record_can_be_turned_off(api_factory: Any, dns_server: TestDNSServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    env = await _env(api_factory, dns_server, link_record=False)
    created = await asyncio.to_thread(_sdk(env, monkeypatch).create,
                                      mt.CreateSendingDomainParams(domain_name="nolink.test"))
    assert [r.key for r in created.dns_records] == KEYS[:-1]


async def test_the_dashboard_page_shows_the_same_records(
        api_factory: Any, dns_server: TestDNSServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The domain page lists the records the API answers, in order, each with why it is optional."""
    import html
    import re

    from tests.dashboard_util import login

    env = await _env(api_factory, dns_server)
    created = await asyncio.to_thread(_sdk(env, monkeypatch).create,
                                      mt.CreateSendingDomainParams(domain_name="page.test"))
    client = await login(env, env.account.token)
    try:
        page = (await client.get(f"/dashboard/domains/{created.id}")).text
    finally:
        await client.aclose()
    cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r'<td data-label="Purpose">(.*?)</td>', page, re.S)]
    names = [html.unescape(n) for n in re.findall(r'<td data-label="Name"><code>(.*?)</code>', page)]
    assert [c.split()[0] for c in cells] == KEYS
    assert names == [r.domain for r in created.dns_records]
    optional = {c.split()[0]: c.split(None, 1)[1] for c in cells if " " in c}
    assert optional == {
        "dkim2": "next key: published ahead, signs after `dkim rotate`",
        "spf": "covered by the ownership record's own SPF",
        "link_verification": "reserved for click tracking (not built yet): optional, changes nothing today",
    }
