"""The templates use case against the real database: CRUD per account, validation, render."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mailtrap_smtp.core.templates import TemplateInvalid, TemplateNotFound, Templates
from mailtrap_smtp.store import accounts
from mailtrap_smtp.templating import TemplateError

WELCOME = {
    "name": "Welcome", "subject": "Welcome, {{user.name}}", "category": "onboarding",
    "body_text": "Hi {{user.name}} <3\n{{#each items}}- {{this}}\n{{/each}}",
    "body_html": "<p>Hi {{user.name}}</p>{{#if vip}}<b>VIP</b>{{/if}}",
}


@pytest.fixture
async def env(pool: Any) -> tuple[Templates, int, int]:
    a = await accounts.create(pool, "acme", monthly_limit=10, max_message_size=1000)
    b = await accounts.create(pool, "other", monthly_limit=10, max_message_size=1000)
    return Templates(pool), a["id"], b["id"]


async def count(pool: Any) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM email_templates"))


async def test_create_list_get_update_delete(env: tuple[Templates, int, int]) -> None:
    templates, acct, _ = env
    t = await templates.create(acct, WELCOME)
    assert (t.name, t.subject, t.category, t.body_text, t.body_html) == tuple(
        WELCOME[k] for k in ("name", "subject", "category", "body_text", "body_html"))
    assert isinstance(t.uuid, uuid.UUID) and t.created_at == t.updated_at
    second = await templates.create(acct, {"name": "Bye", "subject": "Bye", "category": "c", "body_text": "x"})
    assert second.body_html is None
    assert [x.id for x in await templates.list_all(acct)] == [t.id, second.id]
    assert await templates.get(acct, t.id) == t
    assert await templates.get_by_uuid(acct, str(t.uuid)) == t
    changed = await templates.update(acct, t.id, {"subject": "Hello {{user.name}}", "body_html": None})
    assert (changed.subject, changed.body_html, changed.name, changed.body_text) == (
        "Hello {{user.name}}", None, "Welcome", WELCOME["body_text"])
    assert changed.updated_at > t.updated_at and changed.created_at == t.created_at
    assert await templates.delete(acct, t.id) == changed
    with pytest.raises(TemplateNotFound):
        await templates.get(acct, t.id)
    assert [x.id for x in await templates.list_all(acct)] == [second.id]


async def test_other_accounts_templates_are_invisible(env: tuple[Templates, int, int]) -> None:
    templates, acct, other = env
    t = await templates.create(acct, WELCOME)
    assert await templates.list_all(other) == []
    for call in (templates.get(other, t.id), templates.update(other, t.id, {"name": "stolen"}),
                 templates.delete(other, t.id), templates.get_by_uuid(other, t.uuid),
                 templates.render(other, t.uuid, {})):
        with pytest.raises(TemplateNotFound):
            await call
    assert await templates.get(acct, t.id) == t  # untouched


@pytest.mark.parametrize(("values", "errors"), [
    ({**WELCOME, "name": ""}, {"name": ["can't be blank"]}),
    ({k: v for k, v in WELCOME.items() if k != "subject"}, {"subject": ["can't be blank"]}),
    ({**WELCOME, "category": "   "}, {"category": ["can't be blank"]}),
    ({**WELCOME, "category": 5}, {"category": ["must be a string"]}),
    ({**WELCOME, "name": "n" * 256}, {"name": ["is too long (maximum is 255 characters)"]}),
    ({**WELCOME, "subject": "s" * 999}, {"subject": ["is too long (maximum is 998 characters)"]}),
    ({**WELCOME, "subject": "two\r\nlines"}, {"subject": ["must be one line"]}),
    ({**WELCOME, "body_html": "<p>\n{{#if vip}}"}, {"body_html": ["line 2: {{#if}} is never closed with {{/if}}"]}),
    ({**WELCOME, "body_text": "{{> partial}}"}, {"body_text": ["line 1: partials ({{> name}}) are not supported"]}),
    ({**WELCOME, "subject": "{{#each}}"}, {"subject": ["line 1: {{#each}} takes exactly one variable"]}),
    ({"body_text": 1}, {"name": ["can't be blank"], "subject": ["can't be blank"], "category": ["can't be blank"],
                        "body_text": ["must be a string"]}),
])
async def test_create_refuses(env: tuple[Templates, int, int], pool: Any, values: dict[str, Any],
                              errors: dict[str, list[str]]) -> None:
    templates, acct, _ = env
    with pytest.raises(TemplateInvalid) as e:
        await templates.create(acct, values)
    assert e.value.errors == errors
    assert await count(pool) == 0


@pytest.mark.parametrize(("values", "errors"), [
    ({"name": None}, {"name": ["can't be blank"]}),
    ({"subject": ""}, {"subject": ["can't be blank"]}),
    ({"body_html": "{{/if}}"}, {"body_html": ["line 1: {{/if}} closes no block"]}),
])
async def test_update_refuses_and_changes_nothing(env: tuple[Templates, int, int], values: dict[str, Any],
                                                  errors: dict[str, list[str]]) -> None:
    templates, acct, _ = env
    t = await templates.create(acct, WELCOME)
    with pytest.raises(TemplateInvalid) as e:
        await templates.update(acct, t.id, values)
    assert e.value.errors == errors
    assert await templates.get(acct, t.id) == t


async def test_update_and_delete_of_unknown_id(env: tuple[Templates, int, int]) -> None:
    templates, acct, _ = env
    for call in (templates.update(acct, 999, {"name": "x"}), templates.delete(acct, 999), templates.get(acct, 999)):
        with pytest.raises(TemplateNotFound):
            await call


async def test_render(env: tuple[Templates, int, int]) -> None:
    templates, acct, _ = env
    t = await templates.create(acct, WELCOME)
    r = await templates.render(acct, t.uuid, {"user": {"name": "<Ann & Bob>"}, "items": ["a", "b"], "vip": True})
    assert r.subject == "Welcome, <Ann & Bob>"
    assert r.text == "Hi <Ann & Bob> <3\n- a\n- b\n"
    assert r.html == "<p>Hi &lt;Ann &amp; Bob&gt;</p><b>VIP</b>"
    assert (r.category, r.template_id) == ("onboarding", t.id)
    empty = await templates.render(acct, str(t.uuid), None)
    assert (empty.subject, empty.text, empty.html) == ("Welcome, ", "Hi  <3\n", "<p>Hi </p>")


async def test_render_subject_stays_one_line(env: tuple[Templates, int, int]) -> None:
    templates, acct, _ = env
    t = await templates.create(acct, {**WELCOME, "subject": "Re: {{s}}"})
    r = await templates.render(acct, t.uuid, {"s": "a\r\nBcc: victim@example.com\nc"})
    assert r.subject == "Re: a Bcc: victim@example.com c"


async def test_render_uses_the_updated_version(env: tuple[Templates, int, int]) -> None:
    templates, acct, _ = env
    t = await templates.create(acct, WELCOME)
    assert (await templates.render(acct, t.uuid, {})).html == "<p>Hi </p>"
    await templates.update(acct, t.id, {"body_html": "<p>v2 {{x}}</p>"})
    assert (await templates.render(acct, t.uuid, {"x": 1})).html == "<p>v2 1</p>"


async def test_render_without_a_body(env: tuple[Templates, int, int]) -> None:
    templates, acct, _ = env
    t = await templates.create(acct, {"name": "n", "subject": "s", "category": "c", "body_html": "<i>{{x}}</i>"})
    r = await templates.render(acct, t.uuid, {"x": "'"})
    assert (r.text, r.html) == (None, "<i>&#x27;</i>")


@pytest.mark.parametrize("template_uuid", [
    "not-a-uuid", "", "0b5e7c1a-3f52-4d8e-9a61-2c4f8e7d9b10", "00000000-0000-0000-0000-000000000000"])
async def test_render_unknown_uuid(env: tuple[Templates, int, int], template_uuid: str) -> None:
    templates, acct, _ = env
    await templates.create(acct, WELCOME)
    with pytest.raises(TemplateNotFound):
        await templates.render(acct, template_uuid, {})


@pytest.mark.parametrize(("variables", "message"), [
    (["a"], "template_variables must be an object"),
    ("x", "template_variables must be an object"),
    ({"items": ["x"] * 300_000}, "the template takes more than 200000 steps to render"),
])
async def test_render_refuses(env: tuple[Templates, int, int], variables: Any, message: str) -> None:
    templates, acct, _ = env
    t = await templates.create(acct, WELCOME)
    with pytest.raises(TemplateError) as e:
        await templates.render(acct, t.uuid, variables)
    assert str(e.value) == message
