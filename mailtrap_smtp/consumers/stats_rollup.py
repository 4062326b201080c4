"""The stats rollup: every delivery, bounce and spam complaint, counted into `stats_daily` by account, day (UTC),
domain, stream, category and mailbox provider. A transactional outbox consumer: the counts of a
page of events and the cursor's advance commit together, so each event is counted exactly once."""

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


def counted(e: OutboxEvent) -> store.Outcome | None:
    s = event_names.spelling(e.type, e.details)
    kind = _KINDS.get(s) if s is not None else None
    if e.account_id is None or kind is None:
        return None
    mx = e.details.get("mx")
    return store.Outcome(e.account_id, e.created_at.astimezone(dt.UTC).date(), e.domain_id,
                         e.stream or "transactional", e.category, mx if isinstance(mx, str) else None, kind)


class StatsRollup(TransactionalConsumer):
    kind: ClassVar[str] = "stats_rollup"

    def event_filter(self) -> EventFilter:
        return EventFilter(types=_COUNTED)

    async def apply(self, tx: Conn, events: Sequence[OutboxEvent]) -> None:
        outcomes = [o for o in map(counted, events) if o is not None]
        if outcomes:
            await store.add(tx, outcomes)
