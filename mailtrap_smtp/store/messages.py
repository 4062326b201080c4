"""Messages and their recipients: the durable acceptance and the queue listings."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from .. import mailbox
from ..events import SUPPRESSED_REASON, Event
from .db import Unavailable
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
    # One public id per recipient, in the same order (empty: the database chooses them).
    recipient_ids: Sequence[uuid.UUID] = ()
    smtputf8: bool = False  # the message needs SMTPUTF8 at delivery (submission.needs_smtputf8)
    # RFC 8689: True = REQUIRETLS, False = `TLS-Required: No`, None = neither (migration 0012).
    tls_required: bool | None = None


class QuotaExceeded(Exception):
    """The account's monthly limit would be passed; nothing was stored."""


# ONE statement stores a whole batch (one round trip, one commit, one WAL flush): the messages of
# any accounts and periods, their recipients and Reception events, and the quota charge.
#
# Quota: per (account, period) the batch charges the SUM of its messages' recipients with a
# conditional upsert whose condition PostgreSQL re-checks on the locked usage row, so concurrent
# sessions, processes and nodes can never pass the limit. The upsert's rows are sorted by
# (account_id, period_start), so two batches lock usage rows in the same order (no deadlocks). A
# (account, period) whose sum does not fit is charged nothing and none of its messages is stored
# (they are absent from the result); the other groups of the batch are unaffected. A statement
# error (e.g. a duplicate message id) writes nothing at all.
#
# Quota notifications: a charge that takes an (account, period) across one of the account's
# `alert_thresholds` (% of its monthly limit) inserts that threshold into `quota_notifications` and
# a QUOTA_THRESHOLD event. The charge holds the usage row's lock and sees the latest `used`, so
# exactly one statement crosses each threshold; the table's key keeps it to one per period even if
# usage was lowered by an operator, or the limit changed, in between.
#
# Suppressions (MAILTRAP_COMPAT §6) are looked up here too, so they cost no round trip: a recipient
# suppressed for the message's domain and stream (or 'any') is stored 'rejected' (delivery never
# claims it), is not charged, and gets a SUPPRESSED event naming the suppression's type. Recipients
# are compared in the form suppressions are stored in ($28, `mailbox.suppression_form`: the domain
# as A-labels, a non-ASCII local part lower-cased), and stored as given.
#
# Recipients and events are inserted `ORDER BY` their position, so their ids follow arrival. The
# message bytes ($14) are taken from the array by position at the INSERT, never carried through a
# materialised CTE or a sort (which copy them, and spill to disk past work_mem); messages, keyed by
# uuid, need no order.
_ACCEPT_SQL = """
WITH x AS (
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                         $13::int[], $15::date[], $16::bigint[], $17::uuid[], $18::text[], $26::bool[], $27::boolean[])
        WITH ORDINALITY AS x(id, account_id, credential_id, domain_id, stream, mail_from, header_from,
                             subject, message_id_header, category, custom_variables, client_ip, size,
                             period_start, n, event_id, details, smtputf8, tls_required, ord)
), r AS (
    SELECT * FROM unnest($19::uuid[], $20::text[], $22::uuid[], $28::text[])
        WITH ORDINALITY AS r(message_id, rcpt, public_id, sup_email, ord)
), sup AS (
    -- One index probe per recipient (suppressions_unique: domain_id, lower(email), stream).
    SELECT r.ord, r.message_id, r.rcpt, x.account_id, x.period_start, s.id, s.type
      FROM r JOIN x ON x.id = r.message_id
      CROSS JOIN LATERAL (
          SELECT s.id, s.type FROM suppressions s
           WHERE s.domain_id = x.domain_id AND lower(s.email) = lower(r.sup_email)
             AND s.sending_stream IN (x.stream, 'any')
           ORDER BY s.created_at LIMIT 1) s
), want AS (
    SELECT account_id, period_start, sum(n)::bigint AS n FROM (
        SELECT account_id, period_start, n FROM x
        UNION ALL SELECT account_id, period_start, -1 FROM sup) w
     GROUP BY account_id, period_start
), charge AS (
    INSERT INTO usage AS u (account_id, period_start, used)
    SELECT w.account_id, w.period_start, w.n FROM want w JOIN accounts a ON a.id = w.account_id
     WHERE w.n <= a.monthly_limit
     ORDER BY w.account_id, w.period_start
    ON CONFLICT (account_id, period_start) DO UPDATE SET used = u.used + EXCLUDED.used
        WHERE u.used + EXCLUDED.used <= (SELECT monthly_limit FROM accounts WHERE id = u.account_id)
    RETURNING u.account_id, u.period_start, u.used
), crossed AS (
    INSERT INTO quota_notifications (account_id, period_start, threshold)
    SELECT c.account_id, c.period_start, t.t
      FROM charge c JOIN want w ON w.account_id = c.account_id AND w.period_start = c.period_start
      JOIN accounts a ON a.id = c.account_id
      CROSS JOIN LATERAL unnest(a.alert_thresholds) AS t(t)
     WHERE a.monthly_limit > 0
       AND (c.used - w.n) * 100 < t.t * a.monthly_limit AND c.used * 100 >= t.t * a.monthly_limit
     ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING account_id, period_start, threshold
), noted AS (
    INSERT INTO events (event_id, type, account_id, details)
    SELECT gen_random_uuid(), $25, q.account_id,
           jsonb_build_object('threshold', q.threshold, 'period_start', q.period_start, 'used', c.used,
                              'limit', a.monthly_limit)
      FROM crossed q JOIN charge c ON c.account_id = q.account_id AND c.period_start = q.period_start
      JOIN accounts a ON a.id = q.account_id
     ORDER BY q.account_id, q.threshold
), ok AS (
    SELECT x.* FROM x JOIN charge c ON c.account_id = x.account_id AND c.period_start = x.period_start
), msg AS (
    INSERT INTO messages (id, account_id, credential_id, domain_id, stream, mail_from, header_from,
                          subject, message_id_header, category, custom_variables, client_ip, size, raw,
                          smtputf8, tls_required)
    SELECT id, account_id, credential_id, domain_id, stream, mail_from, header_from, subject,
           message_id_header, category, custom_variables::jsonb, client_ip::inet, size,
           ($14::bytea[])[ord], smtputf8, tls_required
      FROM ok
    RETURNING id
), rcpt AS (
    INSERT INTO recipients (message_id, rcpt, domain, public_id, state)
    SELECT r.message_id, r.rcpt, lower(split_part(r.rcpt, '@', -1)), coalesce(r.public_id, gen_random_uuid()),
           CASE WHEN sup.ord IS NULL THEN 'queued' ELSE 'rejected' END
      FROM r LEFT JOIN sup ON sup.ord = r.ord
     WHERE r.message_id IN (SELECT id FROM ok)
     ORDER BY r.ord
    RETURNING id, message_id, state
), ev AS (
    INSERT INTO events (event_id, type, account_id, domain_id, message_id, details)
    SELECT event_id, $21, account_id, domain_id, id, details::jsonb FROM ok ORDER BY ord
), rejected AS (
    INSERT INTO events (event_id, type, account_id, domain_id, message_id, recipient_id, details)
    SELECT gen_random_uuid(), $23, ok.account_id, ok.domain_id, ok.id, rc.id,
           jsonb_build_object('reason', $24::text || s.type,
                              'suppression_id', s.id, 'suppression_type', s.type, 'email', s.rcpt)
      FROM (SELECT id, message_id, row_number() OVER (PARTITION BY message_id ORDER BY id) AS k
              FROM rcpt WHERE state = 'rejected') rc
      JOIN (SELECT *, row_number() OVER (PARTITION BY message_id ORDER BY ord) AS k FROM sup) s
        ON s.message_id = rc.message_id AND s.k = rc.k
      JOIN ok ON ok.id = rc.message_id
     ORDER BY rc.id
)
SELECT id FROM msg
"""


async def _insert_batch(conn: Conn, batch: Sequence[tuple[NewMessage, dt.date]]) -> set[uuid.UUID]:
    """Run `_ACCEPT_SQL` for `batch`; the ids of the messages stored (see the SQL's comment)."""
    msgs = [m for m, _ in batch]
    rows = await conn.fetch(
        _ACCEPT_SQL,
        [m.id for m in msgs], [m.account_id for m in msgs], [m.credential_id for m in msgs],
        [m.domain_id for m in msgs], [m.stream for m in msgs], [m.mail_from for m in msgs],
        [m.header_from for m in msgs], [m.subject for m in msgs], [m.message_id_header for m in msgs],
        [m.category for m in msgs],
        [json.dumps(m.custom_variables) if m.custom_variables is not None else None for m in msgs],
        [m.client_ip for m in msgs], [len(m.raw) for m in msgs], [m.raw for m in msgs],
        [p for _, p in batch], [len(m.recipients) for m in msgs], [uuid.uuid4() for _ in msgs],
        [json.dumps({"recipients": len(m.recipients), "size": len(m.raw), "stream": m.stream})
         for m in msgs],
        [m.id for m in msgs for _ in m.recipients], [r for m in msgs for r in m.recipients],
        str(Event.RECEPTION),
        [m.recipient_ids[i] if i < len(m.recipient_ids) else None for m in msgs for i in range(len(m.recipients))],
        str(Event.SUPPRESSED), SUPPRESSED_REASON, str(Event.QUOTA_THRESHOLD),
        [m.smtputf8 for m in msgs],
        [m.tls_required for m in msgs],
        [mailbox.suppression_form(r) for m in msgs for r in m.recipients],
    )
    return {row["id"] for row in rows}


async def accept(conn: Conn, msg: NewMessage, period_start: dt.date) -> None:
    """Store the message, one row per recipient, charge the quota and record the Reception event.

    A single statement (a batch of one): atomic on its own (durable when it returns, outside a
    transaction) or part of the caller's transaction. Raises QuotaExceeded, having written nothing,
    when the account's monthly limit would be passed. Workers are woken separately
    (`QueueNotifier`), after commit. The SMTP front end goes through `AcceptBatcher`, which uses
    this for the messages of a batch it has to retry one at a time.
    """
    if msg.id not in await _insert_batch(conn, [(msg, period_start)]):
        raise QuotaExceeded


@dataclass
class _QueuedMessage:
    """A message handed to `AcceptBatcher.accept`, waiting for its batch; `future` carries its outcome."""

    msg: NewMessage
    period_start: dt.date
    future: asyncio.Future[None]
    since: float = 0.0  # loop time of arrival


class AcceptBatcher:
    """Group commit: `accept()` callers share one statement and one commit per batch.

    One committer at a time per batcher: while a batch commits, newly arriving messages wait; when
    it is done, everything waiting (up to `max_batch` messages and `max_bytes` of raw message, but
    at least one message, in arrival order) goes in the next batch. A batch waits for nothing but
    the messages announced as on their way (`expect`: a client is sending DATA, the message is being
    checked and signed), and for those at most `gather_seconds`: without that, a committer that
    just finished takes the first message alone and everything that follows waits a whole commit
    (an fsync) behind it. A lone message commits at once. The byte budget keeps one statement's
    bytea array (PostgreSQL caps a value at 1 GB) and the client's memory bounded whatever the
    accounts' size limits.

    Each caller gets exactly its own outcome: None once its message is committed
    (synchronous_commit=on), `QuotaExceeded` having written nothing, or the database error that made
    its batch write nothing. When an (account, period) group of a batch does not fit as a whole,
    its messages are retried one at a time in arrival order, so a refused large message never
    causes the refusal of a later one that fits (first come, first served).

    Bounded waits (issue 9): each statement is bounded by the pool's server-side statement_timeout
    (PostgreSQL aborts it: nothing is written); its callers get `Unavailable`. A message still
    queued `max_wait` seconds after it arrived (behind a batch stuck on a lock) gets `Unavailable`
    without being sent, so no caller waits longer than about twice the bound.
    """

    def __init__(self, pool: Conn, max_batch: int = 64, max_bytes: int = 32 * 1024 * 1024,
                 gather_seconds: float = 0.002, max_wait: float = 0.0) -> None:
        if max_batch < 1 or max_bytes < 1:
            raise ValueError("max_batch and max_bytes must be at least 1")
        self._pool = pool
        self._max = max_batch
        self._max_bytes = max_bytes
        self._gather = gather_seconds
        self._max_wait = max_wait
        self._expected = 0
        self._arrival = asyncio.Event()
        self._waiting: collections.deque[_QueuedMessage] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def expect(self) -> None:
        """A message is on its way: the committer may wait a little for it (see the class)."""
        self._expected += 1

    def stop_expecting(self) -> None:
        """An expected message was handed to `accept`, or will never be (one call per `expect`)."""
        self._expected -= 1
        self._arrival.set()

    async def accept(self, msg: NewMessage, period_start: dt.date) -> None:
        if self._closed:
            raise RuntimeError("AcceptBatcher is closed")
        loop = asyncio.get_running_loop()
        waiting = _QueuedMessage(msg, period_start, loop.create_future(), loop.time())
        self._waiting.append(waiting)
        self._arrival.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        # A caller cancelled while still queued is dropped before its batch runs (nothing stored);
        # once its batch is running, the outcome is decided by the database, as for a direct call.
        await waiting.future

    async def close(self, bound: float = 10.0) -> None:
        """Refuse new messages; wait for everything already queued to be decided, at most `bound`
        seconds (a database that stalls must not stall the shutdown: the callers left get "outcome
        unknown", never a success)."""
        self._closed = True
        if self._task is not None:
            task = self._task
            await asyncio.wait({task}, timeout=bound)
            if not task.done():
                task.cancel()  # its callers are told "outcome unknown" (see _run)
                await asyncio.wait({task}, timeout=1.0)

    async def _run(self) -> None:
        # No await between the emptiness check and returning: an `accept()` either sees this task
        # not yet done (and its message is taken below) or done (and starts a new one).
        try:
            while self._waiting:
                await self._gather_expected()
                batch: list[_QueuedMessage] = []
                size = 0
                now = asyncio.get_running_loop().time()
                while self._waiting and len(batch) < self._max:
                    waiting = self._waiting[0]
                    if self._max_wait and now - waiting.since > self._max_wait:
                        # Never sent, so certainly not stored: safe to answer with a temporary failure.
                        _settle(waiting, Unavailable("the database did not take the message in time"))
                    if not waiting.future.done():
                        if batch and size + len(waiting.msg.raw) > self._max_bytes:
                            break
                        batch.append(waiting)
                        size += len(waiting.msg.raw)
                    self._waiting.popleft()
                if batch:
                    await self._commit(batch)
        finally:  # only when cancelled: nobody queued may wait forever
            queued = list(self._waiting)
            self._waiting.clear()
            _fail(queued, asyncio.CancelledError())

    async def _gather_expected(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._gather
        while self._expected > 0 and len(self._waiting) < self._max and not self._closed:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._arrival.clear()
            try:
                async with asyncio.timeout(left):
                    await self._arrival.wait()
            except TimeoutError:
                return

    async def _commit(self, batch: list[_QueuedMessage]) -> None:
        try:
            stored = await _insert_batch(self._pool, [(w.msg, w.period_start) for w in batch])
        except BaseException as e:
            _fail(batch, _outcome_of(e))
            if not isinstance(e, Exception):
                raise
            return
        groups = collections.Counter((w.msg.account_id, w.period_start) for w in batch)
        retry: list[_QueuedMessage] = []
        for w in batch:
            if w.msg.id in stored:
                _settle(w, None)
            elif groups[(w.msg.account_id, w.period_start)] == 1:
                _settle(w, QuotaExceeded())  # alone in its group: refused on its own
            else:
                retry.append(w)
        # Usage only grows within a period: once a group refused n recipients, it refuses n or more.
        refused: dict[tuple[int, dt.date], int] = {}
        for w in retry:  # arrival order: first come, first served
            if w.future.done():
                continue
            group, n = (w.msg.account_id, w.period_start), len(w.msg.recipients)
            if n >= refused.get(group, n + 1):
                _settle(w, QuotaExceeded())
                continue
            try:
                await accept(self._pool, w.msg, w.period_start)
                ok = True
            except QuotaExceeded:
                ok = False
            except BaseException as e:
                _fail([w], _outcome_of(e))
                if not isinstance(e, Exception):
                    _fail(retry, e)
                    raise
                continue
            if not ok:
                refused[group] = n
            _settle(w, None if ok else QuotaExceeded())


def _outcome_of(e: BaseException) -> BaseException:
    """statement_timeout: PostgreSQL aborted the statement, so it wrote nothing (a clear outcome)."""
    if isinstance(e, asyncpg.QueryCanceledError):
        return Unavailable(f"the database did not answer within the statement timeout ({e})")
    return e


def _settle(w: _QueuedMessage, error: Exception | None) -> None:
    if w.future.done():
        return
    if error is None:
        w.future.set_result(None)
    else:
        w.future.set_exception(error)


def _fail(batch: Sequence[_QueuedMessage], error: BaseException) -> None:
    for w in batch:
        if w.future.done():
            continue
        if isinstance(error, Exception):
            w.future.set_exception(error)
        else:  # the committer was cancelled (shutdown): outcome unknown, never reported as success
            w.future.set_exception(RuntimeError("acceptance interrupted; outcome unknown"))


async def notify_queue(conn: Conn) -> None:
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")


class QueueNotifier:
    """Wakes delivery workers after acceptances, coalescing a burst into one NOTIFY.

    A NOTIFY inside the accepting transaction would serialise every commit on PostgreSQL's
    notification queue lock; sent afterwards and coalesced, it costs one round trip per burst: the
    first acceptance after a quiet spell notifies at once, later ones at most every
    `min_interval` seconds (a worker that is woken takes everything due anyway). A NOTIFY lost to
    a crash between commit and send only delays delivery until the workers' poll.
    """

    def __init__(self, pool: Conn, min_interval: float = 0.02) -> None:
        self._pool = pool
        self._min_interval = min_interval
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
            await asyncio.sleep(self._min_interval)

    async def close(self, bound: float = 5.0) -> None:
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=bound)


async def get(conn: Conn, message_id: uuid.UUID) -> Record | None:
    return await conn.fetchrow(
        """SELECT m.*, a.name AS account FROM messages m JOIN accounts a ON a.id = m.account_id
            WHERE m.id = $1""",
        message_id,
    )


async def find_by_recipient(conn: Conn, public_id: uuid.UUID) -> uuid.UUID | None:
    """The message a recipient's public id (as the send API returned it) belongs to."""
    value = await conn.fetchval("SELECT message_id FROM recipients WHERE public_id = $1", public_id)
    return value if isinstance(value, uuid.UUID) else None


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
