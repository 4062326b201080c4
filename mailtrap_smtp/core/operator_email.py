"""An email from the operator to an account's alert address: its bytes (RFC 5322, CRLF, ASCII).

Pure composition shared by every operator notice (quota thresholds, deactivated webhooks); the
queueing and signing are `consumers/operator_mail.py`'s.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import uuid
from collections.abc import Sequence

# A fixed namespace: the notice of one event always gets the same message id.
_NAMESPACE = uuid.UUID("6f1c1f8e-3b0a-4f57-9a58-0e3c8d1b2a44")


def message_id_for(event_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, str(event_id))


def compose(*, event_id: uuid.UUID, sender: str, to: str, subject: str, body: Sequence[str], hostname: str,
            now: dt.datetime) -> bytes:
    """The notice as it is queued (before DKIM signing)."""
    headers = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: <{message_id_for(event_id)}@{hostname}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Auto-Submitted: auto-generated",  # RFC 3834 §5: no auto-replies to it
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode("ascii", "replace")
