"""Send a test event to a webhook now ("send test" of the dashboard): one sample `delivery` event in
the webhook's own format, signed with its secret, POSTed once through the guarded client, and
written to its delivery log like any attempt. The outbox and the webhook's cursor are untouched:
the event is not stored, not retried, and never counts towards deactivation.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from ..config import WebhooksConfig
from ..hooks import delivery
from ..store import webhooks as store
from .webhooks import WebhookNotFound

TEST_RECIPIENT = "test@example.com"  # RFC 2606: a name that never receives mail


def sample(row: Any, event_id: uuid.UUID, now: dt.datetime) -> dict[str, Any]:
    """A `delivery` event of §5.2 naming nothing real (a fresh message id, the reserved example.com)."""
    return {"event": "delivery", "message_id": str(uuid.uuid4()), "event_id": str(event_id),
            "email": TEST_RECIPIENT, "timestamp": int(now.timestamp()),
            "sending_stream": row["sending_stream"] or "transactional", "sending_domain_name": "example.com",
            "category": "webhook test"}


async def send_test(pool: Any, cfg: WebhooksConfig, account_id: int | None, webhook_id: int) -> delivery.Attempt:
    row = await store.get(pool, webhook_id, account_id)
    if row is None:
        raise WebhookNotFound(webhook_id)
    now = dt.datetime.now(dt.UTC)
    event_id = uuid.uuid4()
    body = delivery.encode([sample(row, event_id, now)], row["payload_format"])
    async with delivery.make_client(cfg) as client:
        attempt = await delivery.post(client, row["url"], body, delivery.CONTENT_TYPES[row["payload_format"]],
                                      delivery.sign(row["signing_secret"], body), cfg.timeout_seconds)
    await store.record_attempt(pool, webhook_id, at=now, events=1, first_event_id=event_id, last_event_id=event_id,
                               status=attempt.status, latency_ms=attempt.latency_ms, error=attempt.error,
                               acknowledged=attempt.acknowledged)
    return attempt
