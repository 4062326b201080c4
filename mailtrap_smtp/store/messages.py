"""Messages and their recipients: the durable acceptance and the queue listings."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..events import Event
from . import events, usage
from .types import Conn, Record

NOTIFY_CHANNEL = "mailtrap_smtp_queue"


@dataclass(frozen=True)
class NewMessage:
    id: uuid.UUID
    account_id: int
    credential_id: int | None
    domain_id: int | None
    stream: str
    mail_from: str
    header_from: str | None
    subject: str | None
    message_id_header: str | None
    category: str | None
    custom_variables: dict[str, Any] | None
    client_ip: str | None
    raw: bytes
    recipients: Sequence[str]


class QuotaExceeded(Exception):
    """The account's monthly limit would be passed; nothing was stored."""


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


async def accept(conn: Conn, msg: NewMessage, period_start: dt.date) -> None:
    """Store the message, one row per recipient, charge the quota and record the Reception event.

    Must run inside a transaction the caller commits: either all of it is durable or none of it.
    The quota charge comes first so that a refused charge costs no writes.
    """
    if not await usage.reserve(conn, msg.account_id, period_start, len(msg.recipients)):
        raise QuotaExceeded
    await conn.execute(
        """INSERT INTO messages (id, account_id, credential_id, domain_id, stream, mail_from, header_from,
                                 subject, message_id_header, category, custom_variables, client_ip,
                                 size, raw)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::inet, $13, $14)""",
        msg.id, msg.account_id, msg.credential_id, msg.domain_id, msg.stream, msg.mail_from,
        msg.header_from, msg.subject, msg.message_id_header, msg.category,
        json.dumps(msg.custom_variables) if msg.custom_variables is not None else None,
        msg.client_ip, len(msg.raw), msg.raw,
    )
    await conn.execute(
        """INSERT INTO recipients (message_id, rcpt, domain)
           SELECT $1, r, lower(split_part(r, '@', -1)) FROM unnest($2::text[]) AS r""",
        msg.id, list(msg.recipients),
    )
    await events.record(
        conn, Event.RECEPTION, account_id=msg.account_id, domain_id=msg.domain_id, message_id=msg.id,
        details={"recipients": len(msg.recipients), "size": len(msg.raw), "stream": msg.stream},
    )
    # Delivered at COMMIT, so workers never wake for a message they cannot see yet.
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")


async def get(conn: Conn, message_id: uuid.UUID) -> Record | None:
    return await conn.fetchrow(
        """SELECT m.*, a.name AS account FROM messages m JOIN accounts a ON a.id = m.account_id
            WHERE m.id = $1""",
        message_id,
    )


async def recipients_of(conn: Conn, message_id: uuid.UUID) -> list[Record]:
    return list(await conn.fetch(
        "SELECT * FROM recipients WHERE message_id = $1 ORDER BY id", message_id
    ))


async def list_queue(conn: Conn, *, state: str | None = None, domain: str | None = None,
                     account: str | None = None, limit: int = 100) -> list[Record]:
    """One row per recipient, newest first; filters are optional."""
    return list(await conn.fetch(
        """SELECT m.id AS message_id, a.name AS account, m.mail_from, r.rcpt, r.state, r.attempts,
                  r.next_attempt_at, r.last_reply, m.created_at, m.size
             FROM recipients r JOIN messages m ON m.id = r.message_id JOIN accounts a ON a.id = m.account_id
            WHERE ($1::text IS NULL OR r.state = $1)
              AND ($2::text IS NULL OR r.domain = lower($2))
              AND ($3::text IS NULL OR a.name = $3)
            ORDER BY m.created_at DESC, r.id
            LIMIT $4""",
        state, domain, account, limit,
    ))
