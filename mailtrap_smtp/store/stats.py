"""Daily stats rollups (MAILTRAP_COMPAT §7.2; sent and rejected for the dashboard): maintained by
outbox consumers, read by requests.

A request reads rows in proportion to the days asked (times the distinct domains, streams,
categories and providers of those days), never to the messages sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from .types import Conn, Record


@dataclass(frozen=True)
class Outcome:
    """`count` deliveries, bounces, spam complaints, sent or rejected recipients, as the rollups count them."""

    account_id: int
    day: dt.date
    domain_id: int | None
    stream: str
    category: str | None
    mx: str | None
    kind: str  # one of KINDS
    count: int = 1


DELIVERY, BOUNCE, SPAM, SENT, REJECTED = "delivery", "bounce", "spam", "sent", "rejected"
KINDS = (DELIVERY, BOUNCE, SPAM, SENT, REJECTED)


async def add(conn: Conn, outcomes: Sequence[Outcome]) -> None:
    """Count the outcomes into their days (one statement; grouped first, since one upsert may not
    touch a row twice). The mailbox provider comes from the MX host (`mts_mail_provider`)."""
    await conn.execute(
        """INSERT INTO stats_daily AS s (account_id, day, domain_id, stream, category, provider,
                                         delivery_count, bounce_count, spam_count, sent_count, rejected_count)
           SELECT account_id, day, coalesce(domain_id, 0), stream, coalesce(category, ''),
                  coalesce(mts_mail_provider(mx), ''),
                  coalesce(sum(n) FILTER (WHERE kind = 'delivery'), 0),
                  coalesce(sum(n) FILTER (WHERE kind = 'bounce'), 0),
                  coalesce(sum(n) FILTER (WHERE kind = 'spam'), 0),
                  coalesce(sum(n) FILTER (WHERE kind = 'sent'), 0),
                  coalesce(sum(n) FILTER (WHERE kind = 'rejected'), 0)
             FROM unnest($1::bigint[], $2::date[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::bigint[])
                  AS o(account_id, day, domain_id, stream, category, mx, kind, n)
            GROUP BY 1, 2, 3, 4, 5, 6
            ORDER BY 1, 2, 3, 4, 5, 6
           ON CONFLICT (account_id, day, domain_id, stream, category, provider) DO UPDATE
              SET delivery_count = s.delivery_count + EXCLUDED.delivery_count,
                  bounce_count = s.bounce_count + EXCLUDED.bounce_count,
                  spam_count = s.spam_count + EXCLUDED.spam_count,
                  sent_count = s.sent_count + EXCLUDED.sent_count,
                  rejected_count = s.rejected_count + EXCLUDED.rejected_count""",
        [o.account_id for o in outcomes], [o.day for o in outcomes], [o.domain_id for o in outcomes],
        [o.stream for o in outcomes], [o.category for o in outcomes], [o.mx for o in outcomes],
        [o.kind for o in outcomes], [o.count for o in outcomes],
    )


# The key each grouping returns (a fixed table: no client text reaches the SQL).
GROUPS = {"domain": "domain_id", "category": "category", "provider": "provider", "date": "day"}


@dataclass(frozen=True)
class Range:
    account_id: int
    start: dt.date
    end: dt.date  # inclusive
    domain_ids: Sequence[int] | None = None
    streams: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    providers: Sequence[str] | None = None


async def totals(conn: Conn, r: Range, group: str | None = None) -> list[Record]:
    """Summed counts over the range, as one row or one row per key of `group` (ordered by key)."""
    key = GROUPS[group] if group is not None else None
    select = f"{key} AS key, " if key else ""
    tail = f" GROUP BY {key} ORDER BY {key}" if key else ""
    return list(await conn.fetch(
        f"""SELECT {select}coalesce(sum(delivery_count), 0)::bigint AS delivery_count,
                   coalesce(sum(bounce_count), 0)::bigint AS bounce_count,
                   coalesce(sum(open_count), 0)::bigint AS open_count,
                   coalesce(sum(click_count), 0)::bigint AS click_count,
                   coalesce(sum(spam_count), 0)::bigint AS spam_count,
                   coalesce(sum(sent_count), 0)::bigint AS sent_count,
                   coalesce(sum(rejected_count), 0)::bigint AS rejected_count
              FROM stats_daily
             WHERE account_id = $1 AND day BETWEEN $2 AND $3
               AND ($4::bigint[] IS NULL OR domain_id = ANY($4))
               AND ($5::text[] IS NULL OR stream = ANY($5))
               AND ($6::text[] IS NULL OR category = ANY($6))
               AND ($7::text[] IS NULL OR provider = ANY($7)){tail}""",
        r.account_id, r.start, r.end,
        None if r.domain_ids is None else list(r.domain_ids), None if r.streams is None else list(r.streams),
        None if r.categories is None else list(r.categories), None if r.providers is None else list(r.providers),
    ))
