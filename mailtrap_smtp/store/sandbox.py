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
            """INSERT INTO sandbox_inboxes (account_id, name) VALUES ($1, $2)
               RETURNING *, 0::bigint AS messages, 0::bigint AS unread, NULL::timestamptz AS last_message_at""",
            account_id, name,
        )
    except asyncpg.UniqueViolationError:
        raise InboxExists(name) from None
    assert row is not None
    return row


# An inbox with what its kept messages say of it: how many, how many unread, when the last came.
_INBOX = """SELECT i.*, s.messages, s.unread, s.last_message_at
              FROM sandbox_inboxes i
              CROSS JOIN LATERAL (SELECT count(*) AS messages, count(*) FILTER (WHERE NOT m.is_read) AS unread,
                                         max(m.created_at) AS last_message_at
                                    FROM sandbox_messages m WHERE m.inbox_id = i.id) s
             WHERE i.account_id = $1"""


async def list_inboxes(conn: Conn, account_id: int) -> list[Record]:
    return list(await conn.fetch(_INBOX + " ORDER BY i.id", account_id))


async def get_inbox(conn: Conn, account_id: int, inbox_id: int) -> Record | None:
    return await conn.fetchrow(_INBOX + " AND i.id = $2", account_id, inbox_id)


async def rename_inbox(conn: Conn, account_id: int, inbox_id: int, name: str) -> bool:
    """False when the inbox is not the account's; InboxExists when the name is taken."""
    try:
        status = await conn.execute("UPDATE sandbox_inboxes SET name = $3 WHERE account_id = $1 AND id = $2",
                                    account_id, inbox_id, name)
    except asyncpg.UniqueViolationError:
        raise InboxExists(name) from None
    return bool(status.endswith(" 1"))


async def delete_inbox(conn: Conn, account_id: int, inbox_id: int) -> bool:
    """Delete the inbox and (ON DELETE CASCADE) its messages; False when it is not the account's."""
    status = await conn.execute("DELETE FROM sandbox_inboxes WHERE account_id = $1 AND id = $2", account_id, inbox_id)
    return bool(status.endswith(" 1"))


async def clean_inbox(conn: Conn, account_id: int, inbox_id: int) -> int:
    """Delete every message of the inbox; how many."""
    status = await conn.execute(
        """DELETE FROM sandbox_messages m USING sandbox_inboxes i
            WHERE i.id = m.inbox_id AND i.account_id = $1 AND i.id = $2""",
        account_id, inbox_id,
    )
    return int(status.split()[-1])


async def mark_all_read(conn: Conn, account_id: int, inbox_id: int) -> int:
    """Mark every unread message of the inbox read; how many changed."""
    status = await conn.execute(
        """UPDATE sandbox_messages m SET is_read = true, updated_at = now() FROM sandbox_inboxes i
            WHERE i.id = m.inbox_id AND i.account_id = $1 AND i.id = $2 AND NOT m.is_read""",
        account_id, inbox_id,
    )
    return int(status.split()[-1])


async def store_message(conn: Conn, account_id: int, inbox_id: int, message_id: uuid.UUID, *,
                        credential_id: int | None, mail_from: str, recipients: Sequence[str],
                        header_from: str | None, header_to: str | None, subject: str | None,
                        text_size: int, html_size: int, raw: bytes) -> bool:
    """Keep the message in the inbox, in one statement; False when the inbox is not the account's."""
    stored = await conn.fetchval(
        """INSERT INTO sandbox_messages (id, inbox_id, credential_id, mail_from, recipients, header_from,
                                         subject, size, raw, header_to, text_size, html_size)
           SELECT $3, i.id, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM sandbox_inboxes i
            WHERE i.account_id = $1 AND i.id = $2
           RETURNING id""",
        account_id, inbox_id, message_id, credential_id, mail_from, list(recipients), header_from, subject,
        len(raw), raw, header_to, text_size, html_size,
    )
    return stored is not None


# Everything of a message but its bytes.
_COLUMNS = """m.id, m.number, m.inbox_id, m.mail_from, m.recipients, m.header_from, m.header_to, m.subject,
              m.size, m.text_size, m.html_size, m.is_read, m.created_at, coalesce(m.updated_at, m.created_at)
              AS updated_at"""


async def list_messages(conn: Conn, account_id: int, inbox_id: int, limit: int) -> list[Record]:
    """The inbox's messages, newest first, without their bytes."""
    return list(await conn.fetch(
        f"""SELECT {_COLUMNS}
             FROM sandbox_messages m JOIN sandbox_inboxes i ON i.id = m.inbox_id
            WHERE i.account_id = $1 AND i.id = $2
            ORDER BY m.created_at DESC, m.id LIMIT $3""",
        account_id, inbox_id, limit,
    ))


async def page_messages(conn: Conn, account_id: int, inbox_id: int, *, before: int | None, pattern: str | None,
                        offset: int, limit: int) -> list[Record]:
    """Newest first by number: those numbered below `before`, matching the ILIKE `pattern` in the
    subject, the To header or a recipient, from `offset`; without their bytes."""
    return list(await conn.fetch(
        f"""SELECT {_COLUMNS}
             FROM sandbox_messages m JOIN sandbox_inboxes i ON i.id = m.inbox_id
            WHERE i.account_id = $1 AND i.id = $2 AND ($3::bigint IS NULL OR m.number < $3)
              AND ($4::text IS NULL OR m.subject ILIKE $4 OR m.header_to ILIKE $4
                   OR array_to_string(m.recipients, ' ') ILIKE $4)
            ORDER BY m.number DESC OFFSET $5 LIMIT $6""",
        account_id, inbox_id, before, pattern, offset, limit,
    ))


async def numbered_message(conn: Conn, account_id: int, inbox_id: int, number: int) -> Record | None:
    """One message of the inbox by its number, with its bytes (`raw`)."""
    return await conn.fetchrow(
        f"""SELECT {_COLUMNS}, m.raw FROM sandbox_messages m JOIN sandbox_inboxes i ON i.id = m.inbox_id
            WHERE i.account_id = $1 AND i.id = $2 AND m.number = $3""",
        account_id, inbox_id, number,
    )


async def mark_read(conn: Conn, account_id: int, inbox_id: int, number: int, is_read: bool) -> bool:
    status = await conn.execute(
        """UPDATE sandbox_messages m SET is_read = $4, updated_at = now() FROM sandbox_inboxes i
            WHERE i.id = m.inbox_id AND i.account_id = $1 AND i.id = $2 AND m.number = $3""",
        account_id, inbox_id, number, is_read,
    )
    return bool(status.endswith(" 1"))


async def delete_message(conn: Conn, account_id: int, inbox_id: int, number: int) -> bool:
    status = await conn.execute(
        """DELETE FROM sandbox_messages m USING sandbox_inboxes i
            WHERE i.id = m.inbox_id AND i.account_id = $1 AND i.id = $2 AND m.number = $3""",
        account_id, inbox_id, number,
    )
    return bool(status.endswith(" 1"))


async def get_message(conn: Conn, account_id: int, message_id: uuid.UUID) -> Record | None:
    """One message with its bytes (`raw`) and its inbox id."""
    return await conn.fetchrow(
        """SELECT m.*, i.name AS inbox FROM sandbox_messages m JOIN sandbox_inboxes i ON i.id = m.inbox_id
            WHERE i.account_id = $1 AND m.id = $2""",
        account_id, message_id,
    )
