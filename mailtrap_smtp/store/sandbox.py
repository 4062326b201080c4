"""Sandbox inboxes and the messages kept in them (tables `sandbox_inboxes`, `sandbox_messages`);
every query is scoped to the account."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from .types import Conn, Record


class InboxExists(Exception):
    """The account already has an inbox of that name."""


async def create_inbox(conn: Conn, account_id: int, name: str) -> Record:
    try:
        row = await conn.fetchrow(
            "INSERT INTO sandbox_inboxes (account_id, name) VALUES ($1, $2) RETURNING *, 0::bigint AS messages",
            account_id, name,
        )
    except asyncpg.UniqueViolationError:
        raise InboxExists(name) from None
    assert row is not None
    return row


_INBOX = """SELECT i.*, (SELECT count(*) FROM sandbox_messages m WHERE m.inbox_id = i.id) AS messages
              FROM sandbox_inboxes i WHERE i.account_id = $1"""


async def list_inboxes(conn: Conn, account_id: int) -> list[Record]:
    return list(await conn.fetch(_INBOX + " ORDER BY i.id", account_id))


async def get_inbox(conn: Conn, account_id: int, inbox_id: int) -> Record | None:
    return await conn.fetchrow(_INBOX + " AND i.id = $2", account_id, inbox_id)


async def store_message(conn: Conn, account_id: int, inbox_id: int, message_id: uuid.UUID, *,
                        credential_id: int | None, mail_from: str, recipients: Sequence[str],
                        header_from: str | None, subject: str | None, raw: bytes) -> bool:
    """Keep the message in the inbox, in one statement; False when the inbox is not the account's."""
    stored = await conn.fetchval(
        """INSERT INTO sandbox_messages (id, inbox_id, credential_id, mail_from, recipients, header_from,
                                         subject, size, raw)
           SELECT $3, i.id, $4, $5, $6, $7, $8, $9, $10 FROM sandbox_inboxes i
            WHERE i.account_id = $1 AND i.id = $2
           RETURNING id""",
        account_id, inbox_id, message_id, credential_id, mail_from, list(recipients), header_from, subject,
        len(raw), raw,
    )
    return stored is not None


async def list_messages(conn: Conn, account_id: int, inbox_id: int, limit: int) -> list[Record]:
    """The inbox's messages, newest first, without their bytes."""
    return list(await conn.fetch(
        """SELECT m.id, m.mail_from, m.recipients, m.header_from, m.subject, m.size, m.created_at
             FROM sandbox_messages m JOIN sandbox_inboxes i ON i.id = m.inbox_id
            WHERE i.account_id = $1 AND i.id = $2
            ORDER BY m.created_at DESC, m.id LIMIT $3""",
        account_id, inbox_id, limit,
    ))


async def get_message(conn: Conn, account_id: int, message_id: uuid.UUID) -> Record | None:
    """One message with its bytes (`raw`) and its inbox id."""
    return await conn.fetchrow(
        """SELECT m.*, i.name AS inbox FROM sandbox_messages m JOIN sandbox_inboxes i ON i.id = m.inbox_id
            WHERE i.account_id = $1 AND m.id = $2""",
        account_id, message_id,
    )
