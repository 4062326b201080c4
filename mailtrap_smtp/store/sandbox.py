"""Sandbox inboxes and the messages kept in them (never delivered)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from .types import Conn, Record


async def create_inbox(conn: Conn, account_id: int, name: str) -> Record | None:
    """The new inbox, or None if the account already has one of that name."""
    return await conn.fetchrow(
        """INSERT INTO sandbox_inboxes (account_id, name) VALUES ($1, $2)
           ON CONFLICT (account_id, name) DO NOTHING RETURNING *""",
        account_id, name,
    )


async def list_inboxes(conn: Conn, account_id: int | None = None) -> list[Record]:
    return list(await conn.fetch(
        """SELECT i.*, a.name AS account,
                  (SELECT count(*) FROM sandbox_messages m WHERE m.inbox_id = i.id) AS messages
             FROM sandbox_inboxes i JOIN accounts a ON a.id = i.account_id
            WHERE $1::bigint IS NULL OR i.account_id = $1 ORDER BY a.name, i.name""",
        account_id,
    ))


async def get_inbox(conn: Conn, account_id: int, inbox_id: int) -> Record | None:
    return await conn.fetchrow("SELECT * FROM sandbox_inboxes WHERE id = $1 AND account_id = $2",
                               inbox_id, account_id)


async def add_messages(conn: Conn, inbox_id: int,
                       messages: Sequence[tuple[uuid.UUID, str, Sequence[str], str | None, bytes]]) -> None:
    """(id, mail_from, recipients, subject, raw) each; one statement, durable when it returns."""
    await conn.executemany(
        """INSERT INTO sandbox_messages (id, inbox_id, mail_from, recipients, subject, size, raw)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        [(mid, inbox_id, frm, list(rcpts), subject, len(raw), raw) for mid, frm, rcpts, subject, raw in messages],
    )


async def list_messages(conn: Conn, inbox_id: int, limit: int = 100) -> list[Record]:
    return list(await conn.fetch(
        """SELECT id, inbox_id, mail_from, recipients, subject, size, created_at FROM sandbox_messages
            WHERE inbox_id = $1 ORDER BY created_at DESC, id LIMIT $2""",
        inbox_id, limit,
    ))


async def get_message(conn: Conn, message_id: uuid.UUID) -> Record | None:
    return await conn.fetchrow(
        """SELECT m.*, i.account_id FROM sandbox_messages m JOIN sandbox_inboxes i ON i.id = m.inbox_id
            WHERE m.id = $1""",
        message_id,
    )
