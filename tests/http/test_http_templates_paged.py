"""The SDK 2.11 `templates_api` (`/api/accounts/{id}/templates`, MAILTRAP_COMPAT.md §7.3): flat bodies,
`{"data": …}` envelopes, page-token pagination, driven by the official SDK itself over real TLS, on the
same templates use case as the legacy `email_templates` paths."""

from __future__ import annotations

import asyncio
from typing import Any

import mailtrap as mt
import mailtrap.client
import pytest
from mailtrap.models.paginated_templates import (
    CreateTemplateParams,
    TemplateListParams,
    UpdateTemplateParams,
)

from mailtrap_smtp.store import templates as templates_store
from tests.http_util import ApiEnv

FIELDS = {"name": "Promo", "subject": "Hi {{name}}", "category": "promotion", "body_html": "<p>{{name}}</p>"}


@pytest.fixture
async def admin(api: ApiEnv) -> str:
    return await api.new_token(level="admin")


@pytest.fixture
def templates(api: ApiEnv, admin: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    monkeypatch.setattr(mailtrap.client, "GENERAL_HOST", f"127.0.0.1:{api.port}")
    return mt.MailtrapClient(token=admin, account_id=str(api.account.id)).templates_api.templates


def _path(api: ApiEnv, suffix: str = "") -> str:
    return f"/api/accounts/{api.account.id}/templates{suffix}"


async def _stored(api: ApiEnv) -> list[tuple[str, str]]:
    return [(r["name"], r["subject"]) for r in await templates_store.list_for_account(api.pool, api.account.id)]


async def test_sdk_templates_api_lifecycle(api: ApiEnv, admin: str, templates: Any) -> None:
    created = await asyncio.to_thread(templates.create, CreateTemplateParams(**FIELDS))
    assert (created.name, created.subject, created.category, created.body_html, created.body_text) == (
        "Promo", "Hi {{name}}", "promotion", "<p>{{name}}</p>", None)
    assert created.uuid and created.created_at and created.updated_at
    fetched = await asyncio.to_thread(templates.get_by_id, created.id)
    assert fetched == created
    updated = await asyncio.to_thread(templates.update, created.id, UpdateTemplateParams(name="Renamed"))
    assert (updated.name, updated.subject, updated.uuid) == ("Renamed", "Hi {{name}}", created.uuid)
    listed = await asyncio.to_thread(templates.get_list)
    assert [t.id for t in listed.data] == [created.id] and listed.pagination is not None
    assert (listed.pagination.token, listed.pagination.prev_token, listed.pagination.next_token) == (1, None, None)
    # The same template on the legacy path: one use case, one table.
    async with api.client() as c:
        legacy = await c.get(f"/api/accounts/{api.account.id}/email_templates/{created.id}",
                             headers=api.auth(admin))
    assert legacy.json()["name"] == "Renamed"
    deleted = await asyncio.to_thread(templates.delete, created.id)
    assert deleted.id == created.id and await _stored(api) == []
    with pytest.raises(mt.APIError) as info:
        await asyncio.to_thread(templates.get_by_id, created.id)
    assert info.value.status == 404


async def test_sdk_pages_through_the_list(api: ApiEnv, admin: str, templates: Any) -> None:
    ids = [(await asyncio.to_thread(templates.create, CreateTemplateParams(**{**FIELDS, "name": f"t{i}"}))).id
           for i in range(5)]
    first = await asyncio.to_thread(templates.get_list, TemplateListParams(per_page=2))
    assert [t.id for t in first.data] == ids[:2]
    base = f"https://127.0.0.1:{api.port}{_path(api)}"
    p = first.pagination
    assert (p.token, p.prev_token, p.next_token) == (1, None, 2)
    assert (p.first_url, p.prev_url, p.current_url, p.next_url) == (
        f"{base}?per_page=2&token=1", None, f"{base}?per_page=2&token=1", f"{base}?per_page=2&token=2")
    last = await asyncio.to_thread(templates.get_list, TemplateListParams(per_page=2, token=3))
    assert [t.id for t in last.data] == ids[4:]
    assert (last.pagination.token, last.pagination.prev_token, last.pagination.next_token) == (3, 2, None)
    assert last.pagination.next_url is None and last.pagination.prev_url == f"{base}?per_page=2&token=2"
    # The defaults: page 1 of 50; more than 100 per page is capped at 100.
    whole = await asyncio.to_thread(templates.get_list)
    assert [t.id for t in whole.data] == ids and whole.pagination.current_url == f"{base}?per_page=50&token=1"
    capped = await asyncio.to_thread(templates.get_list, TemplateListParams(per_page=500))
    assert capped.pagination.current_url == f"{base}?per_page=100&token=1"


@pytest.mark.parametrize(("query", "expect"), [
    ("?token=2", {"errors": "token is out of range"}),
    ("?token=0", {"errors": {"query.token": ["is invalid"]}}),
    ("?token=x", {"errors": {"query.token": ["is invalid"]}}),
    ("?per_page=0", {"errors": {"query.per_page": ["is invalid"]}}),
    ("?per_page=-3", {"errors": {"query.per_page": ["is invalid"]}}),
])
async def test_bad_list_queries(api: ApiEnv, admin: str, query: str, expect: dict[str, Any]) -> None:
    async with api.client() as c:
        r = await c.get(_path(api, query), headers=api.auth(admin))
    assert (r.status_code, r.json()) == (422, expect)


@pytest.mark.parametrize(("body", "expect"), [
    ({"subject": "s", "category": "c"}, {"name": ["can't be blank"]}),
    ({"name": " ", "subject": "s", "category": "c"}, {"name": ["can't be blank"]}),
    ({"name": "n", "subject": "s"}, {"category": ["can't be blank"]}),
    ({"name": "n", "subject": "{{#if}}", "category": "c"}, None),
    ({"name": 5, "subject": "s", "category": "c"}, {"name": ["must be a string"]}),
    ({"name": "n", "subject": "a\nb", "category": "c"}, {"subject": ["must be one line"]}),
])
async def test_bad_bodies_are_refused_and_nothing_is_stored(api: ApiEnv, admin: str, body: dict[str, Any],
                                                           expect: dict[str, Any] | None) -> None:
    async with api.client() as c:
        r = await c.post(_path(api), json=body, headers=api.auth(admin))
    assert r.status_code == 422
    errors = r.json()["errors"]
    if expect is None:
        assert list(errors) == ["subject"]  # the compile error, with the place at fault
    else:
        assert errors == expect
    assert await _stored(api) == []


async def test_sdk_reports_validation_errors_and_nothing_changes(api: ApiEnv, templates: Any) -> None:
    with pytest.raises(mt.APIError) as info:
        await asyncio.to_thread(templates.create, CreateTemplateParams(name="", subject="s", category="c"))
    assert info.value.status == 422 and "name: can't be blank" in str(info.value)
    created = await asyncio.to_thread(templates.create, CreateTemplateParams(**FIELDS))
    with pytest.raises(mt.APIError) as info:
        await asyncio.to_thread(templates.update, created.id, UpdateTemplateParams(subject=""))
    assert info.value.status == 422 and "subject: can't be blank" in str(info.value)
    assert await _stored(api) == [("Promo", "Hi {{name}}")]


@pytest.mark.parametrize(("method", "suffix", "status", "expect"), [
    ("GET", "/999999", 404, {"error": "Not Found"}),
    ("PATCH", "/999999", 404, {"error": "Not Found"}),
    ("DELETE", "/999999", 404, {"error": "Not Found"}),
    ("GET", "/abc", 404, {"error": "Not Found"}),
])
async def test_unknown_templates(api: ApiEnv, admin: str, method: str, suffix: str, status: int,
                                 expect: dict[str, Any]) -> None:
    async with api.client() as c:
        r = await c.request(method, _path(api, suffix), json={"name": "x"} if method == "PATCH" else None,
                            headers=api.auth(admin))
    assert (r.status_code, r.json()) == (status, expect)


@pytest.mark.parametrize("level", ["send", "read"])
async def test_changing_needs_an_admin_token(api: ApiEnv, level: str) -> None:
    token = await api.new_token(level=level)
    async with api.client() as c:
        r = await c.post(_path(api), json=FIELDS, headers=api.auth(token))
        listed = await c.get(_path(api), headers=api.auth(token))
    assert (r.status_code, r.json()) == (403, {"errors": "Account access forbidden"})
    assert listed.status_code == (200 if level == "read" else 403)
    assert await _stored(api) == []


async def test_another_accounts_path_is_forbidden(api: ApiEnv, admin: str) -> None:
    async with api.client() as c:
        r = await c.get(f"/api/accounts/{api.account.id + 1000}/templates", headers=api.auth(admin))
    assert (r.status_code, r.json()) == (403, {"errors": "Account access forbidden"})
