"""The management paths (MAILTRAP_COMPAT.md §4.3, §9 items 18-21): the account and its sending
domains under legacy and current paths, parsed by the official SDK via `mailtrap.client.GENERAL_HOST`,
with the management error shapes; re-check on demand against a real DNS server."""

from __future__ import annotations

import asyncio
from typing import Any

import mailtrap as mt
import mailtrap.client
import pytest

from mailtrap_smtp.store import domains as domains_store
from tests.http_util import DOMAIN, ApiEnv

DNS_FIELDS = {"key", "domain", "type", "value", "status", "name"}


@pytest.fixture
async def admin(api: ApiEnv) -> str:
    """An admin token of the account, every domain (may manage account-wide resources)."""
    return await api.new_token(level="admin")


@pytest.fixture
def sdk(api: ApiEnv, admin: str, monkeypatch: pytest.MonkeyPatch) -> mt.MailtrapClient:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    monkeypatch.setattr(mailtrap.client, "GENERAL_HOST", f"127.0.0.1:{api.port}")
    return mt.MailtrapClient(token=admin, account_id=str(api.account.id))


async def test_sdk_lists_creates_gets_and_deletes_domains(api: ApiEnv, sdk: mt.MailtrapClient) -> None:  # 18-20
    domains_api = sdk.sending_domains_api.sending_domains
    listed = await asyncio.to_thread(domains_api.get_list)
    assert [d.domain_name for d in listed] == [DOMAIN]
    assert listed[0].compliance_status == "compliant" and listed[0].dns_verified is True
    created = await asyncio.to_thread(domains_api.create, mt.CreateSendingDomainParams(domain_name="new.test"))
    assert created.domain_name == "new.test" and created.compliance_status == "unverified_dns"
    assert created.dns_verified is False
    assert created.dns_records and all(r.status == "unchecked" for r in created.dns_records)
    keys = [r.key for r in created.dns_records]
    assert keys[0] == "verification" and "dkim1" in keys and "dmarc" in keys
    fetched = await asyncio.to_thread(domains_api.get_by_id, created.id)
    assert fetched == created
    await asyncio.to_thread(domains_api.delete, created.id)
    assert await domains_store.get_by_name(api.pool, "new.test") is None
    accounts = await asyncio.to_thread(lambda: sdk.general_api.accounts.get_list())
    assert [(a.id, a.name) for a in accounts] == [(api.account.id, api.account.name)]


@pytest.mark.parametrize("prefix", ["/api/domains", "/api/accounts/{account}/sending_domains"])
async def test_domain_object_has_every_field(api: ApiEnv, admin: str, prefix: str) -> None:  # §9 items 19, 21
    path = prefix.format(account=api.account.id)
    body_key = "domain" if prefix == "/api/domains" else "sending_domain"
    async with api.client() as c:
        created = await c.post(path, json={body_key: {"domain_name": "fresh.test"}}, headers=api.auth(admin))
        assert created.status_code == 200, created.text
        listed = await c.get(path, headers=api.auth(admin))
    assert listed.status_code == 200
    data = listed.json()["data"]
    assert sorted(d["domain_name"] for d in data) == [DOMAIN, "fresh.test"]
    fresh = next(d for d in data if d["domain_name"] == "fresh.test")
    assert fresh == created.json()
    required = {"id", "domain_name", "demo", "compliance_status", "dns_verified", "open_tracking_enabled",
                "click_tracking_enabled", "auto_unsubscribe_link_enabled", "custom_domain_tracking_enabled",
                "health_alerts_enabled", "critical_alerts_enabled", "permissions", "dns_records"}
    assert required <= set(fresh)
    assert fresh["permissions"] == {"can_read": True, "can_update": True, "can_destroy": True}
    assert all(set(r) == DNS_FIELDS and r["domain"].endswith("fresh.test") for r in fresh["dns_records"])
    dmarc = next(r for r in fresh["dns_records"] if r["key"] == "dmarc")
    assert (dmarc["type"], dmarc["name"], dmarc["domain"]) == ("TXT", "_dmarc", "_dmarc.fresh.test")


async def test_recheck_on_demand_moves_to_compliant(api_factory: Any, dns_server: Any) -> None:  # §9 item 20
    env: ApiEnv = await api_factory(dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0})
    env.account.token = await env.new_token(level="admin")
    async with env.client() as c:
        created = (await c.post("/api/domains", json={"domain": {"domain_name": "checked.test"}},
                                headers=env.auth())).json()
        missing = (await c.post(f"/api/domains/{created['id']}/check", headers=env.auth())).json()
        assert missing["compliance_status"] == "unverified_dns"
        assert {r["status"] for r in missing["dns_records"]} == {"missing"}
        for r in created["dns_records"]:
            dns_server.add(r["domain"], r["type"], r["value"])
        checked = (await c.post(f"/api/domains/{created['id']}/check", headers=env.auth())).json()
    assert checked["compliance_status"] == "compliant" and checked["dns_verified"] is True
    assert {r["status"] for r in checked["dns_records"]} == {"pass"}
    assert checked["dns_verified_at"] is not None


@pytest.mark.parametrize(("method", "path", "body", "status", "expect"), [
    ("GET", "/api/domains/999999", None, 404, {"error": "Not Found"}),
    ("GET", "/api/domains/abc", None, 404, {"error": "Not Found"}),
    ("DELETE", "/api/domains/999999", None, 404, {"error": "Not Found"}),
    ("GET", "/api/accounts/999999/sending_domains", None, 403, {"errors": "Account access forbidden"}),
    ("POST", "/api/domains", {"domain": {"domain_name": ""}}, 422, {"errors": {"domain_name": ["can't be blank"]}}),
    ("POST", "/api/domains", {}, 422, {"errors": {"domain_name": ["can't be blank"]}}),
    ("POST", "/api/domains", {"domain": {"domain_name": DOMAIN}}, 422,
     {"errors": {"domain_name": ["has already been taken"]}}),
    ("POST", "/api/domains", {"domain": {"domain_name": 5}}, 422, {"errors": {"domain.domain_name": ["is invalid"]}}),
    ("GET", "/api/accounts/1/nowhere", None, 404, {"error": "Not Found"}),
    ("PUT", "/api/domains", None, 405, {"error": "Method Not Allowed"}),
])
async def test_management_errors(api: ApiEnv, admin: str, method: str, path: str, body: Any, status: int,
                                 expect: Any) -> None:
    async with api.client() as c:
        r = await c.request(method, path, json=body, headers=api.auth(admin))
    assert (r.status_code, r.json()) == (status, expect)
    async with api.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sending_domains") == 1


@pytest.mark.parametrize("path", ["/api/accounts", "/api/domains", "/api/accounts/1/sending_domains"])
async def test_management_bad_token(api: ApiEnv, path: str) -> None:  # §9 item 21
    async with api.client() as c:
        r = await c.get(path, headers={"Authorization": "Bearer mts_00000000_" + "a" * 32})
    assert (r.status_code, r.json()) == (401, {"error": "Incorrect API token"})


async def test_sdk_raises_authorization_error_with_a_bad_token(api: ApiEnv, sdk: mt.MailtrapClient) -> None:
    bad = mt.MailtrapClient(token="mts_00000000_" + "a" * 32, account_id=str(api.account.id))
    with pytest.raises(mt.AuthorizationError) as info:
        await asyncio.to_thread(bad.sending_domains_api.sending_domains.get_list)
    assert info.value.errors == ["Incorrect API token"]


@pytest.mark.parametrize(("level", "scoped", "method", "path", "status"), [
    ("send", False, "GET", "/api/domains", 403),
    ("send", False, "POST", "/api/domains", 403),
    ("read", False, "GET", "/api/domains", 200),
    ("read", False, "GET", "/api/domains/{id}", 200),
    ("read", False, "POST", "/api/domains", 403),
    ("read", False, "DELETE", "/api/domains/{id}", 403),
    ("read", True, "GET", "/api/domains/{other}", 404),
    ("admin", True, "POST", "/api/domains", 403),   # account-wide: needs an admin of every domain
    ("admin", True, "DELETE", "/api/domains/{other}", 404),
    ("admin", True, "GET", "/api/domains/{id}", 200),
    ("send", False, "POST", "/api/domains/{id}/check", 403),
    ("admin", False, "POST", "/api/domains", 200),
])
async def test_management_by_token_level_and_scope(api: ApiEnv, level: str, scoped: bool, method: str, path: str,
                                                   status: int) -> None:
    own = await domains_store.get_by_name(api.pool, DOMAIN)
    other = await domains_store.create(api.pool, api.account.id, "other.test", verification_token="t")
    token = await api.new_token(level=level, domain_ids=[own["id"]] if scoped else None)
    body = {"domain": {"domain_name": "made.test"}} if method == "POST" and path == "/api/domains" else None
    async with api.client() as c:
        r = await c.request(method, path.format(id=own["id"], other=other["id"]), json=body,
                            headers=api.auth(token))
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json() == {"errors": "Account access forbidden"}
    if level == "read" and scoped is False and path == "/api/domains" and method == "GET":
        assert sorted(d["domain_name"] for d in r.json()["data"]) == [DOMAIN, "other.test"]
