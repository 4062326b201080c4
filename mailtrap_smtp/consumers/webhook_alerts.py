"""Deactivated-webhook alerts: for each WEBHOOK_DEACTIVATED event, an email to the account's alert
address through our own queue (`consumers/operator_mail.py`), when it has one and
`notifications.from` is set; otherwise only the event and the delivery consumer's log line.

A transactional outbox consumer: the queued email and the cursor's advance commit together, so
each deactivation sends exactly one email, also with several nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

from ..config import Config
from ..core import webhook_notice
from ..events import Event
from ..outbox import EventFilter, OutboxEvent, TransactionalConsumer
from ..store import accounts as accounts_store
from ..store.types import Conn
from .operator_mail import OperatorMail, Signer

log = logging.getLogger(__name__)


class WebhookAlerts(TransactionalConsumer):
    kind: ClassVar[str] = "webhook_alerts"
    batch_size: ClassVar[int] = 100

    def __init__(self, cfg: Config, signer: Signer) -> None:
        self._mail = OperatorMail(cfg, signer)

    def event_filter(self) -> EventFilter:
        return EventFilter(types=(str(Event.WEBHOOK_DEACTIVATED),))

    async def apply(self, tx: Conn, events: Sequence[OutboxEvent]) -> None:
        for e in events:
            await self._one(tx, e)

    async def _one(self, tx: Conn, e: OutboxEvent) -> None:
        account = None if e.account_id is None else await accounts_store.get(tx, e.account_id)
        if account is None:
            return
        d = webhook_notice.Deactivation(account["name"], int(e.details["webhook_id"]), str(e.details["url"]),
                                        int(e.details["attempts"]))
        to = account["alert_email"]
        if await self._mail.queue(tx, event_id=e.event_id, account=d.account, to=to, subject=webhook_notice.subject(d),
                                  body=webhook_notice.body(d), category="webhook_alert"):
            log.info("webhook %d of account %s deactivated: alert queued to %s", d.webhook_id, d.account, to)
