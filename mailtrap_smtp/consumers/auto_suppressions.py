"""Automatic suppression (MAILTRAP_COMPAT §6, §9 item 23): a hard bounce whose Mailtrap category is
`badrecipient`, `overquota` or `timeout` suppresses the address as `hard bounce`, a spam
complaint (an ARF report at the inbound listener) as `spam complaint`, and a one-click
unsubscribe (RFC 8058) as `unsubscription`, for the message's domain and stream.

A transactional outbox consumer: the suppressions of a page of events and the cursor's advance
commit together, so each event is applied exactly once, also when a process dies mid-page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from .. import metrics
from ..core import event_names
from ..core.suppressions import HARD_BOUNCE, SPAM_COMPLAINT, UNSUBSCRIPTION
from ..events import Event
from ..mailbox import suppression_form
from ..outbox import EventFilter, OutboxEvent, TransactionalConsumer
from ..store import suppressions as store
from ..store.types import Conn

# Mailtrap's categories that suppress (§5.2, marked * there).
SUPPRESSING = frozenset({"badrecipient", "overquota", "timeout"})

# Our events that are hard bounces of a recipient (at delivery, after the queue lifetime, or a DSN
# that came back later). An operator's `queue bounce` is not: it says nothing about the address.
_HARD = (str(Event.BOUNCE), str(Event.EXPIRATION))
_COMPLAINT = str(Event.SPAM)
_UNSUBSCRIBE = str(Event.UNSUBSCRIBE)


def suppressing(e: OutboxEvent) -> store.AutoEntry | None:
    """The suppression an event asks for, or None."""
    if e.recipient_id is None or e.rcpt is None:
        return None
    email = suppression_form(e.rcpt)  # as a manual suppression of the address is stored
    if e.type == _COMPLAINT:
        return store.AutoEntry(e.recipient_id, email, SPAM_COMPLAINT, None, None, None)
    if e.type == _UNSUBSCRIBE:
        return store.AutoEntry(e.recipient_id, email, UNSUBSCRIPTION, None, None, None)
    if e.type not in _HARD:
        return None
    category = event_names.bounce_category(e.details)
    if category not in SUPPRESSING:
        return None
    mx = e.details.get("mx") or e.details.get("remote_mta")
    return store.AutoEntry(e.recipient_id, email, HARD_BOUNCE, category, str(e.details.get("reply") or ""),
                           mx if isinstance(mx, str) else None)


class AutoSuppressions(TransactionalConsumer):
    kind: ClassVar[str] = "auto_suppressions"

    def event_filter(self) -> EventFilter:
        return EventFilter(types=(*_HARD, _COMPLAINT, _UNSUBSCRIBE))

    async def apply(self, tx: Conn, events: Sequence[OutboxEvent]) -> None:
        wanted = [b for b in map(suppressing, events) if b is not None]
        if wanted:
            metrics.SUPPRESSIONS_CREATED.inc(await store.add_automatic(tx, wanted))
