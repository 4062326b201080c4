"""Templates over the API (MAILTRAP_COMPAT.md §7.3, §9 item 10): the legacy management paths used
by the SDK's `templates_api`, and `template_uuid` sends rendered with Handlebars semantics."""

from __future__ import annotations

import asyncio
import email
import email.policy
from typing import Any

import mailtrap as mt
import mailtrap.client
import pytest

from tests.http_util import SENDER, ApiEnv, minimal

TEMPLATE = {"name": "Welcome", "subject": "Hi {{user.name}}", "category": "onboarding",
            "body_text": "Hello {{user.name}}{{#if vip}}, VIP{{/if}}",
            "body_html": "<p>Hello {{user.name}} {{{raw}}}</p>{{#each items}}<i>{{this}}</i>{{/each}}"}


@pytest.fixture
async def admin(api: ApiEnv) -> str:
    return await api.new_token(level="admin")


@pytest.fixture
def sdk(api: ApiEnv, admin: str, monkeypatch: pytest.MonkeyPatch) -> mt.MailtrapClient:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    monkeypatch.setattr(mailtrap.client, "GENERAL_HOST", f"127.0.0.1:{api.port}")
    return mt.MailtrapClient(token=admin, account_id=str(api.account.id))


def _path(api: ApiEnv, suffix: str = "") -> str:
    return f"/api/accounts/{api.account.id}/email_templates{suffix}"


async def test_sdk_template_lifecycle(api: ApiEnv, sdk: mt.MailtrapClient) -> None:
    tpl = sdk.email_templates_api.templates  # the legacy paths of §7.3
    created = await asyncio.to_thread(tpl.create, mt.CreateEmailTemplateParams(**TEMPLATE))
    assert (created.name, created.subject, created.category) == ("Welcome", "Hi {{user.name}}", "onboarding")
    listed = await asyncio.to_thread(tpl.get_list)
    assert [t.uuid for t in listed] == [created.uuid]
    updated = await asyncio.to_thread(tpl.update, created.id, mt.UpdateEmailTemplateParams(name="Renamed"))
    assert updated.name == "Renamed" and updated.subject == created.subject
    assert (await asyncio.to_thread(tpl.get_by_id, created.id)).name == "Renamed"
    await asyncio.to_thread(tpl.delete, created.id)
    assert await asyncio.to_thread(tpl.get_list) == []


async def test_template_send_renders_subject_text_and_html(api: ApiEnv, admin: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # §9 item 10
    async with api.client() as c:
        created = (await c.post(_path(api), json={"email_template": TEMPLATE}, headers=api.auth(admin))).json()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    client = mt.MailtrapClient(token=api.token, api_host=f"127.0.0.1:{api.port}")
    mail = mt.MailFromTemplate(sender=mt.Address(email=SENDER), to=[mt.Address(email="r@x.test")],
                               template_uuid=created["uuid"],
                               template_variables={"user": {"name": "<Ann>"}, "vip": True, "raw": "<b>ok</b>",
                                                   "items": ["a", "b"]})
    result = await asyncio.to_thread(client.send, mail)
    (mid,) = result["message_ids"]
    msg = email.message_from_bytes(await api.raw_of(mid), policy=email.policy.default)
    assert msg["Subject"] == "Hi <Ann>"
    assert msg.get_body(("plain",)).get_content().strip() == "Hello <Ann>, VIP"
    assert msg.get_body(("html",)).get_content().strip() == "<p>Hello &lt;Ann&gt; <b>ok</b></p><i>a</i><i>b</i>"
    async with api.pool.acquire() as conn:
        assert await conn.fetchval("SELECT category FROM messages") == "onboarding"


@pytest.mark.parametrize(("over", "errors"), [
    ({"template_uuid": "00000000-0000-0000-0000-000000000000"}, ["'template_uuid' does not match any template"]),
    ({"template_uuid": "not-a-uuid"}, ["'template_uuid' does not match any template"]),
    ({"template_uuid": "{uuid}", "template_variables": ["x"]}, ["'template_variables' is invalid"]),
])
async def test_template_send_errors(api: ApiEnv, admin: str, over: dict[str, Any], errors: list[str]) -> None:
    async with api.client() as c:
        created = (await c.post(_path(api), json={"email_template": TEMPLATE}, headers=api.auth(admin))).json()
        body = minimal(**{k: (v.format(uuid=created["uuid"]) if isinstance(v, str) else v) for k, v in over.items()})
        for key in ("subject", "text"):
            del body[key]
        r = await c.post("/api/send", json=body, headers=api.auth())
    assert (r.status_code, r.json()) == (400, {"success": False, "errors": errors})
    await api.assert_nothing_stored()


@pytest.mark.parametrize(("method", "suffix", "body", "status", "expect"), [
    ("POST", "", {"email_template": {"name": "", "subject": "s", "category": "c"}}, 422,
     {"errors": {"name": ["can't be blank"]}}),
    ("POST", "", {"email_template": {"name": "n", "subject": "{{#if x}}", "category": "c"}}, 422, None),
    ("POST", "", {}, 422, {"errors": {"email_template": ["can't be blank"]}}),
    ("GET", "/999999", None, 404, {"error": "Not Found"}),
    ("PATCH", "/999999", {"email_template": {"name": "x"}}, 404, {"error": "Not Found"}),
    ("DELETE", "/999999", None, 404, {"error": "Not Found"}),
])
async def test_template_management_errors(api: ApiEnv, admin: str, method: str, suffix: str, body: Any,
                                          status: int, expect: Any) -> None:
    async with api.client() as c:
        r = await c.request(method, _path(api, suffix), json=body, headers=api.auth(admin))
    assert r.status_code == status, r.text
    if expect is not None:
        assert r.json() == expect
    else:
        assert list(r.json()["errors"]) == ["subject"]


@pytest.mark.parametrize(("level", "method", "status"), [
    ("send", "GET", 403), ("read", "GET", 200), ("read", "POST", 403), ("admin", "POST", 201),
])
async def test_template_permissions(api: ApiEnv, level: str, method: str, status: int) -> None:
    token = await api.new_token(level=level)
    async with api.client() as c:
        r = await c.request(method, _path(api), json={"email_template": TEMPLATE} if method == "POST" else None,
                            headers=api.auth(token))
        other = await c.get(f"/api/accounts/{api.account.id + 1}/email_templates", headers=api.auth(token))
    assert r.status_code == status
    assert (other.status_code, other.json()) == (403, {"errors": "Account access forbidden"})
