"""The one mapping from our events to Mailtrap's three spellings, and the webhook payload (pure)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from mailtrap_smtp.core import event_names as names
from mailtrap_smtp.delivery import bounces
from mailtrap_smtp.events import Event
from mailtrap_smtp.store.outbox import OutboxEvent, Position

MID = uuid.UUID("1df37d17-0286-4d8b-8edf-bc4ec5be86e6")
EID = uuid.UUID("bede7236-2284-43d6-a953-1fdcafd0fdbc")
AT = dt.datetime(2024, 10, 11, 18, 1, 40, 750000, tzinfo=dt.UTC)


def _event(type_: str, details: dict[str, Any], **kw: Any) -> OutboxEvent:
    base: dict[str, Any] = {
        "position": Position(1, 1), "event_id": EID, "type": type_, "account_id": 1, "domain_id": 2,
        "message_id": MID, "recipient_id": 3, "details": details, "created_at": AT,
        "rcpt": "receiver@example.com", "stream": "transactional", "category": None,
        "custom_variables": None, "domain_name": "examplesender.com",
    }
    base.update(kw)
    return OutboxEvent(**base)


@pytest.mark.parametrize(("spelling", "webhook", "config", "log"), [
    (names.DELIVERY, "delivery", "delivery", "delivery"),
    (names.SOFT_BOUNCE, "soft bounce", "soft_bounce", "soft_bounce"),
    (names.BOUNCE, "bounce", "bounce", "bounce"),
    (names.REJECT, "reject", "reject", "reject"),
    (names.SUSPENSION, "suspension", "suspension", "suspension"),
    (names.OPEN, "open", "open", "open"),
    (names.CLICK, "click", "click", "click"),
    (names.UNSUBSCRIBE, "unsubscribe", "unsubscribe", "unsubscribe"),
    (names.SPAM, "spam", "spam_complaint", "spam"),
])
def test_each_event_has_its_three_spellings(spelling: names.Spelling, webhook: str, config: str, log: str) -> None:
    assert (spelling.webhook, spelling.config, spelling.log) == (webhook, config, log)


def test_the_payload_names_are_exactly_mailtraps_nine() -> None:
    assert sorted(s.webhook for s in names.ALL) == sorted(
        ["delivery", "open", "click", "unsubscribe", "spam", "soft bounce", "bounce", "suspension", "reject"])


@pytest.mark.parametrize(("type_", "details", "expected"), [
    (Event.DELIVERY, {"reply": "250 2.0.0 Ok"}, "delivery"),
    (Event.TRANSIENT_FAILURE, {"reply": "451 4.7.1 Greylisted, try again later", "category": "greylisted"},
     "soft bounce"),
    (Event.TRANSIENT_FAILURE, {"reply": "connection refused", "category": "connection_failure"}, None),
    (Event.BOUNCE, {"reply": "550 5.1.1 No such user", "category": "bad_recipient"}, "bounce"),
    (Event.EXPIRATION, {"reply": "451 4.4.1 No answer"}, "bounce"),
    (Event.MANUAL_BOUNCE, {"reason": "bounced by operator"}, "bounce"),
    (Event.SUPPRESSED, {"reason": "Recipient in suppression list. Reason: hard bounce"}, "reject"),
    (Event.SOFT_BOUNCE, {"source": "inbound", "reply": "4.2.2", "category": "mailbox_full"}, "soft bounce"),
    (Event.SOFT_BOUNCE, {"source": "inbound", "reply": ""}, "soft bounce"),
    (Event.BOUNCE, {"source": "inbound", "reply": "smtp; 550 5.1.1 unknown", "category": "bad_recipient"}, "bounce"),
    (Event.SPAM, {"source": "inbound", "feedback_type": "abuse"}, "spam"),
    (Event.RECEPTION, {}, None),
    (Event.MANUAL_RETRY, {}, None),
    (Event.DOMAIN_VERIFIED, {}, None),
    (Event.WEBHOOK_DEACTIVATED, {}, None),
])
def test_which_of_our_events_become_which_webhook_event(type_: str, details: dict[str, Any],
                                                        expected: str | None) -> None:
    s = names.spelling(type_, details)
    assert (s.webhook if s else None) == expected
    payload = names.webhook_payload(_event(type_, details))
    assert (payload["event"] if payload else None) == expected


@pytest.mark.parametrize(("type_", "expected"), [
    (Event.DELIVERY, "delivery"), (Event.TRANSIENT_FAILURE, "soft_bounce"), (Event.BOUNCE, "bounce"),
    (Event.SUPPRESSED, "reject"), (Event.RECEPTION, None),
])
def test_email_log_event_type(type_: str, expected: str | None) -> None:
    assert names.log_event_type(type_, {"reply": "451 4.2.2 Mailbox full"}) == expected


@pytest.mark.parametrize(("ours", "theirs"), sorted(names.BOUNCE_CATEGORIES.items()))
def test_every_bounce_category_maps_into_mailtraps_list(ours: str, theirs: str) -> None:
    assert theirs in names.MAILTRAP_BOUNCE_CATEGORIES
    assert names.bounce_category({"category": ours}) == theirs


def test_every_classification_result_has_a_mailtrap_category() -> None:
    ours = {v for k, v in vars(bounces).items() if k.isupper() and isinstance(v, str) and not k.startswith("_")}
    assert ours <= set(names.BOUNCE_CATEGORIES)


@pytest.mark.parametrize(("reply", "category"), [
    ("550 5.1.1 <x@example.com>: Recipient address rejected: User unknown", "badrecipient"),
    ("552 5.2.2 Mailbox full", "overquota"),
    ("554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org", "spam"),
    ("451 4.7.1 Greylisted, please try again later", "greylisting"),
])
def test_a_category_missing_from_the_details_comes_from_the_reply(reply: str, category: str) -> None:
    assert names.bounce_category({"reply": reply}) == category


def test_a_bounce_payload_matches_mailtraps_example() -> None:
    e = _event(Event.BOUNCE, {"reply": "555 [CS01] Message rejected due to local policy", "category": "spam_block"})
    assert names.webhook_payload(e) == {
        "event": "bounce", "timestamp": 1728669700, "sending_stream": "transactional",
        "message_id": str(MID), "email": "receiver@example.com", "event_id": str(EID),
        "response": "[CS01] Message rejected due to local policy", "response_code": 555,
        "bounce_category": "spam", "sending_domain_name": "examplesender.com",
    }


def test_category_and_custom_variables_are_echoed_when_set() -> None:
    e = _event(Event.DELIVERY, {"reply": "250 ok"}, category="welcome", custom_variables={"user_id": "42"},
               stream="bulk")
    p = names.webhook_payload(e)
    assert p is not None
    assert (p["category"], p["custom_variables"], p["sending_stream"]) == ("welcome", {"user_id": "42"}, "bulk")
    assert isinstance(p["timestamp"], int)
    assert "response" not in p and "reason" not in p


@pytest.mark.parametrize(("reply", "response", "code"), [
    ("smtp; 550 5.1.1 <r@x.test>: user unknown", "5.1.1 <r@x.test>: user unknown", 550),
    ("X-Postfix; 552 5.2.2 mailbox full", "5.2.2 mailbox full", 552),
    ("5.1.1", "5.1.1", None),
])
def test_a_reported_bounce_keeps_the_remote_words_without_the_diagnostic_type(reply: str, response: str,
                                                                             code: int | None) -> None:
    p = names.webhook_payload(_event(Event.BOUNCE, {"source": "inbound", "reply": reply}))
    assert p is not None
    assert (p["response"], p.get("response_code")) == (response, code)


def test_a_reject_carries_its_reason() -> None:
    reason = "Recipient in suppression list. Reason: manual import"
    p = names.webhook_payload(_event(Event.SUPPRESSED, {"reason": reason}))
    assert p is not None and p["reason"] == reason and "bounce_category" not in p


@pytest.mark.parametrize(("config", "ours"), [
    (["delivery"], ["delivery"]),
    (["soft_bounce"], ["soft_bounce", "transient_failure"]),
    (["bounce"], ["bounce", "expiration", "manual_bounce"]),
    (["reject", "delivery"], ["delivery", "suppressed"]),
    (["soft_bounce", "spam_complaint"], ["soft_bounce", "spam", "transient_failure"]),
    (["open", "click"], []),
    (["open", "click", "unsubscribe"], ["unsubscribe"]),  # the one-click List-Unsubscribe endpoint's
])
def test_our_types_for_a_webhooks_event_types(config: list[str], ours: list[str]) -> None:
    assert names.our_types(config) == ours


def test_the_payload_names_the_message_by_the_recipients_public_id_when_known() -> None:
    public = uuid.UUID("17287920-571a-11f0-0040-f13664d022fb")
    assert names.webhook_payload(_event("delivery", {}, recipient_public_id=public))["message_id"] == str(public)
    assert names.webhook_payload(_event("delivery", {}))["message_id"] == str(MID)


def test_an_unsubscribe_is_mailtraps_unsubscribe_webhook() -> None:
    p = names.webhook_payload(_event(Event.UNSUBSCRIBE, {"source": "one_click"}))
    assert p is not None and p["event"] == "unsubscribe"
    assert "reason" not in p and "bounce_category" not in p
