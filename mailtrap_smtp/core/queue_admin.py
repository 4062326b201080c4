"""Operator use cases on the delivery queue: list recipients, show one message, retry, bounce."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from .. import headers
from ..delivery.tlsoutcome import request_of
from ..store import events as events_store
from ..store import messages as messages_store
from ..store import queue as queue_store
from ..store.types import Conn
from .refusal import Kind, Refused


def parse_message_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Refused(f"not a message id: {value!r}") from None


def _pending_only(row: dict[str, Any]) -> dict[str, Any]:
    """A delivered, bounced or expired recipient has no next attempt, whatever the column still holds."""
    if row.get("state") != "queued":
        row["next_attempt_at"] = None
    return row


async def list_recipients(conn: Conn, *, state: str | None = None, domain: str | None = None,
                          account: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """One row per recipient, newest message first."""
    return [_pending_only(dict(r)) for r in await messages_store.list_queue(conn, state=state, domain=domain,
                                                                           account=account, limit=limit)]


@dataclass(frozen=True)
class MessageView:
    details: dict[str, Any]  # envelope, headers, recipients and events
    raw: bytes  # the stored message exactly as it will be relayed


def _headers_of(raw: bytes) -> list[tuple[str, str]]:
    # As written: the name's case kept, the value with its folds (the leading WSP and final CRLF dropped).
    return [(headers.field_name(whole), whole.partition(b":")[2].lstrip(b" \t").removesuffix(b"\r\n")
             .decode("utf-8", "replace")) for _, whole in headers.parse_header(raw).fields]


async def show(conn: Conn, message_id: uuid.UUID) -> MessageView:
    """The message with this id, or the one a recipient id (as the send API returns them) is of."""
    msg = await messages_store.get(conn, message_id)
    if msg is None:
        owner = await messages_store.find_by_recipient(conn, message_id)
        msg = await messages_store.get(conn, owner) if owner is not None else None
    if msg is None:
        raise Refused(f"no message {message_id}", kind=Kind.NOT_FOUND)
    message_id = msg["id"]
    rcpts = [_pending_only(dict(r)) for r in await messages_store.recipients_of(conn, message_id)]
    evts = [dict(e) | {"details": json.loads(e["details"])}
            for e in await events_store.for_message(conn, message_id)]
    raw = bytes(msg["raw"])
    return MessageView({
        "message_id": msg["id"], "account": msg["account"], "stream": msg["stream"],
        "mail_from": msg["mail_from"], "header_from": msg["header_from"], "subject": msg["subject"],
        "size": msg["size"], "created_at": msg["created_at"], "client_ip": msg["client_ip"],
        "category": msg["category"],
        # What the message asked of the next hops (RFC 6531 SMTPUTF8, RFC 8689 REQUIRETLS or
        # `TLS-Required: No`), as decided at submission: delivery/client.py and tlspolicy.py obey it.
        "smtputf8": msg["smtputf8"], "tls_request": request_of(msg["tls_required"]),
        "headers": [{"name": k, "value": v} for k, v in _headers_of(raw)],
        "recipients": [{k: r[k] for k in ("public_id", "rcpt", "state", "attempts", "next_attempt_at", "last_reply",
                                          "leased_by", "lease_until")} for r in rcpts],
        "events": [{k: e[k] for k in ("type", "created_at", "rcpt", "details")} for e in evts],
    }, raw)


async def retry(pool: Any, message_id: uuid.UUID) -> int:
    """Make the message's undelivered recipients due now; how many."""
    if await messages_store.get(pool, message_id) is None:
        raise Refused(f"no message {message_id}", kind=Kind.NOT_FOUND)
    async with pool.acquire() as conn, conn.transaction():
        return await queue_store.retry(conn, message_id)


async def bounce(pool: Any, message_id: uuid.UUID) -> int:
    """Give up on the message's queued recipients; how many."""
    if await messages_store.get(pool, message_id) is None:
        raise Refused(f"no message {message_id}", kind=Kind.NOT_FOUND)
    async with pool.acquire() as conn, conn.transaction():
        return await queue_store.bounce(conn, message_id)
