"""Email logs (MAILTRAP_COMPAT §7.1, §9 item 33): messages sent over real SMTP, delivered to a real
MX sink, then listed, filtered, paged, shown with their events and a signed raw-message URL, and
parsed by the official SDK's models."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import smtplib
import uuid
from typing import Any

import pytest
from mailtrap.models.email_logs import EmailLogMessage, EmailLogsListFilters, filter_ci_contain

from mailtrap_smtp.core import email_logs as logs
from mailtrap_smtp.core import suppressions as sup
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import domains
from tests import smtp_util
from tests.delivery_util import FAST
from tests.mx_sink import MxSink
from tests.smtp_util import DOMAIN, SENDER, Env, message

smtp = smtp_util.smtp  # fixture
smtp_factory = smtp_util.smtp_factory  # fixture

SENT = [  # (recipient, subject, category, MX reply)
    ("ok@dest.test", "Welcome", "welcome", None),
    ("gone@dest.test", "Reset", "password", "550 5.1.1 <gone@dest.test>: User unknown"),
    ("busy@dest.test", "Invoice", None, "452 4.2.2 Mailbox full, try later"),
    ("sup@dest.test", "Welcome back", "welcome", None),
]


def _send(env: Env, rcpt: str, subject: str, category: str | None) -> str:
    extra = f"X-MT-Category: {category}\r\n" if category else ""
    with smtplib.SMTP("127.0.0.1", env.port, timeout=10) as s:
        s.starttls(context=env.ssl_context)
        s.login("api", env.token)
        s.mail(SENDER)
        s.rcpt(rcpt)
        code, text = s.data(message(subject=subject, extra=extra))
        assert code == 250
        return text.decode().rsplit(" ", 1)[1]


@pytest.fixture
async def sent(smtp: Env, make_config: Any) -> dict[str, str]:
    """The four messages of SENT, delivered once; {recipient: public id of its log entry}."""
    did = int((await domains.get_by_name(smtp.pool, DOMAIN))["id"])
    await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("sup@dest.test", did))
    with MxSink() as sink:
        for rcpt, subject, category, reply in SENT:
            if reply:
                sink.rcpt_replies[rcpt] = reply
            await asyncio.to_thread(_send, smtp, rcpt, subject, category)
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
        await DeliveryService(cfg, smtp.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    rows = await smtp.pool.fetch("SELECT rcpt, public_id FROM recipients")
    return {r["rcpt"]: str(r["public_id"]) for r in rows}


async def test_list_newest_first_with_both_domain_keys_and_sdk_parses(smtp: Env, sent: dict[str, str]) -> None:
    got = await logs.list_logs(smtp.pool, smtp.account.id, logs.ListRequest())
    assert got["total_count"] == 4 and got["next_page_cursor"] is None
    assert [m["to"] for m in got["messages"]] == [r for r, *_ in reversed(SENT)]
    did = int((await domains.get_by_name(smtp.pool, DOMAIN))["id"])
    status = {m["to"]: m["status"] for m in got["messages"]}
    assert status == {"ok@dest.test": "delivered", "gone@dest.test": "not_delivered",
                      "busy@dest.test": "enqueued", "sup@dest.test": "not_delivered"}
    for m in got["messages"]:
        assert m["sending_domain_id"] == did and m["domain_id"] == did
        assert m["message_id"] == sent[m["to"]] and m["from"] == SENDER and m["sending_stream"] == "transactional"
        parsed = EmailLogMessage.from_api(json.loads(json.dumps(m)))
        assert parsed.message_id == m["message_id"] and parsed.sending_domain_id == did
    first = got["messages"][-1]
    assert first["subject"] == "Welcome" and first["category"] == "welcome" and first["client_ip"] == "127.0.0.1"


async def test_cursor_pages_through_everything_once(smtp: Env, sent: dict[str, str]) -> None:
    seen: list[str] = []
    req = logs.ListRequest()
    while True:
        got = await logs.list_logs(smtp.pool, smtp.account.id, req, page_size=3)
        seen += [m["message_id"] for m in got["messages"]]
        assert got["total_count"] == 4
        if got["next_page_cursor"] is None:
            break
        req = logs.ListRequest(search_after=uuid.UUID(got["next_page_cursor"]))
    assert len(seen) == 4 and set(seen) == set(sent.values())


async def test_show_has_events_in_the_log_spelling_and_a_signed_raw_url(smtp: Env, sent: dict[str, str]) -> None:
    urls = logs.RawUrls(b"k" * 32, "https://api.test:8443", 3600)
    now = dt.datetime.now(dt.UTC)
    shown = {r: await logs.show(smtp.pool, smtp.account.id, uuid.UUID(i), raw_url=urls, now=now)
             for r, i in sent.items()}
    (delivery,) = shown["ok@dest.test"]["events"]
    assert delivery["event_type"] == "delivery"
    assert delivery["details"] == {"sending_ip": None, "recipient_mx": "127.0.0.1",
                                   "email_service_provider": "127.0.0.1"}
    (bounce,) = shown["gone@dest.test"]["events"]
    assert bounce["event_type"] == "bounce" and bounce["details"]["bounce_category"] == "badrecipient"
    assert bounce["details"]["email_service_provider_status"] == "5.1.1"
    assert bounce["details"]["email_service_provider_response"].startswith("550 5.1.1")
    (soft,) = shown["busy@dest.test"]["events"]
    assert soft["event_type"] == "soft_bounce" and soft["details"]["bounce_category"] == "overquota"
    (reject,) = shown["sup@dest.test"]["events"]
    assert reject == {"event_type": "reject", "created_at": reject["created_at"],
                      "details": {"reject_reason": "Recipient in suppression list. Reason: manual import"}}
    for m in shown.values():
        parsed = EmailLogMessage.from_api(json.loads(json.dumps(m)))
        assert len(parsed.events) == 1 and parsed.raw_message_url == m["raw_message_url"]

    url = shown["ok@dest.test"]["raw_message_url"]
    assert url.startswith(f"https://api.test:8443/api/email_logs/{sent['ok@dest.test']}/raw?expires=")
    query = dict(p.split("=") for p in url.split("?")[1].split("&"))
    entry = uuid.UUID(sent["ok@dest.test"])
    assert urls.valid(entry, query["expires"], query["signature"], now)
    assert not urls.valid(entry, query["expires"], query["signature"], now + dt.timedelta(seconds=3601))
    assert not urls.valid(uuid.UUID(sent["gone@dest.test"]), query["expires"], query["signature"], now)
    assert not urls.valid(entry, str(int(query["expires"]) + 1), query["signature"], now)
    assert not logs.RawUrls(b"x" * 32, "", 3600).valid(entry, query["expires"], query["signature"], now)
    raw = await logs.raw_message(smtp.pool, smtp.account.id, entry)
    assert raw == bytes(await smtp.pool.fetchval("SELECT raw FROM messages m JOIN recipients r ON r.message_id = m.id"
                                                 " WHERE r.public_id = $1", entry))


async def test_show_by_smtp_queued_as_id_and_other_account_not_found(smtp: Env, sent: dict[str, str]) -> None:
    mid = await smtp.pool.fetchval("SELECT message_id FROM recipients WHERE rcpt = 'ok@dest.test'")
    shown = await logs.show(smtp.pool, smtp.account.id, mid)
    assert shown["message_id"] == sent["ok@dest.test"] and shown["raw_message_url"] is None
    other = await smtp_util.create_account(smtp.pool, "other", domain="other.test")
    with pytest.raises(sup.NotFound):
        await logs.show(smtp.pool, other.id, uuid.UUID(sent["ok@dest.test"]))
    with pytest.raises(sup.NotFound):
        await logs.raw_message(smtp.pool, other.id, uuid.UUID(sent["ok@dest.test"]))
    assert (await logs.list_logs(smtp.pool, other.id, logs.ListRequest()))["total_count"] == 0


def q(**params: str | list[str]) -> dict[str, list[str]]:
    return {k.replace("__", "][").replace("f_", "filters[", 1) + "]": v if isinstance(v, list) else [v]
            for k, v in params.items()}


@pytest.mark.parametrize(("params", "expected"), [
    (q(f_to__operator="ci_equal", f_to__value="OK@dest.test"), {"ok"}),
    (q(f_to__operator="ci_not_equal", f_to__value="ok@dest.test"), {"gone", "busy", "sup"}),
    (q(f_to__operator="ci_contain", f_to__value="US"), {"busy"}),
    (q(f_to__operator="ci_not_contain", f_to__value="o"), {"busy", "sup"}),
    (q(f_subject__operator="equal", f_subject__value__=["Welcome", "Reset"]), {"ok", "gone"}),
    (q(f_subject__operator="not_equal", f_subject__value="Welcome"), {"gone", "busy", "sup"}),
    (q(f_category__operator="empty"), {"busy"}),
    (q(f_category__operator="not_empty"), {"ok", "gone", "sup"}),
    (q(f_status__operator="equal", f_status__value="not_delivered"), {"gone", "sup"}),
    (q(f_status__operator="not_equal", f_status__value__=["delivered", "enqueued"]), {"gone", "sup"}),
    (q(f_events__operator="include_event", f_events__value="soft_bounce"), {"busy"}),
    (q(f_events__operator="include_event", f_events__value__=["bounce", "reject"]), {"gone", "sup"}),
    (q(f_events__operator="not_include_event", f_events__value="delivery"), {"gone", "busy", "sup"}),
    (q(f_opens_count__operator="greater_than", f_opens_count__value="0"), set()),
    (q(f_clicks_count__operator="equal", f_clicks_count__value="0"), {"ok", "gone", "busy", "sup"}),
    (q(f_recipient_mx__operator="ci_equal", f_recipient_mx__value="127.0.0.1"), {"ok", "gone", "busy"}),
    (q(f_recipient_mx__operator="empty"), {"sup"}),
    (q(f_email_service_provider_response__operator="ci_contain",
       f_email_service_provider_response__value="user unknown"), {"gone"}),
    (q(f_client_ip__operator="equal", f_client_ip__value="127.0.0.1"), {"ok", "gone", "busy", "sup"}),
    (q(f_sending_stream__operator="equal", f_sending_stream__value="bulk"), set()),
    (q(f_sending_domain_id__operator="not_equal", f_sending_domain_id__value="0"), {"ok", "gone", "busy", "sup"}),
    (q(f_domain_id__operator="equal", f_domain_id__value="0"), set()),
    (q(f_nosuch__operator="equal", f_nosuch__value="x"), {"ok", "gone", "busy", "sup"}),  # ignored
    ({"filters[sent_after]": ["2000-01-01T00:00:00Z"], "filters[sent_before]": ["2000-01-02"]}, set()),
    (q(f_to__operator="ci_contain", f_to__value="%"), set()),   # a literal %, not a wildcard
    (q(f_to__operator="ci_contain", f_to__value="_"), set()),   # a literal _, not a wildcard
])
async def test_filters(smtp: Env, sent: dict[str, str], params: dict[str, list[str]], expected: set[str]) -> None:
    got = await logs.list_logs(smtp.pool, smtp.account.id, logs.parse_query(params))
    assert {m["to"].split("@")[0] for m in got["messages"]} == expected
    assert got["total_count"] == len(expected)


@pytest.mark.parametrize(("params", "errors"), [
    (q(f_to__operator="like", f_to__value="x"), {"filters[to][operator]": [
        "must be one of: ci_equal, ci_not_equal, ci_contain, ci_not_contain, equal, not_equal, empty, not_empty"]}),
    (q(f_to__value="x"), {"filters[to][operator]": [
        "must be one of: ci_equal, ci_not_equal, ci_contain, ci_not_contain, equal, not_equal, empty, not_empty"]}),
    (q(f_to__operator="ci_equal"), {"filters[to][value]": ["can't be blank"]}),
    (q(f_status__operator="equal", f_status__value="lost"),
     {"filters[status][value]": ["must be one of: delivered, not_delivered, enqueued, opted_out"]}),
    (q(f_sending_stream__operator="equal", f_sending_stream__value="any"),
     {"filters[sending_stream][value]": ["must be one of: transactional, bulk"]}),
    (q(f_events__operator="include_event", f_events__value="soft bounce"), {"filters[events][value]": [
        "must be one of: bounce, click, delivery, open, reject, soft_bounce, spam, suspension, unsubscribe"]}),
    (q(f_events__operator="equal", f_events__value="delivery"),
     {"filters[events][operator]": ["must be one of: include_event, not_include_event"]}),
    (q(f_sending_domain_id__operator="equal", f_sending_domain_id__value="1; DROP TABLE messages"),
     {"filters[sending_domain_id][value]": ["must be an integer"]}),
    (q(f_opens_count__operator="ci_contain", f_opens_count__value="1"),
     {"filters[opens_count][operator]": ["must be one of: equal, not_equal, greater_than, less_than, empty, "
                                         "not_empty"]}),
    ({"filters[sent_after]": ["last week"]}, {"filters[sent_after]": ["is not an ISO 8601 time"]}),
    ({"search_after": ["not-a-uuid"]}, {"search_after": ["is not a message id"]}),
])
def test_invalid_filters_are_refused(params: dict[str, list[str]], errors: dict[str, list[str]]) -> None:
    with pytest.raises(sup.Invalid) as e:
        logs.parse_query(params)
    assert e.value.errors == errors


async def test_unknown_cursor_is_refused(smtp: Env, sent: dict[str, str]) -> None:
    with pytest.raises(sup.Invalid) as e:
        await logs.list_logs(smtp.pool, smtp.account.id, logs.ListRequest(search_after=uuid.uuid4()))
    assert e.value.errors == {"search_after": ["is not a message id of this account"]}


async def test_query_the_sdk_builds_is_understood(smtp: Env, sent: dict[str, str]) -> None:
    params = EmailLogsListFilters(to=filter_ci_contain("gone"), sent_after="2000-01-01T00:00:00Z").to_params()
    got = await logs.list_logs(smtp.pool, smtp.account.id, logs.parse_query(
        {k: v if isinstance(v, list) else [str(v)] for k, v in params.items()}))
    assert [m["to"] for m in got["messages"]] == ["gone@dest.test"]
