"""The append-only events table."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..events import Event
from .types import Conn, Record


async def record(conn: Conn, type_: Event, *, account_id: int | None = None, domain_id: int | None = None,
                 message_id: uuid.UUID | None = None, recipient_id: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
    await conn.execute(
        """INSERT INTO events (event_id, type, account_id, domain_id, message_id, recipient_id, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)""",
        uuid.uuid4(), str(type_), account_id, domain_id, message_id, recipient_id,
        json.dumps(details or {}),
    )


async def for_message(conn: Conn, message_id: uuid.UUID) -> list[Record]:
    return list(await conn.fetch(
        """SELECT e.event_id, e.type, e.created_at, e.details, r.rcpt
             FROM events e LEFT JOIN recipients r ON r.id = e.recipient_id
            WHERE e.message_id = $1 ORDER BY e.id""",
        message_id,
    ))


async def for_domain(conn: Conn, domain_id: int, limit: int = 20) -> list[Record]:
    return list(await conn.fetch(
        "SELECT event_id, type, created_at, details FROM events WHERE domain_id = $1 ORDER BY id DESC LIMIT $2",
        domain_id, limit,
    ))
