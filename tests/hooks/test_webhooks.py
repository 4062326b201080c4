"""Webhook use cases: create (secret shown once), list, get, update, delete, refusals, replay positions."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.core import webhooks
from mailtrap_smtp.store import outbox as outbox_store
from mailtrap_smtp.store import webhooks as webhooks_store
from tests.webhook_world import World

SPEC = webhooks.WebhookSpec(url="https://93.184.215.14/hook", webhook_type="email_sending", payload_format="json",
                            sending_stream="transactional", event_types=["delivery", "bounce"])


@pytest.fixture
async def world(pool: asyncpg.Pool[Any]) -> World:
    return await World.create(pool)


async def test_create_returns_mailtraps_object_with_a_32_hex_secret_shown_once(world: World) -> None:
    created = await webhooks.create(world.pool, world.account_id, SPEC, allow_private=False)
    w = created.webhook
    assert re.fullmatch(r"[0-9a-f]{32}", w["signing_secret"])
    assert w == {"id": w["id"], "url": "https://93.184.215.14/hook", "active": True, "webhook_type": "email_sending",
                 "payload_format": "json", "sending_stream": "transactional", "event_types": ["delivery", "bounce"],
                 "domain_id": None, "inbound_inbox_id": None, "signing_secret": w["signing_secret"]}
    got = await webhooks.get(world.pool, world.account_id, w["id"])
    assert "signing_secret" not in got and got == {k: v for k, v in w.items() if k != "signing_secret"}
    assert await webhooks.list_webhooks(world.pool, world.account_id) == [got]
    # The SDK's own model parses it (the fields it requires are there).
    from mailtrap.models.webhooks import WebhookWithSecret

    assert WebhookWithSecret(**w).signing_secret == w["signing_secret"]
    # Its cursor exists from the start, at the log's horizon.
    assert await outbox_store.get(world.pool, f"webhook:{w['id']}") is not None


async def test_defaults_every_event_type_both_streams_every_domain(world: World) -> None:
    w = (await webhooks.create(world.pool, world.account_id, webhooks.WebhookSpec(url="http://93.184.215.14/"),
                               allow_private=False)).webhook
    assert (w["active"], w["payload_format"], w["sending_stream"], w["domain_id"]) == (True, "json", None, None)
    assert w["event_types"] == ["delivery", "open", "click", "unsubscribe", "spam_complaint", "soft_bounce", "bounce",
                                "suspension", "reject"]


@pytest.mark.parametrize(("change", "field", "value"), [
    (webhooks.WebhookChanges(url="https://93.184.215.15/new"), "url", "https://93.184.215.15/new"),
    (webhooks.WebhookChanges(active=False), "active", False),
    (webhooks.WebhookChanges(payload_format="jsonlines"), "payload_format", "jsonlines"),
    (webhooks.WebhookChanges(event_types=["soft_bounce"]), "event_types", ["soft_bounce"]),
])
async def test_update_changes_one_field(world: World, change: webhooks.WebhookChanges, field: str,
                                        value: Any) -> None:
    w = (await webhooks.create(world.pool, world.account_id, SPEC, allow_private=False)).webhook
    updated = await webhooks.update(world.pool, world.account_id, w["id"], change, allow_private=False)
    assert updated[field] == value
    assert {k: v for k, v in updated.items() if k != field} == \
           {k: v for k, v in w.items() if k not in (field, "signing_secret")}
    assert await webhooks.get(world.pool, world.account_id, w["id"]) == updated


async def test_deactivating_pauses_the_cursor_and_activating_resumes_it(world: World) -> None:
    w = (await webhooks.create(world.pool, world.account_id, SPEC, allow_private=False)).webhook
    name = f"webhook:{w['id']}"
    await webhooks.update(world.pool, None, w["id"], webhooks.WebhookChanges(active=False), allow_private=False)
    assert (await world.pool.fetchval("SELECT paused FROM outbox_cursors WHERE name = $1", name)) is True
    await webhooks.update(world.pool, None, w["id"], webhooks.WebhookChanges(active=True), allow_private=False)
    assert (await world.pool.fetchval("SELECT paused FROM outbox_cursors WHERE name = $1", name)) is False


async def test_delete_returns_the_object_and_removes_webhook_and_cursor(world: World) -> None:
    w = (await webhooks.create(world.pool, world.account_id, SPEC, allow_private=False)).webhook
    deleted = await webhooks.delete(world.pool, world.account_id, w["id"])
    assert deleted["id"] == w["id"] and "signing_secret" not in deleted
    assert await world.pool.fetchval("SELECT count(*) FROM webhooks") == 0
    assert await world.pool.fetchval("SELECT count(*) FROM outbox_cursors") == 0
    with pytest.raises(webhooks.WebhookNotFound, match=f"^no webhook with id {w['id']}$"):
        await webhooks.get(world.pool, world.account_id, w["id"])


async def test_another_accounts_webhook_is_not_found(world: World) -> None:
    other = await World.create(world.pool, "other")
    w = (await webhooks.create(world.pool, other.account_id, SPEC, allow_private=False)).webhook
    for call in (webhooks.get(world.pool, world.account_id, w["id"]),
                 webhooks.delete(world.pool, world.account_id, w["id"]),
                 webhooks.update(world.pool, world.account_id, w["id"], webhooks.WebhookChanges(active=False),
                                 allow_private=False),
                 webhooks.delivery_log(world.pool, world.account_id, w["id"])):
        with pytest.raises(webhooks.WebhookNotFound):
            await call
    assert await webhooks.list_webhooks(world.pool, world.account_id) == []
    assert (await webhooks.get(world.pool, other.account_id, w["id"]))["active"] is True


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://93.184.215.14/hook", "url: must be an http:// or https:// URL with a host"),
    ("https:///nohost", "url: must be an http:// or https:// URL with a host"),
    ("https://93.184.215.14:8443/hook", "url: only ports 80 and 443 may be used"),
    ("http://93.184.215.14:25/hook", "url: only ports 80 and 443 may be used"),
    ("https://93.184.215.14:99999/hook", "url: not a valid URL"),
    ("http://127.0.0.1/hook", "url: the host is not a public address"),
    ("http://10.1.2.3/hook", "url: the host is not a public address"),
    ("http://192.168.0.1/hook", "url: the host is not a public address"),
    ("http://169.254.169.254/latest/meta-data", "url: the host is not a public address"),
    ("http://[::1]/hook", "url: the host is not a public address"),
    ("http://[::ffff:127.0.0.1]/hook", "url: the host is not a public address"),
    ("http://[fe80::1]/hook", "url: the host is not a public address"),
    ("http://0.0.0.0/hook", "url: the host is not a public address"),
    ("http://100.64.0.1/hook", "url: the host is not a public address"),
    ("http://localhost/hook", "url: the host is not a public address"),
    ("http://does-not-exist.invalid/hook", "url: the host name does not resolve"),
    ("http://93.184.215.14/a b", "url: must not contain white space"),
])
async def test_unsafe_urls_are_refused_and_nothing_is_stored(world: World, url: str, reason: str) -> None:
    with pytest.raises(webhooks.InvalidWebhook) as err:
        await webhooks.create(world.pool, world.account_id, webhooks.WebhookSpec(url=url), allow_private=False)
    assert str(err.value) == reason
    assert await world.pool.fetchval("SELECT count(*) FROM webhooks") == 0
    assert await world.pool.fetchval("SELECT count(*) FROM outbox_cursors") == 0


async def test_an_unsafe_url_is_refused_on_update_too(world: World) -> None:
    w = (await webhooks.create(world.pool, world.account_id, SPEC, allow_private=False)).webhook
    with pytest.raises(webhooks.InvalidWebhook, match=r"^url: the host is not a public address$"):
        await webhooks.update(world.pool, world.account_id, w["id"],
                              webhooks.WebhookChanges(url="http://127.0.0.1/x"), allow_private=False)
    assert (await webhooks.get(world.pool, world.account_id, w["id"]))["url"] == SPEC.url


async def test_allow_private_targets_admits_loopback_and_any_port(world: World) -> None:
    w = (await webhooks.create(world.pool, world.account_id, webhooks.WebhookSpec(url="http://127.0.0.1:8025/h"),
                               allow_private=True)).webhook
    assert w["url"] == "http://127.0.0.1:8025/h"


@pytest.mark.parametrize(("spec_changes", "reason"), [
    ({"webhook_type": "campaigns"}, "webhook_type: only email_sending is supported"),
    ({"webhook_type": "nonsense"}, "webhook_type: only email_sending is supported"),
    ({"payload_format": "xml"}, "payload_format: must be json or jsonlines"),
    ({"sending_stream": "marketing"}, "sending_stream: must be transactional or bulk"),
    ({"event_types": []}, "event_types: must be a non-empty list"),
    ({"event_types": ["soft bounce"]},
     "event_types: unknown 'soft bounce'; one of delivery, open, click, unsubscribe, spam_complaint, soft_bounce, "
     "bounce, suspension, reject"),
    ({"event_types": ["spam"]},
     "event_types: unknown 'spam'; one of delivery, open, click, unsubscribe, spam_complaint, soft_bounce, "
     "bounce, suspension, reject"),
    ({"domain_id": 999999}, "domain_id: no such sending domain"),
])
async def test_invalid_fields_are_refused_and_nothing_is_stored(world: World, spec_changes: dict[str, Any],
                                                                 reason: str) -> None:
    spec = webhooks.WebhookSpec(**({"url": "https://93.184.215.14/hook"} | spec_changes))
    with pytest.raises(webhooks.InvalidWebhook) as err:
        await webhooks.create(world.pool, world.account_id, spec, allow_private=False)
    assert str(err.value) == reason
    assert await world.pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_a_domain_of_another_account_is_refused(world: World) -> None:
    other = await World.create(world.pool, "other")
    with pytest.raises(webhooks.InvalidWebhook, match=r"^domain_id: no such sending domain$"):
        await webhooks.create(world.pool, world.account_id,
                              webhooks.WebhookSpec(url=SPEC.url, domain_id=other.domain_id), allow_private=False)


async def test_replay_positions_the_cursor_before_the_event(world: World) -> None:
    w = (await webhooks.create(world.pool, world.account_id, SPEC, allow_private=False)).webhook
    await world.delivered(3)
    ids = await world.event_ids()
    await webhooks.replay(world.pool, world.account_id, w["id"], event_id=uuid.UUID(ids[1]))
    cur = await outbox_store.get(world.pool, f"webhook:{w['id']}")
    page = await outbox_store.read(world.pool, cur.position if cur else outbox_store.BEGINNING, 10,
                                   outbox_store.EventFilter(types=["delivery"]))
    assert [str(e.event_id) for e in page.events] == ids[1:]


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({}, "replay: give exactly one of an event id or a time"),
    ({"event_id": "00000000-0000-0000-0000-000000000000"}, "replay: no such event"),
])
async def test_replay_refusals(world: World, kwargs: dict[str, Any], reason: str) -> None:
    w = (await webhooks.create(world.pool, world.account_id, SPEC, allow_private=False)).webhook
    args = {k: uuid.UUID(v) for k, v in kwargs.items()}
    with pytest.raises(webhooks.InvalidWebhook) as err:
        await webhooks.replay(world.pool, world.account_id, w["id"], **args)
    assert str(err.value) == reason


async def test_replay_of_another_accounts_event_is_refused(world: World) -> None:
    other = await World.create(world.pool, "other")
    await other.delivered(1)
    w = (await webhooks.create(world.pool, world.account_id, SPEC, allow_private=False)).webhook
    with pytest.raises(webhooks.InvalidWebhook, match=r"^replay: no such event$"):
        await webhooks.replay(world.pool, world.account_id, w["id"], event_id=uuid.UUID((await other.event_ids())[0]))


async def test_store_refuses_unknown_columns(world: World) -> None:
    w = (await webhooks.create(world.pool, world.account_id, SPEC, allow_private=False)).webhook
    with pytest.raises(ValueError, match="not updatable"):
        await webhooks_store.update(world.pool, w["id"], None, {"signing_secret": "x"})
