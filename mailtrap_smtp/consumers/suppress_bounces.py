"""Automatic suppression (MAILTRAP_COMPAT §6): a hard bounce whose Mailtrap category is
`badrecipient`, `overquota` or `timeout` suppresses the address for the message's domain and stream.

A transactional outbox consumer: the suppressions of a page of events and the cursor's advance
commit together, so each bounce is applied exactly once, also when a process dies mid-page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from .. import metrics
from ..core import event_names
from ..events import Event
from ..outbox import EventFilter, OutboxEvent, TransactionalConsumer
from ..store import suppressions as store
from ..store.types import Conn

# Mailtrap's categories that suppress (§5.2, marked * there).
SUPPRESSING = frozenset({"badrecipient", "overquota", "timeout"})

# Our events that are hard bounces of a recipient. An operator's `queue bounce` is not: it says
# nothing about the address.
_HARD = (str(Event.BOUNCE), str(Event.EXPIRATION))


def suppressing(e: OutboxEvent) -> store.FromBounce | None:
    """The suppression a hard bounce event asks for, or None."""
    if e.type not in _HARD or e.recipient_id is None:
        return None
    category = event_names.bounce_category(e.details)
    if category not in SUPPRESSING:
        return None
    mx = e.details.get("mx")
    return store.FromBounce(e.recipient_id, category, str(e.details.get("reply") or ""),
                            mx if isinstance(mx, str) else None)


class SuppressBounces(TransactionalConsumer):
    kind: ClassVar[str] = "suppress_bounces"

    def event_filter(self) -> EventFilter:
        return EventFilter(types=_HARD)

    async def apply(self, tx: Conn, events: Sequence[OutboxEvent]) -> None:
        wanted = [b for b in map(suppressing, events) if b is not None]
        if wanted:
            metrics.SUPPRESSIONS_CREATED.inc(await store.add_from_bounces(tx, wanted))
