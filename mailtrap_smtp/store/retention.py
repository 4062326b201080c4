"""Retention and erasure: deleting stored bodies, logs and one address's data.

Deletes only (no UPDATE of an event ever); the one UPDATE empties a finished message's body and
notes when (the metadata the logs show is kept). A message is finished when none of its recipients
is still queued. Work is done in bounded batches so no statement holds many locks or a long
transaction (which would also hold back the outbox horizon).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .types import Conn

BATCH = 1000

_FINISHED = "NOT EXISTS (SELECT 1 FROM recipients q WHERE q.message_id = m.id AND q.state = 'queued')"


async def delete_raw_batch(conn: Conn, before: dt.datetime) -> int:
    """Empty the bodies of up to BATCH finished messages accepted before `before`."""
    status = await conn.execute(
        f"""UPDATE messages SET raw = ''::bytea, raw_deleted_at = now()
             WHERE id IN (SELECT m.id FROM messages m
                           WHERE m.created_at < $1 AND m.raw_deleted_at IS NULL AND {_FINISHED}
                           LIMIT {BATCH} FOR UPDATE SKIP LOCKED)""",
        before,
    )
    return int(status.rsplit(" ", 1)[1])


async def delete_logs_batch(conn: Conn, before: dt.datetime) -> tuple[int, int]:
    """Delete up to BATCH finished messages accepted before `before` (their recipients and events
    go with them), and up to BATCH events older than `before` that belong to no message."""
    msgs = await conn.execute(
        f"""DELETE FROM messages WHERE id IN (
                SELECT m.id FROM messages m WHERE m.created_at < $1 AND {_FINISHED}
                 LIMIT {BATCH} FOR UPDATE SKIP LOCKED)""",
        before,
    )
    evs = await conn.execute(
        f"""DELETE FROM events WHERE id IN (
                SELECT id FROM events WHERE created_at < $1 AND message_id IS NULL LIMIT {BATCH})""",
        before,
    )
    return int(msgs.rsplit(" ", 1)[1]), int(evs.rsplit(" ", 1)[1])


@dataclass(frozen=True)
class Erased:
    recipients: int        # recipient rows (with their events)
    messages: int          # messages left without recipients, deleted whole
    bodies: int            # bodies emptied: other recipients remain, but the address may be in them
    suppressions: int
    events: int            # events of the remaining recipients that quoted the address


async def erase_recipient(conn: Conn, account_id: int, email: str) -> Erased:
    """Remove `email` (case-insensitive) from every stored message, log and suppression of the
    account, in one transaction (`conn` is a pool). A message it shared with other recipients keeps
    its metadata for them, but its body (which may name the address in its header) is emptied."""
    async with conn.acquire() as c, c.transaction():
        shared = await c.fetch(
            """SELECT DISTINCT r.message_id FROM recipients r JOIN messages m ON m.id = r.message_id
                WHERE m.account_id = $1 AND lower(r.rcpt) = lower($2)""",
            account_id, email,
        )
        ids = [r["message_id"] for r in shared]
        n_rcpt = await c.execute(
            "DELETE FROM recipients WHERE message_id = ANY($1::uuid[]) AND lower(rcpt) = lower($2)", ids, email)
        n_msg = await c.execute(
            """DELETE FROM messages m WHERE m.id = ANY($1::uuid[])
                  AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id)""", ids)
        n_raw = await c.execute(
            """UPDATE messages SET raw = ''::bytea, raw_deleted_at = coalesce(raw_deleted_at, now())
                WHERE id = ANY($1::uuid[]) AND raw <> ''::bytea""", ids)
        # The copies a suppression keeps of the message that caused it go with it.
        n_sup = await c.execute(
            "DELETE FROM suppressions WHERE account_id = $1 AND lower(email) = lower($2)", account_id, email)
        # Events of other recipients of a shared message may quote the address (a bounce text): gone too.
        n_ev = await c.execute(
            """DELETE FROM events WHERE message_id = ANY($1::uuid[])
                  AND position(lower($2) IN lower(details::text)) > 0""",
            ids, email)
    return Erased(*(int(s.rsplit(" ", 1)[1]) for s in (n_rcpt, n_msg, n_raw, n_sup, n_ev)))
