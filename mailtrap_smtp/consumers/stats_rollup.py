"""The stats rollup: every delivery and bounce, counted into `stats_daily` by account, day (UTC),
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

# Our events that Mailtrap counts as a delivery or a bounce (the one mapping decides which).
_COUNTED = tuple(str(t) for t in Event if event_names.spelling(str(t), {}) in (event_names.DELIVERY,
                                                                               event_names.BOUNCE))


def counted(e: OutboxEvent) -> store.Outcome | None:
    s = event_names.spelling(e.type, e.details)
    if e.account_id is None or s not in (event_names.DELIVERY, event_names.BOUNCE):
        return None
    mx = e.details.get("mx")
    return store.Outcome(e.account_id, e.created_at.astimezone(dt.UTC).date(), e.domain_id,
                         e.stream or "transactional", e.category, mx if isinstance(mx, str) else None,
                         s is event_names.DELIVERY)


class StatsRollup(TransactionalConsumer):
    kind: ClassVar[str] = "stats_rollup"

    def event_filter(self) -> EventFilter:
        return EventFilter(types=_COUNTED)

    async def apply(self, tx: Conn, events: Sequence[OutboxEvent]) -> None:
        outcomes = [o for o in map(counted, events) if o is not None]
        if outcomes:
            await store.add(tx, outcomes)
