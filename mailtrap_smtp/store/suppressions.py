"""The suppressions table: addresses a sending domain does not deliver to (MAILTRAP_COMPAT §6).

The submission path does not call this module: its lookup is folded into the accepting statement
(`messages._ACCEPT_SQL`), so a suppressed recipient costs no extra round trip.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .types import Conn, Record

# What every read returns: the row and the name of its domain (the object's `domain_name`).
_COLUMNS = "s.*, d.name AS domain_name"


@dataclass(frozen=True)
class NewSuppression:
    email: str
    domain_id: int
    sending_stream: str
    type: str


async def add_many(conn: Conn, account_id: int, items: Sequence[NewSuppression]) -> list[Record]:
    """Insert the entries in one statement; an entry that already exists is returned as it is.

    Only domains of `account_id` are accepted (a foreign `domain_id` inserts nothing and is absent
    from the result). The result follows the order of `items`, which must not repeat an entry.
    New rows come from RETURNING and existing ones from the statement's snapshot, which does not
    yet see the rows the statement itself inserts: together, every entry once.
    """
    rows = await conn.fetch(
        f"""WITH i AS (
                SELECT * FROM unnest($2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[])
                    WITH ORDINALITY AS i(id, email, domain_id, sending_stream, type, ord)),
            ins AS (
                INSERT INTO suppressions AS s (id, account_id, domain_id, email, sending_stream, type)
                SELECT i.id, $1, i.domain_id, i.email, i.sending_stream, i.type
                  FROM i JOIN sending_domains d ON d.id = i.domain_id AND d.account_id = $1
                 ORDER BY i.ord
                ON CONFLICT (domain_id, lower(email), sending_stream) DO NOTHING
                RETURNING s.*)
            SELECT * FROM (
                SELECT {_COLUMNS}, i.ord FROM ins s JOIN i ON i.id = s.id JOIN sending_domains d ON d.id = s.domain_id
                UNION ALL
                SELECT {_COLUMNS}, i.ord FROM i
                  JOIN suppressions s ON s.domain_id = i.domain_id AND lower(s.email) = lower(i.email)
                                     AND s.sending_stream = i.sending_stream AND s.account_id = $1
                  JOIN sending_domains d ON d.id = s.domain_id) u
             ORDER BY ord""",
        account_id, [uuid.uuid4() for _ in items], [i.email for i in items], [i.domain_id for i in items],
        [i.sending_stream for i in items], [i.type for i in items],
    )
    return list(rows)


async def search(conn: Conn, account_id: int, *, email: str | None = None,
                 start_time: dt.datetime | None = None, end_time: dt.datetime | None = None,
                 after: uuid.UUID | None = None, limit: int = 1000,
                 domain_ids: Sequence[int] | None = None) -> list[Record]:
    """The account's suppressions, oldest first; `after` is the cursor (`last_id` of §6).

    `email` matches exactly, ignoring case; the time bounds are inclusive.
    """
    return list(await conn.fetch(
        f"""SELECT {_COLUMNS} FROM suppressions s JOIN sending_domains d ON d.id = s.domain_id
             WHERE s.account_id = $1
               AND ($2::text IS NULL OR lower(s.email) = lower($2))
               AND ($3::timestamptz IS NULL OR s.created_at >= $3)
               AND ($4::timestamptz IS NULL OR s.created_at <= $4)
               AND ($5::uuid IS NULL OR (s.created_at, s.id) >
                    (SELECT created_at, id FROM suppressions WHERE id = $5 AND account_id = $1))
               AND ($7::bigint[] IS NULL OR s.domain_id = ANY($7))
             ORDER BY s.created_at, s.id
             LIMIT $6""",
        account_id, email, start_time, end_time, after, limit, None if domain_ids is None else list(domain_ids),
    ))


async def domain_of(conn: Conn, account_id: int, suppression_id: uuid.UUID) -> int | None:
    value = await conn.fetchval("SELECT domain_id FROM suppressions WHERE id = $2 AND account_id = $1",
                                account_id, suppression_id)
    return None if value is None else int(value)


async def delete(conn: Conn, account_id: int, suppression_id: uuid.UUID) -> Record | None:
    """Remove one suppression of the account; the row as it was, or None if there is none."""
    return await conn.fetchrow(
        f"""WITH s AS (DELETE FROM suppressions WHERE id = $2 AND account_id = $1 RETURNING *)
            SELECT {_COLUMNS} FROM s JOIN sending_domains d ON d.id = s.domain_id""",
        account_id, suppression_id,
    )


@dataclass(frozen=True)
class AutoEntry:
    """A suppression an event asks for (an outbox consumer's input): a recipient and why."""

    recipient_id: int
    email: str                   # the recipient in `mailbox.suppression_form`
    type: str                    # 'hard bounce', 'spam complaint' or 'unsubscription'
    bounce_category: str | None  # Mailtrap's (core/event_names.py), for a bounce
    esp_response: str | None
    mx: str | None


async def add_automatic(conn: Conn, entries: Sequence[AutoEntry]) -> int:
    """A suppression per entry, for its message's domain and stream, with the copy of the message's
    facts that the Suppression object shows; existing entries are kept.

    Returns the number of suppressions created. A message without a sending domain has none.
    """
    status = await conn.execute(
        """INSERT INTO suppressions (id, account_id, domain_id, email, sending_stream, type, message_id,
                                     message_bounce_category, message_category, message_client_ip,
                                     message_created_at, message_esp_response, message_recipient_mx_name,
                                     message_sender_email, message_subject)
           SELECT gen_random_uuid(), m.account_id, m.domain_id, b.email, m.stream, b.type, m.id,
                  b.category, m.category, host(m.client_ip), m.created_at, b.response, b.mx,
                  coalesce(m.header_from, m.mail_from), m.subject
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                  WITH ORDINALITY AS b(recipient_id, type, category, response, mx, email, ord)
             JOIN recipients r ON r.id = b.recipient_id
             JOIN messages m ON m.id = r.message_id
            WHERE m.domain_id IS NOT NULL
            ORDER BY b.ord
           ON CONFLICT (domain_id, lower(email), sending_stream) DO NOTHING""",
        [e.recipient_id for e in entries], [e.type for e in entries], [e.bounce_category for e in entries],
        [None if e.esp_response is None else e.esp_response[:1000] for e in entries], [e.mx for e in entries],
        [e.email for e in entries],
    )
    return int(status.rsplit(" ", 1)[1])
