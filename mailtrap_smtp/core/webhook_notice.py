"""The email that tells an account one of its webhooks was deactivated after its retries ran out.

Pure composition: its subject and text from a WEBHOOK_DEACTIVATED event, whose `url` is already
without credentials or query (`hooks.delivery.redacted_url`), so neither reaches the email. The
message around them is `core/operator_email.py`'s; queueing and signing are `consumers/operator_mail.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deactivation:
    account: str
    webhook_id: int
    url: str  # redacted
    attempts: int


def subject(d: Deactivation) -> str:
    return f"Webhook {d.webhook_id} of account {d.account} was deactivated"


def body(d: Deactivation) -> list[str]:
    return [
        f"Webhook {d.webhook_id} ({d.url}) of account {d.account} was deactivated after {d.attempts} failed "
        "delivery attempts.",
        "",
        "Its events are kept: once the receiver answers HTTP 200 again, resume it with an update",
        f"(mailtrap-smtp webhook update {d.webhook_id} --activate, or the API); delivery continues",
        "where it stopped.",
    ]
