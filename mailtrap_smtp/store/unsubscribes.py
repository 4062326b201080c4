"""The recipient a one-click unsubscribe token names, and whether it already unsubscribed."""

from __future__ import annotations

import uuid

from ..store.types import Conn, Record


async def lock_recipient(conn: Conn, message_id: uuid.UUID, public_id: uuid.UUID) -> Record | None:
    """The recipient (with its message's account and domain), locked until the end of the caller's
    transaction so that two clicks at once record one event; None if the message is gone."""
    return await conn.fetchrow(
        """SELECT r.id, m.id AS message_id, m.account_id, m.domain_id
             FROM recipients r JOIN messages m ON m.id = r.message_id
            WHERE r.public_id = $2 AND r.message_id = $1
              FOR UPDATE OF r""",
        message_id, public_id,
    )


async def has_unsubscribed(conn: Conn, message_id: uuid.UUID, recipient_id: int, type_: str) -> bool:
    # Filtered on message_id first: the `events_message` index serves it (a message has few events).
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM events WHERE message_id = $1 AND recipient_id = $2 AND type = $3)",
        message_id, recipient_id, type_,
    ))
