"""Queue an operator notice to an account's alert address, inside an outbox consumer's transaction.

The one path every operator email takes (quota thresholds, deactivated webhooks): sent from
`notifications.from` through our own queue, DKIM-signed with the operator's domain (the domain of
`notifications.from`, a sending domain of the operator's account), charged to the operator's
account like any message. Queued in the consumer's transaction, so it commits with the cursor's
advance: one email per event. The message id is derived from the event id, so it is stable.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Protocol

from .. import quota
from ..config import Config
from ..core import operator_email
from ..mailbox import valid_mailbox
from ..store import accounts as accounts_store
from ..store import domains as domains_store
from ..store import messages as messages_store
from ..store.types import Conn

log = logging.getLogger(__name__)


class Signer(Protocol):
    async def sign(self, message: bytes, domain: str) -> bytes: ...


class OperatorMail:
    def __init__(self, cfg: Config, signer: Signer) -> None:
        self._sender = cfg.notifications.from_
        self._hostname = cfg.server.hostname
        self._signer = signer

    async def queue(self, tx: Conn, *, event_id: uuid.UUID, account: str, to: str | None, subject: str,
                    body: Sequence[str], category: str) -> bool:
        """Queue the notice; False (with the reason logged when it is a misconfiguration) if not sent."""
        if not to or not self._sender:
            return False
        if not valid_mailbox(to):
            log.error("account %s: alert address %r is not an address; no %s email", account, to, category)
            return False
        domain_name = self._sender.rpartition("@")[2].lower()
        domain = await domains_store.get_by_name(tx, domain_name)
        operator = None if domain is None else await accounts_store.get(tx, int(domain["account_id"]))
        if domain is None or operator is None:
            log.error("notifications.from %s: %s is not a sending domain; no %s email",
                      self._sender, domain_name, category)
            return False
        raw = operator_email.compose(event_id=event_id, sender=self._sender, to=to, subject=subject, body=body,
                                     hostname=self._hostname, now=dt.datetime.now(dt.UTC))
        mid = operator_email.message_id_for(event_id)
        msg = messages_store.NewMessage(
            id=mid, account_id=int(operator["id"]), credential_id=None, domain_id=int(domain["id"]),
            stream="transactional", mail_from=self._sender, header_from=self._sender, subject=subject,
            message_id_header=f"<{mid}@{self._hostname}>", category=category, custom_variables=None,
            client_ip=None, raw=await self._signer.sign(raw, domain_name), recipients=[to],
        )
        try:
            await messages_store.accept(tx, msg, quota.current_period(int(operator["billing_anchor_day"])))
        except messages_store.QuotaExceeded:
            # Dropped rather than holding every later notice back; the event stays.
            log.error("operator account %s is at its monthly limit; %s to %s dropped", operator["name"], category, to)
            return False
        await messages_store.notify_queue(tx)  # sent at commit: a delivery worker takes it at once
        return True
