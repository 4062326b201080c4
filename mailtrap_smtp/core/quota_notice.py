"""The email that tells an account it crossed a threshold of its monthly limit (80/90/100 %).

Pure composition: the message's bytes (RFC 5322, CRLF, ASCII headers) from the facts of a
QUOTA_THRESHOLD event. Queueing and signing are the consumer's (`consumers/quota_notices.py`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import uuid
from dataclasses import dataclass

# A fixed namespace: the notification of one event always gets the same message id.
_NAMESPACE = uuid.UUID("6f1c1f8e-3b0a-4f57-9a58-0e3c8d1b2a44")


@dataclass(frozen=True)
class Crossing:
    event_id: uuid.UUID
    account: str
    threshold: int
    used: int
    limit: int
    period_start: str  # ISO date


def message_id_for(event_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, str(event_id))


def subject(c: Crossing) -> str:
    if c.threshold >= 100:
        return f"Account {c.account} reached its monthly sending limit"
    return f"Account {c.account} used {c.threshold}% of its monthly sending limit"


def compose(c: Crossing, *, sender: str, to: str, hostname: str, now: dt.datetime) -> bytes:
    """The notification as it is queued (before DKIM signing)."""
    mid = message_id_for(c.event_id)
    body = [
        f"Account {c.account} has sent to {c.used} of its {c.limit} recipients for the billing period "
        f"that started on {c.period_start} ({c.threshold}% threshold).",
        "",
        "At 100% further messages are refused (SMTP 535 5.7.0 Monthly messages limit reached) until the",
        "next billing period starts or the account moves to a larger plan (mailtrap-smtp account set-plan).",
    ]
    headers = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject(c)}",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: <{mid}@{hostname}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Auto-Submitted: auto-generated",  # RFC 3834 §5: no auto-replies to it
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode("ascii", "replace")
