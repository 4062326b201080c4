"""Use case: a one-click unsubscribe (RFC 8058) becomes an `unsubscribe` event of the recipient its
token names; the auto-suppression outbox consumer turns that event into an `unsubscription`
suppression (consumers/auto_suppressions.py), as it does for bounces and complaints.

A token whose MAC is wrong, or that names a message no longer stored, changes nothing. A second
POST for the same recipient (a retry, a second click) records nothing more and is still answered
as a success: the recipient is unsubscribed.
"""

from __future__ import annotations

from ..delivery import verp
from ..events import Event
from ..store import events, unsubscribes
from ..store.types import Conn


def valid(key: bytes, token: str) -> bool:
    """Whether the token's MAC is valid (the confirmation page needs no database)."""
    return verp.check_unsubscribe_token(key, token) is not None


async def one_click(pool: Conn, key: bytes, token: str) -> bool:
    """Record the unsubscribe the token asks for; False when the token names no stored recipient."""
    named = verp.check_unsubscribe_token(key, token)
    if named is None:
        return False
    message_id, public_id = named
    async with pool.acquire() as conn, conn.transaction():
        row = await unsubscribes.lock_recipient(conn, message_id, public_id)
        if row is None:
            return False
        if not await unsubscribes.has_unsubscribed(conn, message_id, row["id"], str(Event.UNSUBSCRIBE)):
            await events.record(conn, Event.UNSUBSCRIBE, account_id=row["account_id"], domain_id=row["domain_id"],
                                message_id=message_id, recipient_id=row["id"], details={"source": "one_click"})
    return True
