"""Messages and their recipients: the durable acceptance and the queue listings."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..events import Event
from .types import Conn, Record

NOTIFY_CHANNEL = "mailtrap_smtp_queue"
log = logging.getLogger(__name__)


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


# One statement, so acceptance costs one round trip and its quota row lock is held only for the
# statement's own duration and the commit, never across client round trips (the benchmark showed
# sessions queueing on that lock). The quota charge is an upsert whose condition PostgreSQL
# re-checks on the locked row, so concurrent sessions, processes and nodes can never pass the limit;
# when it refuses, every later CTE sees no row and nothing at all is written.
_ACCEPT_SQL = """
WITH charge AS (
    INSERT INTO usage AS u (account_id, period_start, used)
    SELECT a.id, $16, $17 FROM accounts a WHERE a.id = $2 AND $17 <= a.monthly_limit
    ON CONFLICT (account_id, period_start) DO UPDATE SET used = u.used + EXCLUDED.used
        WHERE u.used + EXCLUDED.used <= (SELECT monthly_limit FROM accounts WHERE id = u.account_id)
    RETURNING u.used
), msg AS (
    INSERT INTO messages (id, account_id, credential_id, domain_id, stream, mail_from, header_from,
                          subject, message_id_header, category, custom_variables, client_ip, size, raw)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::inet, $13, $14 FROM charge
    RETURNING id
), rcpt AS (
    INSERT INTO recipients (message_id, rcpt, domain)
    SELECT msg.id, r, lower(split_part(r, '@', -1)) FROM msg, unnest($15::text[]) AS r
), ev AS (
    INSERT INTO events (event_id, type, account_id, domain_id, message_id, details)
    SELECT $18, $19, $2, $4, msg.id, $20::jsonb FROM msg
)
SELECT count(*) FROM msg
"""


async def accept(conn: Conn, msg: NewMessage, period_start: dt.date) -> None:
    """Store the message, one row per recipient, charge the quota and record the Reception event.

    A single statement: atomic on its own (durable when it returns, outside a transaction) or part
    of the caller's transaction. Raises QuotaExceeded, having written nothing, when the account's
    monthly limit would be passed. Workers are woken separately (`QueueNotifier`), after commit.
    """
    details = {"recipients": len(msg.recipients), "size": len(msg.raw), "stream": msg.stream}
    stored = await conn.fetchval(
        _ACCEPT_SQL,
        msg.id, msg.account_id, msg.credential_id, msg.domain_id, msg.stream, msg.mail_from,
        msg.header_from, msg.subject, msg.message_id_header, msg.category,
        json.dumps(msg.custom_variables) if msg.custom_variables is not None else None,
        msg.client_ip, len(msg.raw), msg.raw, list(msg.recipients), period_start, len(msg.recipients),
        uuid.uuid4(), str(Event.RECEPTION), json.dumps(details),
    )
    if not stored:
        raise QuotaExceeded


async def notify_queue(conn: Conn) -> None:
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")


class QueueNotifier:
    """Wakes delivery workers after acceptances, coalescing a burst into one NOTIFY.

    A NOTIFY inside the accepting transaction would serialise every commit on PostgreSQL's
    notification queue lock; sent afterwards and coalesced, it costs one round trip per burst. A
    NOTIFY lost to a crash between commit and send only delays delivery until the workers' poll.
    """

    def __init__(self, pool: Conn) -> None:
        self._pool = pool
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self._pending.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending.is_set():
            self._pending.clear()
            try:
                await notify_queue(self._pool)
            except Exception:
                log.warning("NOTIFY failed; delivery workers will find the message by polling", exc_info=True)
                return

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task


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
