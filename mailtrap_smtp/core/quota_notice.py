"""The email that tells an account it crossed a threshold of its monthly limit (80/90/100 %).

Pure composition: its subject and text from the facts of a QUOTA_THRESHOLD event. The message
around them is `core/operator_email.py`'s; queueing and signing are `consumers/operator_mail.py`'s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Crossing:
    event_id: uuid.UUID
    account: str
    threshold: int
    used: int
    limit: int
    period_start: str  # ISO date


def subject(c: Crossing) -> str:
    if c.threshold >= 100:
        return f"Account {c.account} reached its monthly sending limit"
    return f"Account {c.account} used {c.threshold}% of its monthly sending limit"


def body(c: Crossing) -> list[str]:
    return [
        f"Account {c.account} has sent to {c.used} of its {c.limit} recipients for the billing period "
        f"that started on {c.period_start} ({c.threshold}% threshold).",
        "",
        "At 100% further messages are refused (SMTP 535 5.7.0 Monthly messages limit reached) until the",
        "next billing period starts or the account moves to a larger plan (mailtrap-smtp account set-plan).",
    ]
