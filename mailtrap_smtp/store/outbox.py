"""Outbox cursors: the durable position, lease and retry state of each consumer of the events table.

A position is `(xid, id)` of the last event done, compared in that order; only events whose
transaction id is below `pg_snapshot_xmin(pg_current_snapshot())` are ever read (see
`mailtrap_smtp/outbox.py` for why). Every statement takes the clock as `now` and uses
`COALESCE(now, now())`, so tests can move time without sleeping.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .types import Conn, Record

# The horizon: every transaction with a smaller xid has ended, so no event below it can still appear.
_XMIN = "pg_snapshot_xmin(pg_current_snapshot())"


@dataclass(frozen=True, order=True)
class Position:
    xid: int
    id: int


BEGINNING = Position(0, 0)


@dataclass(frozen=True)
class CursorRow:
    name: str
    kind: str
    position: Position
    failures: int
    lease_owner: str | None


@dataclass(frozen=True)
class EventFilter:
    """Which events a consumer wants; None means "any". Stream and domain come from the message."""

    account_id: int | None = None
    types: Sequence[str] | None = None
    stream: str | None = None
    domain_id: int | None = None


@dataclass(frozen=True)
class OutboxEvent:
    """An event row with what consumers need of its message, recipient and domain."""

    position: Position
    event_id: uuid.UUID
    type: str
    account_id: int | None
    domain_id: int | None
    message_id: uuid.UUID | None
    recipient_id: int | None
    details: dict[str, Any]
    created_at: dt.datetime
    rcpt: str | None
    stream: str | None
    category: str | None
    custom_variables: dict[str, Any] | None
    domain_name: str | None
    # The id the send API returned for this recipient (email logs use it too); webhooks name the
    # message by it so that an app can match an event to its send (COMPAT §5.2).
    recipient_public_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Page:
    events: list[OutboxEvent]
    end: Position   # where the cursor may move once these events are done (past skipped ones too)
    full: bool      # the limit was reached: more may follow at once


def _row(r: Record) -> CursorRow:
    return CursorRow(r["name"], r["kind"], Position(int(r["pos_xid"]), r["pos_id"]), r["failures"],
                     r["lease_owner"])


_CURSOR_COLS = "name, kind, pos_xid::text::bigint AS pos_xid, pos_id, failures, lease_owner"


async def ensure(conn: Conn, name: str, kind: str, *, from_beginning: bool) -> None:
    """Create the cursor if missing: at the start of the log, or at its present horizon.

    The horizon start `(xmin, 0)` takes every event of a transaction still running or yet to come,
    and none that committed before the oldest running one began; a few recent events may be
    included, none that happens after this call is missed.
    """
    await conn.execute(
        f"""INSERT INTO outbox_cursors (name, kind, pos_xid, pos_id)
            VALUES ($1, $2, CASE WHEN $3 THEN '0'::xid8 ELSE {_XMIN} END, 0)
            ON CONFLICT (name) DO NOTHING""",
        name, kind, from_beginning,
    )


async def delete(conn: Conn, name: str) -> None:
    await conn.execute("DELETE FROM outbox_cursors WHERE name = $1", name)


async def get(conn: Conn, name: str) -> CursorRow | None:
    r = await conn.fetchrow(f"SELECT {_CURSOR_COLS} FROM outbox_cursors WHERE name = $1", name)
    return _row(r) if r else None


async def claim(conn: Conn, kinds: Sequence[str], owner: str, limit: int, lease_seconds: float,
                now: dt.datetime | None = None) -> list[CursorRow]:
    """Lease up to `limit` cursors of `kinds` that have events to read and are due (`not_before`);
    SKIP LOCKED, so processes and nodes split them."""
    rows = await conn.fetch(
        f"""WITH h AS (SELECT {_XMIN} AS xmin, COALESCE($1::timestamptz, now()) AS now),
            c AS (
                SELECT c.name FROM outbox_cursors c, h
                 WHERE c.kind = ANY($2::text[]) AND NOT c.paused
                   AND (c.lease_until IS NULL OR c.lease_until <= h.now)
                   AND EXISTS (SELECT 1 FROM events e
                                WHERE (e.xid, e.id) > (c.pos_xid, c.pos_id) AND e.xid < h.xmin)
                   AND (c.not_before IS NULL OR c.not_before <= h.now)
                 ORDER BY c.not_before NULLS FIRST, c.name
                 LIMIT $4
                 FOR UPDATE OF c SKIP LOCKED)
            UPDATE outbox_cursors u
               SET lease_owner = $3, lease_until = h.now + make_interval(secs => $5)
              FROM c, h WHERE u.name = c.name
            RETURNING u.name, u.kind, u.pos_xid::text::bigint AS pos_xid, u.pos_id, u.failures, u.lease_owner""",
        now, list(kinds), owner, limit, float(lease_seconds),
    )
    return [_row(r) for r in rows]


async def renew(conn: Conn, name: str, owner: str, lease_seconds: float, now: dt.datetime | None = None) -> bool:
    """Extend our lease; False if it is no longer ours (it ran out and another process took it)."""
    status = await conn.execute(
        """UPDATE outbox_cursors SET lease_until = COALESCE($3::timestamptz, now()) + make_interval(secs => $4)
            WHERE name = $1 AND lease_owner = $2 AND lease_until > COALESCE($3::timestamptz, now())""",
        name, owner, now, float(lease_seconds),
    )
    return bool(status == "UPDATE 1")


async def advance(conn: Conn, name: str, owner: str, to: Position, now: dt.datetime | None = None) -> bool:
    """Move the cursor forward (never back) and clear its failures, if the lease is still ours.

    Called in the consumer's own transaction next to its effect: a False return must roll both back.
    """
    status = await conn.execute(
        """UPDATE outbox_cursors
              SET pos_xid = GREATEST(pos_xid, $3::text::xid8),
                  pos_id = CASE WHEN (pos_xid, pos_id) < ($3::text::xid8, $4) THEN $4 ELSE pos_id END,
                  failures = 0, last_error = NULL, not_before = NULL,
                  updated_at = COALESCE($5::timestamptz, now())
            WHERE name = $1 AND lease_owner = $2 AND lease_until > COALESCE($5::timestamptz, now())""",
        name, owner, str(to.xid), to.id, now,
    )
    return bool(status == "UPDATE 1")


async def release(conn: Conn, name: str, owner: str, *, not_before: dt.datetime | None = None,
                  failed: str | None = None, now: dt.datetime | None = None) -> int | None:
    """Give the lease back, optionally not to be claimed before `not_before`.

    `failed` (an error text) counts one more consecutive failure; returns the failure count, or
    None if the lease was no longer ours.
    """
    return await conn.fetchval(  # type: ignore[no-any-return]
        """UPDATE outbox_cursors
              SET lease_owner = NULL, lease_until = NULL, not_before = $3,
                  failures = failures + CASE WHEN $4::text IS NULL THEN 0 ELSE 1 END,
                  last_error = COALESCE($4, last_error), updated_at = COALESCE($5::timestamptz, now())
            WHERE name = $1 AND lease_owner = $2
        RETURNING failures""",
        name, owner, not_before, failed, now,
    )


async def release_all(conn: Conn, owner: str) -> None:
    """A stopping process gives back every lease it holds (they are due again at once)."""
    await conn.execute(
        "UPDATE outbox_cursors SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1", owner)


async def set_paused(conn: Conn, name: str, paused: bool) -> None:
    await conn.execute(
        """UPDATE outbox_cursors SET paused = $2, failures = CASE WHEN $2 THEN failures ELSE 0 END,
                  not_before = CASE WHEN $2 THEN not_before END WHERE name = $1""",
        name, paused)


async def clear_retry(conn: Conn, name: str) -> None:
    """Forget the failures and the retry time: the cursor is due now."""
    await conn.execute("UPDATE outbox_cursors SET failures = 0, not_before = NULL WHERE name = $1", name)


async def reposition(conn: Conn, name: str, *, event_id: uuid.UUID | None = None,
                     since: dt.datetime | None = None, account_id: int | None = None) -> Position | None:
    """Move the cursor back so the next read starts at `event_id`, or at the first event since `since`
    (of `account_id`'s events, if given).

    Returns the new position, or None if no such event exists (the cursor is left as it was). The
    lease is taken away too: a process still working on a batch read before the change then fails
    its `advance` (lease lost) instead of moving the cursor forward again over the replay.
    """
    if event_id is not None:
        row = await conn.fetchrow(
            """SELECT xid::text::bigint AS xid, id FROM events
                WHERE event_id = $1 AND ($2::bigint IS NULL OR account_id = $2)""", event_id, account_id)
    else:
        row = await conn.fetchrow(
            """SELECT xid::text::bigint AS xid, id FROM events
                WHERE created_at >= $1 AND ($2::bigint IS NULL OR account_id = $2)
                ORDER BY xid, id LIMIT 1""", since, account_id)
    if row is None:
        return None
    pos = Position(row["xid"], row["id"] - 1)
    await conn.execute(
        """UPDATE outbox_cursors SET pos_xid = $2::text::xid8, pos_id = $3, failures = 0, not_before = NULL,
                  last_error = NULL, lease_owner = NULL, lease_until = NULL WHERE name = $1""",
        name, str(pos.xid), pos.id)
    return pos


_READ_SQL = f"""
WITH h AS (SELECT {_XMIN} AS xmin),
-- The page is chosen on events alone (the stream through an EXISTS); the joins for the payload run
-- on the page's rows only, after the LIMIT, whatever plan the statistics of the moment suggest.
ids AS (
    SELECT e.id FROM h, events e
     WHERE (e.xid, e.id) > ($1::text::xid8, $2) AND e.xid < h.xmin
       AND ($4::bigint IS NULL OR e.account_id = $4)
       AND ($5::text[] IS NULL OR e.type = ANY($5))
       AND ($6::text IS NULL OR EXISTS (SELECT 1 FROM messages sm WHERE sm.id = e.message_id AND sm.stream = $6))
       AND ($7::bigint IS NULL OR e.domain_id = $7)
     ORDER BY e.xid, e.id
     LIMIT $3
),
page AS (
    SELECT e.xid::text::bigint AS pxid, e.id, e.event_id, e.type, e.account_id, e.domain_id, e.message_id,
           e.recipient_id, e.details, e.created_at, r.rcpt, r.public_id, m.stream, m.category, m.custom_variables,
           d.name AS domain_name
      FROM ids JOIN events e ON e.id = ids.id
      LEFT JOIN messages m ON m.id = e.message_id
      LEFT JOIN recipients r ON r.id = e.recipient_id
      LEFT JOIN sending_domains d ON d.id = e.domain_id
)
SELECT p.*, NULL::bigint AS hxid, NULL::bigint AS hid FROM page p
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       x.xid::text::bigint, x.id
  FROM (SELECT e.xid, e.id FROM h, events e WHERE e.xid < h.xmin ORDER BY e.xid DESC, e.id DESC LIMIT 1) x
"""


async def read(conn: Conn, after: Position, limit: int, flt: EventFilter = EventFilter()) -> Page:
    """The next events after `after` that match `flt`, in (xid, id) order, and how far the scan got.

    One statement, so the page and the horizon come from one snapshot: if the page is not full,
    every event between `after` and the horizon was looked at, and the cursor may move there even
    though none of the skipped events matched.
    """
    rows = await conn.fetch(
        _READ_SQL, str(after.xid), after.id, limit, flt.account_id,
        list(flt.types) if flt.types is not None else None, flt.stream, flt.domain_id,
    )
    events: list[OutboxEvent] = []
    horizon = after
    for r in rows:
        if r["id"] is None:
            horizon = max(after, Position(r["hxid"], r["hid"]))
            continue
        events.append(OutboxEvent(
            Position(r["pxid"], r["id"]), r["event_id"], r["type"], r["account_id"], r["domain_id"],
            r["message_id"], r["recipient_id"], json.loads(r["details"]), r["created_at"], r["rcpt"],
            r["stream"], r["category"],
            json.loads(r["custom_variables"]) if r["custom_variables"] is not None else None, r["domain_name"],
            r["public_id"],
        ))
    events.sort(key=lambda e: e.position)  # the joins after the LIMIT keep no order
    full = len(events) >= limit
    end = events[-1].position if full else max(horizon, events[-1].position if events else after)
    return Page(events, end, full)


async def notify(conn: Conn, channel: str) -> None:
    """NOTIFY the listeners of `channel` (PostgreSQL delivers it when the surrounding transaction commits)."""
    await conn.execute("SELECT pg_notify($1, '')", channel)
