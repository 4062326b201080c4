"""Webhook use cases: create (the signing secret exists only in the answer), list, get, update,
delete, the delivery log, and replay from an event or a time.

Objects are Mailtrap's Webhook shape (MAILTRAP_COMPAT §5.3: the SDK requires id, url, active,
webhook_type, payload_format). `account_id` scopes every call to one account (an API token's);
None is the operator (the CLI), who sees every account's webhooks.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..hooks.targets import UnsafeTarget, check_resolved
from ..outbox import notify
from ..store import domains as domains_store
from ..store import outbox as outbox_store
from ..store import webhooks as store
from ..store.types import Conn, Record
from . import event_names
from .refusal import Kind, Refused

WEBHOOK_TYPES = ("email_sending",)  # the only events we produce (no campaigns, audit log or inbound)
PAYLOAD_FORMATS = ("json", "jsonlines")
STREAMS = ("transactional", "bulk")
EVENT_TYPES = tuple(s.config for s in event_names.ALL)


class WebhookNotFound(Refused):
    """No such webhook (or not one of this account's)."""

    kind = Kind.NOT_FOUND

    def __init__(self, webhook_id: int) -> None:
        super().__init__(f"no webhook with id {webhook_id}")


class InvalidWebhook(Refused):
    """A field of a create or update is not acceptable: `field` and the `reason`, for people."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field, self.reason = field_name, reason


@dataclass(frozen=True)
class WebhookSpec:
    url: str
    webhook_type: str = "email_sending"
    active: bool = True
    payload_format: str = "json"
    sending_stream: str | None = None            # None: both streams
    event_types: Sequence[str] | None = None     # None: every event type
    domain_id: int | None = None                 # None: every domain of the account


@dataclass(frozen=True)
class WebhookChanges:
    """Fields to change; a field left None is kept."""

    url: str | None = None
    active: bool | None = None
    payload_format: str | None = None
    event_types: Sequence[str] | None = None


@dataclass(frozen=True)
class Created:
    webhook: dict[str, Any]   # with "signing_secret": shown this once


def as_object(row: Record) -> dict[str, Any]:
    """Mailtrap's Webhook object."""
    return {
        "id": row["id"], "url": row["url"], "active": row["active"], "webhook_type": row["webhook_type"],
        "payload_format": row["payload_format"], "sending_stream": row["sending_stream"],
        "event_types": list(row["event_types"]), "domain_id": row["domain_id"], "inbound_inbox_id": None,
    }


async def _check_url(url: str, allow_private: bool) -> None:
    try:
        await check_resolved(url, allow_private=allow_private)
    except UnsafeTarget as e:
        raise InvalidWebhook("url", str(e).removeprefix("url: ")) from None


def _check_event_types(types: Sequence[str]) -> list[str]:
    if isinstance(types, str) or not types:
        raise InvalidWebhook("event_types", "must be a non-empty list")
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidWebhook("event_types", f"unknown {', '.join(map(repr, unknown))}; one of {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(types))


def _check_format(payload_format: str) -> None:
    if payload_format not in PAYLOAD_FORMATS:
        raise InvalidWebhook("payload_format", "must be json or jsonlines")


async def domain_id(conn: Conn, account_id: int, name: str) -> int:
    """The id of the account's sending domain `name` (for adapters that name domains)."""
    row = await domains_store.get_by_name(conn, name.lower())
    if row is None or row["account_id"] != account_id:
        raise InvalidWebhook("domain", f"{name!r} is not a sending domain of this account")
    return int(row["id"])


async def create(conn: Conn, account_id: int, spec: WebhookSpec, *, allow_private: bool) -> Created:
    if spec.webhook_type not in WEBHOOK_TYPES:
        raise InvalidWebhook("webhook_type", "only email_sending is supported")
    _check_format(spec.payload_format)
    if spec.sending_stream is not None and spec.sending_stream not in STREAMS:
        raise InvalidWebhook("sending_stream", "must be transactional or bulk")
    types = _check_event_types(spec.event_types) if spec.event_types is not None else list(EVENT_TYPES)
    if spec.domain_id is not None:
        domains = await domains_store.list_all(conn, account_id)
        if spec.domain_id not in {d["id"] for d in domains}:
            raise InvalidWebhook("domain_id", "no such sending domain")
    await _check_url(spec.url, allow_private)
    secret = secrets.token_hex(16)  # 32 hex characters (§5.1)
    row = await store.create(conn, account_id, url=spec.url, webhook_type=spec.webhook_type, active=spec.active,
                             payload_format=spec.payload_format, sending_stream=spec.sending_stream,
                             event_types=types, domain_id=spec.domain_id, signing_secret=secret)
    return Created(as_object(row) | {"signing_secret": secret})


async def list_webhooks(conn: Conn, account_id: int | None) -> list[dict[str, Any]]:
    return [as_object(r) for r in await store.list_for(conn, account_id)]


async def _row(conn: Conn, account_id: int | None, webhook_id: int) -> Record:
    row = await store.get(conn, webhook_id, account_id)
    if row is None:
        raise WebhookNotFound(webhook_id)
    return row


async def get(conn: Conn, account_id: int | None, webhook_id: int) -> dict[str, Any]:
    return as_object(await _row(conn, account_id, webhook_id))


async def update(conn: Conn, account_id: int | None, webhook_id: int, changes: WebhookChanges, *,
                 allow_private: bool) -> dict[str, Any]:
    """Change fields; `active: true` on a deactivated webhook resumes it where it stopped."""
    await _row(conn, account_id, webhook_id)
    cols: dict[str, Any] = {}
    if changes.url is not None:
        await _check_url(changes.url, allow_private)
        cols["url"] = changes.url
    if changes.payload_format is not None:
        _check_format(changes.payload_format)
        cols["payload_format"] = changes.payload_format
    if changes.event_types is not None:
        cols["event_types"] = _check_event_types(changes.event_types)
    if changes.active is not None:
        cols["active"] = changes.active
    row = await store.update(conn, webhook_id, account_id, cols) if cols else await _row(conn, account_id, webhook_id)
    if row is None:
        raise WebhookNotFound(webhook_id)
    if changes.active:
        await notify(conn)
    return as_object(row)


async def delete(conn: Conn, account_id: int | None, webhook_id: int) -> dict[str, Any]:
    row = await store.delete(conn, webhook_id, account_id)
    if row is None:
        raise WebhookNotFound(webhook_id)
    return as_object(row)


async def delivery_log(conn: Conn, account_id: int | None, webhook_id: int, limit: int = 50) -> dict[str, Any]:
    """The last attempts (newest first) and the retry state: failures in a row, next attempt, last error."""
    await _row(conn, account_id, webhook_id)
    state = await store.cursor_state(conn, webhook_id)
    return {
        "attempts": [dict(a) for a in await store.attempts(conn, webhook_id, limit)],
        "failures": state["failures"] if state else 0,
        "next_attempt_at": state["not_before"] if state and state["failures"] else None,
        "last_error": state["last_error"] if state else None,
    }


async def replay(conn: Conn, account_id: int | None, webhook_id: int, *, event_id: uuid.UUID | None = None,
                 since: dt.datetime | None = None) -> dict[str, Any]:
    """Deliver again from the event `event_id` (included), or from the first event at or after `since`.

    Events the webhook's filters exclude are skipped as usual. The webhook's `active` flag is left
    as it is: a deactivated webhook replays once it is resumed.
    """
    if (event_id is None) == (since is None):
        raise InvalidWebhook("replay", "give exactly one of an event id or a time")
    row = await _row(conn, account_id, webhook_id)
    pos = await outbox_store.reposition(conn, store.cursor_name(webhook_id), event_id=event_id, since=since,
                                        account_id=row["account_id"])
    if pos is None:
        raise InvalidWebhook("replay", "no such event" if event_id else "no event at or after that time")
    await notify(conn)
    return {"webhook_id": webhook_id, "from_event_id": str(event_id) if event_id else None,
            "since": since.isoformat() if since else None}
