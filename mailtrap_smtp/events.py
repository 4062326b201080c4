"""The event vocabulary: every event type the service records, defined once."""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    # A message's life (DESIGN §2).
    RECEPTION = "reception"                  # accepted and queued (one per message)
    DELIVERY = "delivery"                    # remote 2xx (or captured in sandbox mode)
    TRANSIENT_FAILURE = "transient_failure"  # 4xx / network / DNS temporary: retried later
    BOUNCE = "bounce"                        # 5xx or permanent DNS failure; or a later DSN (details.source)
    EXPIRATION = "expiration"                # still undelivered after the maximum queue lifetime
    SUPPRESSED = "suppressed"                # a recipient on the suppression list: accepted, never delivered
    # An account's usage.
    QUOTA_THRESHOLD = "quota_threshold"      # a charge took the account across an alert threshold (once per period)
    # Operator actions on the queue.
    MANUAL_RETRY = "manual_retry"
    MANUAL_BOUNCE = "manual_bounce"
    # A sending domain's DNS state.
    DOMAIN_VERIFIED = "domain_verified"
    DOMAIN_FAILING = "domain_failing"        # records broke; still sending within the grace period
    DOMAIN_SUSPENDED = "domain_suspended"    # grace period over; may not send
    DOMAIN_APPROVED = "domain_approved"
    DKIM_ROTATED = "dkim_rotated"
    # Feedback that arrives later at the inbound listener, for a message already handed over
    # (details.source = "inbound"; a hard DSN is a BOUNCE with that source).
    SOFT_BOUNCE = "soft_bounce"              # a DSN reporting a temporary failure (Action: delayed, 4.x.x)
    SPAM = "spam"                            # a spam complaint (RFC 5965 ARF feedback report)
    # Webhooks (hooks/).
    WEBHOOK_DEACTIVATED = "webhook_deactivated"  # every retry of a batch failed: active = false


# The `reason` of a SUPPRESSED event, completed by the suppression's type (MAILTRAP_COMPAT §5.2).
SUPPRESSED_REASON = "Recipient in suppression list. Reason: "
