"""The one mapping from our event vocabulary to Mailtrap's, and the webhook payload of an event.

Mailtrap spells the same event three ways (MAILTRAP_COMPAT §5.2): the webhook payload's `event`
(`soft bounce` with a space), the webhook configuration's `event_types` (`soft_bounce`,
`spam_complaint`) and the email log's `event_type` (`soft_bounce`, `spam`). Each is emitted only in
its own place, from the table below; nothing else spells them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..delivery import bounces
from ..events import Event
from ..store.outbox import OutboxEvent


@dataclass(frozen=True)
class Spelling:
    webhook: str   # webhook payload `event`
    config: str    # webhook configuration `event_types`
    log: str       # email log `event_type`


DELIVERY = Spelling("delivery", "delivery", "delivery")
SOFT_BOUNCE = Spelling("soft bounce", "soft_bounce", "soft_bounce")
BOUNCE = Spelling("bounce", "bounce", "bounce")
REJECT = Spelling("reject", "reject", "reject")
SUSPENSION = Spelling("suspension", "suspension", "suspension")
OPEN = Spelling("open", "open", "open")
CLICK = Spelling("click", "click", "click")
UNSUBSCRIBE = Spelling("unsubscribe", "unsubscribe", "unsubscribe")
SPAM = Spelling("spam", "spam_complaint", "spam")

ALL: tuple[Spelling, ...] = (DELIVERY, OPEN, CLICK, UNSUBSCRIBE, SPAM, SOFT_BOUNCE, BOUNCE, SUSPENSION, REJECT)
CONFIG_NAMES: frozenset[str] = frozenset(s.config for s in ALL)
BY_CONFIG: dict[str, Spelling] = {s.config: s for s in ALL}

# Our events that Mailtrap's users see, and as what. A TRANSIENT_FAILURE of our own delivery is a
# soft bounce only when a remote server replied (a refused connection or a DNS timeout is not a
# bounce of the message); `spelling()` applies that rule. SOFT_BOUNCE and SPAM come from reports
# received later at the inbound listener (a delayed DSN, an ARF complaint), as does a BOUNCE with
# details.source = "inbound". UNSUBSCRIBE comes from the one-click List-Unsubscribe endpoint.
# Opens and clicks have no event of ours yet (no tracking), nor has `suspension`: their rows are
# in ALL so that filters accept them.
_OURS: dict[str, Spelling] = {
    Event.DELIVERY: DELIVERY,
    Event.TRANSIENT_FAILURE: SOFT_BOUNCE,
    Event.SOFT_BOUNCE: SOFT_BOUNCE,
    Event.BOUNCE: BOUNCE,
    Event.EXPIRATION: BOUNCE,      # given up after the queue lifetime: permanently undelivered
    Event.MANUAL_BOUNCE: BOUNCE,   # an operator's `queue bounce`: the user sees a bounce
    Event.SUPPRESSED: REJECT,      # accepted, never delivered: on the suppression list
    Event.SPAM: SPAM,              # a complaint (feedback loop)
    Event.UNSUBSCRIBE: UNSUBSCRIBE,  # a one-click List-Unsubscribe POST (RFC 8058)
}

# Our bounce classification (delivery/bounces.py) → Mailtrap's `bounce_category` (§5.2's list).
# badrecipient, overquota and timeout are the categories that auto-suppress, so only a reply that
# shows the address itself is bad (or full, or unreachable for the whole queue lifetime) maps there.
BOUNCE_CATEGORIES: dict[str, str] = {
    bounces.BAD_RECIPIENT: "badrecipient",
    bounces.INACTIVE_MAILBOX: "badrecipient",
    bounces.BAD_DOMAIN: "dnsFail",
    bounces.DNS_FAILURE: "dnsFail",
    bounces.BAD_SENDER: "badsender",
    bounces.AUTHENTICATION: "badsender",
    bounces.MAILBOX_FULL: "overquota",
    bounces.MESSAGE_TOO_LARGE: "content",
    bounces.CONTENT_REJECTED: "content",
    bounces.POLICY: "serverpolicy",
    bounces.SPAM_BLOCK: "spam",
    bounces.GREYLISTED: "greylisting",
    bounces.THROTTLED: "transientfail",
    bounces.CONNECTION_FAILURE: "timeout",
    bounces.TLS_REQUIRED: "relayfail",
    bounces.PROTOCOL_ERROR: "serverfail",
    bounces.INVALID_ENVELOPE: "generalfail",
    bounces.SMTPUTF8_UNSUPPORTED: "relayfail",  # like TLS required: this MX cannot carry the message
    bounces.OTHER: "other",
}
MAILTRAP_BOUNCE_CATEGORIES = frozenset({
    "transientfail", "greylisting", "badsender", "block", "content", "dnsFail", "generalfail", "other",
    "relayfail", "serverfail", "spam", "verifyfail", "timeout", "badrecipient", "overquota", "serverpolicy",
    "spam_gmail"})


# RFC 3464 §2.3.6: a DSN's Diagnostic-Code starts with its type ("smtp; 550 5.1.1 ...").
_DIAGNOSTIC_TYPE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9-]*\s*;\s*")


def _reply(details: dict[str, Any]) -> bounces.RemoteReply:
    text = str(details.get("reply") or details.get("reason") or "")
    return bounces.parse_line(_DIAGNOSTIC_TYPE.sub("", text, count=1))


def spelling(type_: str, details: dict[str, Any]) -> Spelling | None:
    """How Mailtrap names our event `type_`, or None if Mailtrap's users never see it."""
    if type_ == Event.TRANSIENT_FAILURE and _reply(details).code == 0:
        return None
    return _OURS.get(type_)


def bounce_category(details: dict[str, Any]) -> str:
    """Mailtrap's category for a bounce or soft bounce, from ours (or from the reply when absent)."""
    ours = details.get("category")
    if not isinstance(ours, str) or ours not in BOUNCE_CATEGORIES:
        reply = _reply(details)
        ours = bounces.classify(reply) if reply.code else bounces.CONNECTION_FAILURE
    return BOUNCE_CATEGORIES[ours]


def webhook_payload(e: OutboxEvent) -> dict[str, Any] | None:
    """The webhook event of `e` (§5.2), or None if it is not one. `event_id` is the row's own uuid,
    so the same event posted twice carries the same id."""
    s = spelling(e.type, e.details)
    if s is None or e.message_id is None:
        return None
    out: dict[str, Any] = {
        "event": s.webhook,
        "message_id": str(e.recipient_public_id or e.message_id),
        "event_id": str(e.event_id),
        "email": e.rcpt or "",
        "timestamp": int(e.created_at.timestamp()),
        "sending_stream": e.stream or "transactional",
        "sending_domain_name": e.domain_name or "",
    }
    if e.category:
        out["category"] = e.category
    if e.custom_variables:
        out["custom_variables"] = e.custom_variables
    if s in (BOUNCE, SOFT_BOUNCE):
        reply = _reply(e.details)
        out["response"] = reply.text
        if reply.code:
            out["response_code"] = reply.code
        out["bounce_category"] = bounce_category(e.details)
    elif s in (REJECT, SUSPENSION):
        out["reason"] = str(e.details.get("reason") or "")
    return out


def log_event_type(type_: str, details: dict[str, Any]) -> str | None:
    """The email log's `event_type` for our event, or None if the log does not show it."""
    s = spelling(type_, details)
    return s.log if s else None


def our_types(config_names: list[str] | tuple[str, ...] | frozenset[str]) -> list[str]:
    """Our event types that can produce the given webhook `event_types` (for filtering in SQL)."""
    wanted = {BY_CONFIG[n] for n in config_names if n in BY_CONFIG}
    return sorted(str(t) for t, s in _OURS.items() if s in wanted)
