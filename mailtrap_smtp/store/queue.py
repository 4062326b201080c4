"""The delivery queue: claiming due recipients under a lease, recording outcomes, operator actions.

All SQL of delivery lives here. Every state change of a recipient is written in the same
transaction as the event that records it (DESIGN §3), and every function that changes a state
says which rows it may touch, so that a late worker can never overwrite a newer decision:

* a claim sets `leased_by` and moves `next_attempt_at` (and `lease_until`) to the end of the lease,
  so a crashed worker's recipients simply become due again when the lease runs out: there is no
  separate "stale lease" sweep, and the partial index `recipients_due` serves both cases;
* final outcomes observed at the remote end (delivered, bounced) apply to any still-queued recipient,
  whoever holds the lease now: they are facts about the world (at-least-once delivery);
* deferrals (transient failures) and releases apply only while we still hold the lease, so they
  never postpone a recipient another worker has taken over.

Times: every function takes an optional `now` (defaults to the database clock) so tests can move
time forward instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..events import Event
from . import events
from .messages import NOTIFY_CHANNEL
from .types import Conn

# The moment a recipient's queue lifetime starts: acceptance, or the latest operator retry (so that
# `queue retry` of an expired message gives it a new lifetime rather than expiring it on sight).
# Computed in the statements below as `b.born` (a LATERAL subquery over the message's events).

# Every statement below takes the clock as $1 and uses COALESCE($1::timestamptz, now()) for "now".

DELIVERED = "delivered"
BOUNCED = "bounced"
EXPIRED = "expired"
DEFERRED = "deferred"  # transient failure: stays queued (or expires if too old)


@dataclass(frozen=True)
class Claimed:
    """One claimed recipient with what delivery needs of its message (not the raw bytes)."""

    id: int
    message_id: uuid.UUID
    rcpt: str
    domain: str
    attempts: int
    mail_from: str
    account_id: int
    domain_id: int | None
    age_seconds: float  # since acceptance or the last manual retry, by the clock used to claim
    size: int = 0       # of the raw message
    # The previous lease ran out without an outcome (a worker died, or could not record what the
    # remote end said): that attempt may have delivered, so this one may be a duplicate.
    possible_duplicate: bool = False
    smtputf8: bool = False  # the message needs SMTPUTF8 (messages.smtputf8, migration 0011)
    # What its message asked of TLS (RFC 8689): True REQUIRETLS, False `TLS-Required: No`, None neither.
    tls_required: bool | None = None


@dataclass
class Outcome:
    """What happened to one recipient in one attempt."""

    recipient_id: int
    kind: str  # DELIVERED | BOUNCED | DEFERRED | EXPIRED
    reply: str
    details: dict[str, Any] = field(default_factory=dict)
    delay_seconds: float = 0.0  # DEFERRED only: time to the next attempt


async def claim(conn: Conn, worker_id: str, limit: int, lease_seconds: float,
                now: dt.datetime | None = None) -> list[Claimed]:
    """Lease up to `limit` due recipients to `worker_id`, oldest due first.

    `FOR UPDATE SKIP LOCKED` lets any number of workers on any number of nodes run this at once:
    each row goes to exactly one of them, and nobody waits on anybody's row locks.
    """
    rows = await conn.fetch(
        """WITH due AS (
                SELECT r.id, r.leased_by IS NOT NULL AS lost FROM recipients r
                 WHERE r.state = 'queued' AND r.next_attempt_at <= COALESCE($1::timestamptz, now())
                 ORDER BY r.next_attempt_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)
            UPDATE recipients r
               SET leased_by = $3,
                   lease_until = COALESCE($1::timestamptz, now()) + make_interval(secs => $4),
                   next_attempt_at = COALESCE($1::timestamptz, now()) + make_interval(secs => $4),
                   updated_at = COALESCE($1::timestamptz, now())
              FROM due, messages m
                   CROSS JOIN LATERAL (
                       SELECT GREATEST(m.created_at, max(e.created_at)) AS born FROM events e
                        WHERE e.message_id = m.id AND e.type = 'manual_retry') b
             WHERE r.id = due.id AND m.id = r.message_id
         RETURNING r.id, r.message_id, r.rcpt, r.domain, r.attempts, m.mail_from, m.account_id,
                   m.domain_id, m.size, due.lost, m.smtputf8, m.tls_required,
                   EXTRACT(EPOCH FROM (COALESCE($1::timestamptz, now()) - b.born))::float8 AS age""",
        now, limit, worker_id, float(lease_seconds),
    )
    return [Claimed(r["id"], r["message_id"], r["rcpt"], r["domain"], r["attempts"], r["mail_from"],
                    r["account_id"], r["domain_id"], r["age"], r["size"], r["lost"], r["smtputf8"],
                    r["tls_required"])
            for r in rows]


async def message_raw(conn: Conn, message_id: uuid.UUID) -> bytes | None:
    raw: bytes | None = await conn.fetchval("SELECT raw FROM messages WHERE id = $1", message_id)
    return raw


async def raw_messages(conn: Conn, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    """The raw bytes of several messages in one round trip (a missing id was deleted meanwhile)."""
    rows = await conn.fetch("SELECT id, raw FROM messages WHERE id = ANY($1::uuid[])", list(message_ids))
    return {r["id"]: r["raw"] for r in rows}


async def record_outcomes(conn: Conn, worker_id: str, outcomes: Sequence[Outcome],
                          max_lifetime_seconds: float, now: dt.datetime | None = None) -> dict[int, str]:
    """Apply outcomes with their events in ONE transaction; return {recipient_id: new state}.

    A recipient absent from the result was not changed (already final, or deferred while leased by
    someone else) and got no event. A deferral of a recipient whose lifetime is over becomes an
    expiration; the next attempt of a deferral is never later than the end of the lifetime, so the
    last attempt happens on time and the claim that follows expires it.
    """
    if not outcomes:
        return {}
    finals = [o for o in outcomes if o.kind in (DELIVERED, BOUNCED)]
    others = [o for o in outcomes if o.kind not in (DELIVERED, BOUNCED)]
    if not others:
        # The common case (a 2xx or 5xx for a whole transaction): ONE statement, atomic by itself.
        return await _record_finals(conn, finals, now)
    result: dict[int, str] = {}
    async with _transaction(conn) as tx:
        if finals:
            result.update(await _record_finals(tx, finals, now))
        for o in others:
            if o.kind == DEFERRED:
                row = await tx.fetchrow(
                    """UPDATE recipients r
                           SET state = CASE WHEN b.born + make_interval(secs => $2) <= COALESCE($1::timestamptz, now())
                                            THEN 'expired' ELSE 'queued' END,
                               attempts = r.attempts + 1, last_reply = $3,
                               next_attempt_at = LEAST(COALESCE($1::timestamptz, now()) + make_interval(secs => $4),
                                                       b.born + make_interval(secs => $2)),
                               lease_until = NULL, leased_by = NULL, updated_at = COALESCE($1::timestamptz, now())
                          FROM messages m
                               CROSS JOIN LATERAL (
                                   SELECT GREATEST(m.created_at, max(e.created_at)) AS born FROM events e
                                    WHERE e.message_id = m.id AND e.type = 'manual_retry') b
                         WHERE r.id = $5 AND m.id = r.message_id AND r.state = 'queued' AND r.leased_by = $6
                     RETURNING r.state, r.attempts, r.message_id, r.next_attempt_at, m.account_id,
                               m.domain_id""",
                    now, float(max_lifetime_seconds), o.reply[:1000], float(o.delay_seconds),
                    o.recipient_id, worker_id,
                )
            elif o.kind == EXPIRED:
                row = await tx.fetchrow(
                    """UPDATE recipients r
                           SET state = 'expired', last_reply = COALESCE(NULLIF($2, ''), r.last_reply),
                               lease_until = NULL, leased_by = NULL, updated_at = COALESCE($1::timestamptz, now())
                          FROM messages m
                         WHERE r.id = $3 AND m.id = r.message_id AND r.state = 'queued' AND r.leased_by = $4
                     RETURNING r.state, r.attempts, r.message_id, r.last_reply, m.account_id, m.domain_id""",
                    now, o.reply[:1000], o.recipient_id, worker_id,
                )
            else:
                raise ValueError(f"unknown outcome kind {o.kind!r}")
            if row is None:
                continue
            state = row["state"]
            details = dict(o.details)
            details.setdefault("reply", o.reply)
            details["attempts"] = row["attempts"]
            if state == "delivered":
                etype = Event.DELIVERY
            elif state == "bounced":
                etype = Event.BOUNCE
            elif state == "expired":
                etype = Event.EXPIRATION
                if o.kind == EXPIRED:
                    details["reply"] = row["last_reply"] or o.reply
            else:
                etype = Event.TRANSIENT_FAILURE
                details["next_attempt_at"] = row["next_attempt_at"].isoformat()
            await events.record(tx, etype, account_id=row["account_id"], domain_id=row["domain_id"],
                                message_id=row["message_id"], recipient_id=o.recipient_id, details=details)
            result[o.recipient_id] = state
    return result


async def _record_finals(conn: Conn, outcomes: Sequence[Outcome], now: dt.datetime | None) -> dict[int, str]:
    """Delivered/bounced outcomes and their events in one statement (a data-modifying CTE)."""
    details = []
    for o in outcomes:
        d = dict(o.details)
        d.setdefault("reply", o.reply)
        details.append(json.dumps(d))
    rows = await conn.fetch(
        """WITH o AS (
                SELECT * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[])
                           AS o(id, kind, reply, details)),
            u AS (
                UPDATE recipients r
                   SET state = o.kind, attempts = r.attempts + 1, last_reply = o.reply,
                       lease_until = NULL, leased_by = NULL, updated_at = COALESCE($1::timestamptz, now())
                  FROM o, messages m
                 WHERE r.id = o.id AND m.id = r.message_id AND r.state = 'queued'
             RETURNING r.id, r.state, r.attempts, r.message_id, m.account_id, m.domain_id, o.details)
           INSERT INTO events (event_id, type, account_id, domain_id, message_id, recipient_id, details)
           SELECT gen_random_uuid(), CASE u.state WHEN 'delivered' THEN $6 ELSE $7 END, u.account_id,
                  u.domain_id, u.message_id, u.id, u.details::jsonb || jsonb_build_object('attempts', u.attempts)
             FROM u
        RETURNING recipient_id, type""",
        now, [o.recipient_id for o in outcomes], [o.kind for o in outcomes],
        [o.reply[:1000] for o in outcomes], details, str(Event.DELIVERY), str(Event.BOUNCE),
    )
    return {r["recipient_id"]: (DELIVERED if r["type"] == str(Event.DELIVERY) else BOUNCED) for r in rows}


async def renew(conn: Conn, worker_id: str, recipient_ids: Sequence[int], lease_seconds: float,
                now: dt.datetime | None = None) -> set[int]:
    """Extend our lease on these recipients; return the ids that are still ours (and queued).

    A recipient missing from the result was taken over by another worker after our lease ran out
    (or finished meanwhile): the caller must not deliver it, so two workers never hold it at once.
    """
    rows = await conn.fetch(
        """UPDATE recipients
              SET lease_until = COALESCE($1::timestamptz, now()) + make_interval(secs => $4),
                  next_attempt_at = COALESCE($1::timestamptz, now()) + make_interval(secs => $4)
            WHERE id = ANY($3::bigint[]) AND leased_by = $2 AND state = 'queued'
        RETURNING id""",
        now, worker_id, list(recipient_ids), float(lease_seconds),
    )
    return {r["id"] for r in rows}


async def release(conn: Conn, worker_id: str, recipient_ids: Sequence[int] | None = None,
                  now: dt.datetime | None = None) -> int:
    """Give back leases still held by `worker_id` (all, or the given ones): due again now.

    No event: nothing happened to the recipient, the attempt simply did not take place.
    """
    status = await conn.execute(
        """UPDATE recipients
               SET lease_until = NULL, leased_by = NULL, next_attempt_at = COALESCE($1::timestamptz, now()),
                   updated_at = COALESCE($1::timestamptz, now())
             WHERE state = 'queued' AND leased_by = $2 AND ($3::bigint[] IS NULL OR id = ANY($3))""",
        now, worker_id, list(recipient_ids) if recipient_ids is not None else None,
    )
    n = int(status.split()[-1])
    if n:
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return n


async def seconds_until_next_due(conn: Conn, now: dt.datetime | None = None) -> float | None:
    """Seconds until the earliest queued recipient is due (negative: overdue); None: queue empty."""
    value: float | None = await conn.fetchval(
        """SELECT EXTRACT(EPOCH FROM (min(next_attempt_at) - COALESCE($1::timestamptz, now())))::float8
              FROM recipients WHERE state = 'queued'""",
        now,
    )
    return value


# --- operator actions (`queue retry`, `queue bounce`, `queue show`) ---

async def retry(conn: Conn, message_id: uuid.UUID, now: dt.datetime | None = None) -> int:
    """Make every non-delivered recipient of the message due now; return how many.

    Attempts are kept (the history stays true); bounced and expired recipients are queued again and
    get a new queue lifetime from now; recipients under a live lease (being attempted) are left alone.
    One MANUAL_RETRY event per recipient.
    """
    n = 0
    async with _transaction(conn) as tx:
        rows = await tx.fetch(
            """UPDATE recipients r
                   SET state = 'queued', next_attempt_at = COALESCE($1::timestamptz, now()),
                       lease_until = NULL, leased_by = NULL, updated_at = COALESCE($1::timestamptz, now())
                  FROM messages m, (SELECT id, state FROM recipients WHERE message_id = $2
                                    AND state <> 'delivered'
                                    -- one being attempted right now is left to its worker: making it
                                    -- due would let a second worker deliver it concurrently
                                    AND NOT (state = 'queued' AND leased_by IS NOT NULL
                                             AND lease_until > COALESCE($1::timestamptz, now()))
                                    FOR UPDATE) old
                 WHERE r.id = old.id AND m.id = r.message_id
             RETURNING r.id, old.state AS previous_state, m.account_id, m.domain_id""",
            now, message_id,
        )
        for row in rows:
            # created_at of the event must be the same clock as the lifetime check (see _BORN).
            await _record_at(tx, Event.MANUAL_RETRY, now, account_id=row["account_id"],
                             domain_id=row["domain_id"], message_id=message_id, recipient_id=row["id"],
                             details={"previous_state": row["previous_state"]})
            n += 1
        if n:
            await tx.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return n


async def bounce(conn: Conn, message_id: uuid.UUID, reason: str = "bounced by operator",
                 now: dt.datetime | None = None) -> int:
    """Bounce every queued recipient of the message (leased ones too); return how many."""
    async with _transaction(conn) as tx:
        rows = await tx.fetch(
            """UPDATE recipients r
                   SET state = 'bounced', lease_until = NULL, leased_by = NULL, last_reply = $3,
                       updated_at = COALESCE($1::timestamptz, now())
                  FROM messages m
                 WHERE r.message_id = $2 AND m.id = r.message_id AND r.state = 'queued'
             RETURNING r.id, r.attempts, m.account_id, m.domain_id""",
            now, message_id, reason,
        )
        for row in rows:
            await events.record(tx, Event.MANUAL_BOUNCE, account_id=row["account_id"],
                                domain_id=row["domain_id"], message_id=message_id, recipient_id=row["id"],
                                details={"reason": reason, "attempts": row["attempts"]})
    return len(rows)


# --- helpers ---

class _transaction:
    """A transaction on a pool (acquiring a connection) or on a connection (nested: a savepoint)."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._acquired: Any = None
        self._tx: Any = None

    async def __aenter__(self) -> Any:
        conn: Any = self._conn
        if hasattr(conn, "acquire") and not hasattr(conn, "transaction"):
            self._acquired = conn.acquire()
            conn = await self._acquired.__aenter__()
        try:
            self._tx = conn.transaction()
            await self._tx.__aenter__()
        except BaseException as e:
            # BEGIN failed or was cancelled: __aexit__ will not run, so give the connection back
            # here (asyncpg's pool rolls back or replaces it), or the pool loses it for good.
            if self._acquired is not None:
                acquired, self._acquired = self._acquired, None
                await acquired.__aexit__(type(e), e, e.__traceback__)
            raise
        return conn

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._tx.__aexit__(*exc)
        finally:
            if self._acquired is not None:
                await self._acquired.__aexit__(*exc)


async def _record_at(conn: Conn, type_: Event, at: dt.datetime | None, **kw: Any) -> None:
    if at is None:
        await events.record(conn, type_, **kw)
        return
    await conn.execute(
        """INSERT INTO events (event_id, type, account_id, domain_id, message_id, recipient_id, details,
                               created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)""",
        uuid.uuid4(), str(type_), kw.get("account_id"), kw.get("domain_id"), kw.get("message_id"),
        kw.get("recipient_id"), json.dumps(kw.get("details") or {}), at,
    )
