"""Quota notifications: for each QUOTA_THRESHOLD event (decided in the charging statement, once per
threshold per billing period), a log line, a metric and, when the account has an alert address and
`notifications.from` is set, an email queued through our own queue, DKIM-signed with the operator's
domain (the domain of `notifications.from`, a sending domain of the operator's account).

A transactional outbox consumer: the queued email and the cursor's advance commit together, so
each crossing sends exactly one email. The email is charged to the operator's account like any
message; if that account is at its own limit the email is dropped with an error in the log (the
event stays), rather than holding every later notification back.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from .. import metrics, quota
from ..config import Config
from ..core import quota_notice
from ..events import Event
from ..outbox import EventFilter, OutboxEvent, TransactionalConsumer
from ..smtp.address import valid_mailbox
from ..store import accounts as accounts_store
from ..store import domains as domains_store
from ..store import messages as messages_store
from ..store.types import Conn

log = logging.getLogger(__name__)


class Signer(Protocol):
    async def sign(self, message: bytes, domain: str) -> bytes: ...


class QuotaNotices(TransactionalConsumer):
    kind: ClassVar[str] = "quota_notices"
    batch_size: ClassVar[int] = 100

    def __init__(self, cfg: Config, signer: Signer) -> None:
        self._sender = cfg.notifications.from_
        self._hostname = cfg.server.hostname
        self._signer = signer

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
        emailed = bool(to) and await self._queue(tx, crossing, to)
        log.info("account %s crossed %d%% of its monthly limit (%d of %d, period from %s); %s",
                 crossing.account, crossing.threshold, crossing.used, crossing.limit, crossing.period_start,
                 f"notification queued to {to}" if emailed else "no notification email")
        metrics.QUOTA_NOTIFICATIONS.labels(threshold=str(crossing.threshold),
                                           emailed="yes" if emailed else "no").inc()

    async def _queue(self, tx: Conn, c: quota_notice.Crossing, to: str) -> bool:
        if not self._sender:
            return False
        if not valid_mailbox(to):
            log.error("account %s: alert address %r is not an address; no notification email", c.account, to)
            return False
        domain_name = self._sender.rpartition("@")[2].lower()
        domain = await domains_store.get_by_name(tx, domain_name)
        operator = None if domain is None else await accounts_store.get(tx, int(domain["account_id"]))
        if domain is None or operator is None:
            log.error("notifications.from %s: %s is not a sending domain; no notification email",
                      self._sender, domain_name)
            return False
        raw = quota_notice.compose(c, sender=self._sender, to=to, hostname=self._hostname,
                                   now=dt.datetime.now(dt.UTC))
        signed = await self._signer.sign(raw, domain_name)
        msg = messages_store.NewMessage(
            id=quota_notice.message_id_for(c.event_id), account_id=int(operator["id"]), credential_id=None,
            domain_id=int(domain["id"]), stream="transactional", mail_from=self._sender, header_from=self._sender,
            subject=quota_notice.subject(c), message_id_header=f"<{quota_notice.message_id_for(c.event_id)}@"
                                                               f"{self._hostname}>",
            category="quota_notification", custom_variables=None, client_ip=None, raw=signed, recipients=[to],
        )
        try:
            await messages_store.accept(tx, msg, quota.current_period(int(operator["billing_anchor_day"])))
        except messages_store.QuotaExceeded:
            log.error("operator account %s is at its monthly limit; notification to %s dropped",
                      operator["name"], to)
            return False
        await messages_store.notify_queue(tx)  # sent at commit: a delivery worker takes it at once
        return True
