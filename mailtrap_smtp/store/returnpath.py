"""The queries of the return path: which host a domain's bounces go to, and whom a VERP tag names."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from .types import Conn, Record


async def return_path_hosts(conn: Conn, domain_ids: Iterable[int]) -> dict[int, str]:
    """`<token>.<domain>` (the ownership CNAME) of each domain whose DNS is managed.

    A domain added with --skip-dns-verification has no such CNAME published: a return path there
    would not resolve and remote MTAs refuse senders whose domain does not exist.
    """
    ids = sorted(set(domain_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        """SELECT id, verification_token || '.' || name AS host FROM sending_domains
            WHERE id = ANY($1::bigint[]) AND NOT dns_skipped""",
        ids,
    )
    return {int(r["id"]): str(r["host"]) for r in rows}


async def lock_tagged_recipient(conn: Conn, message_id: uuid.UUID, recipient_id: int) -> Record | None:
    """The recipient a valid tag names, with its message's account and domain (None if deleted).

    Locked until the end of the caller's transaction, so that two copies of one report arriving at
    once (a remote MTA retrying after a lost 250) are recorded once.
    """
    return await conn.fetchrow(
        """SELECT r.id, r.rcpt, r.state, m.id AS message_id, m.account_id, m.domain_id
             FROM recipients r JOIN messages m ON m.id = r.message_id
            WHERE r.id = $2 AND r.message_id = $1
              FOR UPDATE OF r""",
        message_id, recipient_id,
    )


async def has_feedback(conn: Conn, message_id: uuid.UUID, recipient_id: int, type_: str,
                       fingerprint: str) -> bool:
    """Whether this report (same event type, same fingerprint) is already recorded for the recipient.

    Filtered on message_id first: the `events_message` index serves it (a message has few events).
    """
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM events
                           WHERE message_id = $1 AND recipient_id = $2 AND type = $3
                             AND details->>'source' = 'inbound' AND details->>'fingerprint' = $4)""",
        message_id, recipient_id, type_, fingerprint,
    ))
