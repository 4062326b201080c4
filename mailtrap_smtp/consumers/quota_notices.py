"""Quota notifications: for each QUOTA_THRESHOLD event (decided in the charging statement, once per
threshold per billing period), a log line, a metric and, when the account has an alert address and
`notifications.from` is set, an email queued through our own queue, DKIM-signed with the operator's
domain (`consumers/operator_mail.py`).

A transactional outbox consumer: the queued email and the cursor's advance commit together, so
each crossing sends exactly one email. The email is charged to the operator's account like any
message; if that account is at its own limit the email is dropped with an error in the log (the
event stays), rather than holding every later notification back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from .. import metrics
from ..config import Config
from ..core import quota_notice
from ..events import Event
from ..outbox import EventFilter, OutboxEvent, TransactionalConsumer
from ..store import accounts as accounts_store
from ..store.types import Conn
from .operator_mail import OperatorMail, Signer

log = logging.getLogger(__name__)


class QuotaNotices(TransactionalConsumer):
    kind: ClassVar[str] = "quota_notices"
    batch_size: ClassVar[int] = 100

    def __init__(self, cfg: Config, signer: Signer) -> None:
        self._mail = OperatorMail(cfg, signer)

    def event_filter(self) -> EventFilter:
        return EventFilter(types=(str(Event.QUOTA_THRESHOLD),))

    async def apply(self, tx: Conn, events: Sequence[OutboxEvent]) -> None:
        for e in events:
            await self._one(tx, e)

    async def _one(self, tx: Conn, e: OutboxEvent) -> None:
        if e.account_id is None:
            return
        account = await accounts_store.get(tx, e.account_id)
        if account is None:
            return
        d: dict[str, Any] = e.details
        crossing = quota_notice.Crossing(e.event_id, account["name"], int(d["threshold"]), int(d["used"]),
                                         int(d["limit"]), str(d["period_start"]))
        to = account["alert_email"]
        emailed = await self._mail.queue(tx, event_id=e.event_id, account=crossing.account, to=to,
                                         subject=quota_notice.subject(crossing), body=quota_notice.body(crossing),
                                         category="quota_notification")
        log.info("account %s crossed %d%% of its monthly limit (%d of %d, period from %s); %s",
                 crossing.account, crossing.threshold, crossing.used, crossing.limit, crossing.period_start,
                 f"notification queued to {to}" if emailed else "no notification email")
        metrics.QUOTA_NOTIFICATIONS.labels(threshold=str(crossing.threshold),
                                           emailed="yes" if emailed else "no").inc()
