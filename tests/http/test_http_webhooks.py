"""Webhooks over the management API (MAILTRAP_COMPAT.md §5.3, §9 items 18, 21, 24): legacy and current
paths, the official SDK's `webhooks_api`, the secret only in the create answer, management errors."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import mailtrap as mt
import mailtrap.client
import pytest
from mailtrap.models.webhooks import CreateWebhookParams, UpdateWebhookParams

from tests.http_util import ApiEnv

URL = "https://93.184.215.14/hooks/mailtrap"
ITEM_24 = {"webhook": {"url": URL, "webhook_type": "email_sending", "payload_format": "json",
                       "sending_stream": "transactional", "event_types": ["delivery", "bounce"]}}


@pytest.fixture
async def admin(api: ApiEnv) -> str:
    return await api.new_token(level="admin")


def _paths(api: ApiEnv, prefix: str) -> str:
    return prefix.format(account=api.account.id)


PREFIXES = ["/api/webhooks", "/api/accounts/{account}/webhooks"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_create_list_get_update_delete(api: ApiEnv, admin: str, prefix: str) -> None:  # §9 items 21, 24
    path = _paths(api, prefix)
    async with api.client() as c:
        r = await c.post(path, json=ITEM_24, headers=api.auth(admin))
        assert r.status_code == 200, r.text
        created = r.json()["data"]
        assert re.fullmatch(r"[0-9a-f]{32}", created["signing_secret"])
        assert {k: created[k] for k in ("url", "active", "webhook_type", "payload_format", "sending_stream",
                                        "event_types", "domain_id")} == \
               {"url": URL, "active": True, "webhook_type": "email_sending", "payload_format": "json",
                "sending_stream": "transactional", "event_types": ["delivery", "bounce"], "domain_id": None}
        listed = (await c.get(path, headers=api.auth(admin))).json()
        assert listed == {"data": [{k: v for k, v in created.items() if k != "signing_secret"}]}
        got = await c.get(f"{path}/{created['id']}", headers=api.auth(admin))
        assert got.json() == {"data": listed["data"][0]}
        patched = await c.patch(f"{path}/{created['id']}", json={"webhook": {"active": False}}, headers=api.auth(admin))
        assert patched.status_code == 200 and patched.json()["data"]["active"] is False
        deleted = await c.delete(f"{path}/{created['id']}", headers=api.auth(admin))
        assert deleted.status_code == 200 and deleted.json()["data"]["id"] == created["id"]
        gone = await c.get(f"{path}/{created['id']}", headers=api.auth(admin))
        assert (gone.status_code, gone.json()) == (404, {"error": "Not Found"})


async def test_the_sdk_manages_webhooks(api: ApiEnv, admin: str, monkeypatch: pytest.MonkeyPatch) -> None:  # 18
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    monkeypatch.setattr(mailtrap.client, "GENERAL_HOST", f"127.0.0.1:{api.port}")
    hooks = mt.MailtrapClient(token=admin, account_id=str(api.account.id)).webhooks_api.webhooks
    created = await asyncio.to_thread(hooks.create, CreateWebhookParams(
        url=URL, webhook_type="email_sending", event_types=["delivery", "soft_bounce"]))
    assert len(created.signing_secret) == 32 and created.event_types == ["delivery", "soft_bounce"]
    listed = await asyncio.to_thread(hooks.get_list)
    assert [w.id for w in listed] == [created.id]
    updated = await asyncio.to_thread(hooks.update, created.id, UpdateWebhookParams(payload_format="jsonlines"))
    assert updated.payload_format == "jsonlines"
    assert (await asyncio.to_thread(hooks.get_by_id, created.id)).payload_format == "jsonlines"
    await asyncio.to_thread(hooks.delete, created.id)
    assert await asyncio.to_thread(hooks.get_list) == []


@pytest.mark.parametrize(("body", "errors"), [
    ({"webhook": {"webhook_type": "email_sending"}}, {"url": ["can't be blank"]}),
    ({}, {"url": ["can't be blank"]}),
    ({"webhook": {"url": URL}}, {"webhook_type": ["can't be blank"]}),
    ({"webhook": {"url": "http://127.0.0.1/x", "webhook_type": "email_sending"}},
     {"url": ["the host is not a public address"]}),
    ({"webhook": {"url": "https://93.184.215.14:8443/x", "webhook_type": "email_sending"}},
     {"url": ["only ports 80 and 443 may be used"]}),
    ({"webhook": {"url": URL, "webhook_type": "audit_log"}}, {"webhook_type": ["only email_sending is supported"]}),
    ({"webhook": {"url": URL, "webhook_type": "email_sending", "payload_format": "xml"}},
     {"payload_format": ["must be json or jsonlines"]}),
    ({"webhook": {"url": URL, "webhook_type": "email_sending", "event_types": ["soft bounce"]}},
     {"event_types": ["unknown 'soft bounce'; one of delivery, open, click, unsubscribe, spam_complaint, "
                      "soft_bounce, bounce, suspension, reject"]}),
])
async def test_invalid_creates_are_422_and_store_nothing(api: ApiEnv, admin: str, body: dict[str, Any],
                                                         errors: dict[str, list[str]]) -> None:
    async with api.client() as c:
        r = await c.post("/api/webhooks", json=body, headers=api.auth(admin))
    assert (r.status_code, r.json()) == (422, {"errors": errors})
    assert await api.pool.fetchval("SELECT count(*) FROM webhooks") == 0


@pytest.mark.parametrize(("method", "path", "status", "body"), [
    ("GET", "/api/webhooks", 401, {"error": "Incorrect API token"}),
    ("POST", "/api/webhooks", 401, {"error": "Incorrect API token"}),
])
async def test_a_bad_token_is_401(api: ApiEnv, method: str, path: str, status: int, body: Any) -> None:
    async with api.client() as c:
        r = await c.request(method, path, json=ITEM_24, headers={"Authorization": "Bearer nope"})
    assert (r.status_code, r.json()) == (status, body)
    assert await api.pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_a_send_token_may_not_create_and_another_account_is_forbidden(api: ApiEnv, admin: str) -> None:
    async with api.client() as c:
        r = await c.post("/api/webhooks", json=ITEM_24, headers=api.auth())
        assert (r.status_code, r.json()) == (403, {"errors": "Account access forbidden"})
        r = await c.get(f"/api/accounts/{api.account.id + 1}/webhooks", headers=api.auth(admin))
        assert (r.status_code, r.json()) == (403, {"errors": "Account access forbidden"})
    assert await api.pool.fetchval("SELECT count(*) FROM webhooks") == 0


@pytest.mark.parametrize("path", ["/api/webhooks/999", "/api/webhooks/abc"])
async def test_unknown_webhook_is_404(api: ApiEnv, admin: str, path: str) -> None:
    async with api.client() as c:
        for method in ("GET", "PATCH", "DELETE"):
            r = await c.request(method, path, json={"webhook": {"active": True}}, headers=api.auth(admin))
            assert (r.status_code, r.json()) == (404, {"error": "Not Found"}), method
