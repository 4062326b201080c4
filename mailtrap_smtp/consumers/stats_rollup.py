"""The stats rollups: every delivery, bounce and spam complaint (`StatsRollup`), and every recipient
sent or rejected at submission (`SubmissionRollup`), counted into `stats_daily` by account, day
(UTC), domain, stream, category and mailbox provider. Transactional outbox consumers: the counts of
a page of events and the cursor's advance commit together, so each event is counted exactly once.

Sent: every recipient of an accepted message (the client got its 250 or message id), from the
`reception` event's recipient count. Rejected: the recipients of those messages that were never
attempted because they are on the suppression list (the `suppressed` event, Mailtrap's `reject`).
So sent = delivered + bounced + rejected + still queued. A submission refused outright (quota,
size, unverified domain: a 4xx/5xx reply) stored no message and is not counted; the metrics count it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import ClassVar

from ..core import event_names
from ..events import Event
from ..outbox import EventFilter, OutboxEvent, TransactionalConsumer
from ..store import stats as store
from ..store.types import Conn

# What Mailtrap counts, by its spelling of our events (the one mapping decides which are which).
_KINDS = {event_names.DELIVERY: store.DELIVERY, event_names.BOUNCE: store.BOUNCE, event_names.SPAM: store.SPAM}
_COUNTED = tuple(str(t) for t in Event if event_names.spelling(str(t), {}) in _KINDS)


def _outcome(e: OutboxEvent, kind: str, count: int = 1) -> store.Outcome | None:
    if e.account_id is None:
        return None
    mx = e.details.get("mx")
    return store.Outcome(e.account_id, e.created_at.astimezone(dt.UTC).date(), e.domain_id,
                         e.stream or "transactional", e.category, mx if isinstance(mx, str) else None, kind, count)


def counted(e: OutboxEvent) -> store.Outcome | None:
    s = event_names.spelling(e.type, e.details)
    kind = _KINDS.get(s) if s is not None else None
    return None if kind is None else _outcome(e, kind)


def submitted(e: OutboxEvent) -> store.Outcome | None:
    """A reception counts its recipients as sent; a suppressed recipient counts as rejected."""
    if e.type == Event.SUPPRESSED:
        return _outcome(e, store.REJECTED)
    n = e.details.get("recipients")
    if e.type != Event.RECEPTION or not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        return None
    return _outcome(e, store.SENT, n)


class StatsRollup(TransactionalConsumer):
    kind: ClassVar[str] = "stats_rollup"

    def event_filter(self) -> EventFilter:
        return EventFilter(types=_COUNTED)

    async def apply(self, tx: Conn, events: Sequence[OutboxEvent]) -> None:
        outcomes = [o for o in map(counted, events) if o is not None]
        if outcomes:
            await store.add(tx, outcomes)


class SubmissionRollup(TransactionalConsumer):
    """Sent and rejected per day. A cursor of its own, starting at the beginning of the events
    table (`from_beginning`): added after `StatsRollup`'s cursor had passed many receptions, it
    counts those still stored once, and a node still running without it cannot skip them."""

    kind: ClassVar[str] = "stats_submissions"

    def event_filter(self) -> EventFilter:
        return EventFilter(types=(str(Event.RECEPTION), str(Event.SUPPRESSED)))

    async def apply(self, tx: Conn, events: Sequence[OutboxEvent]) -> None:
        outcomes = [o for o in map(submitted, events) if o is not None]
        if outcomes:
            await store.add(tx, outcomes)
