"""Suppressions (MAILTRAP_COMPAT §6, §9 item 22): the use cases, and what a suppressed recipient
gets at submission over real SMTP: accepted with an id, never delivered, not charged, a SUPPRESSED
event with Mailtrap's reason text."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import smtplib
import uuid
from typing import Any

import pytest

from mailtrap_smtp import outbox
from mailtrap_smtp.consumers.auto_suppressions import AutoSuppressions, suppressing
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


@pytest.fixture
def sink() -> Any:
    with MxSink() as s:
        yield s


async def domain_id(env: Env, name: str = DOMAIN) -> int:
    return int((await domains.get_by_name(env.pool, name))["id"])


async def count(env: Env) -> int:
    return int(await env.pool.fetchval("SELECT count(*) FROM suppressions"))


def send(env: Env, rcpts: list[str], raw: bytes | None = None) -> tuple[int, str]:
    """smtplib over STARTTLS (real TLS); the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", env.port, timeout=10) as s:
        s.starttls(context=env.ssl_context)
        s.login("api", env.token)
        s.mail(SENDER)
        for r in rcpts:
            assert s.rcpt(r)[0] == 250
        code, text = s.data(raw or message())
        return code, text.decode()


# --- use cases -------------------------------------------------------------------------------------

async def test_add_returns_the_suppression_object_with_every_field(smtp: Env) -> None:
    did = await domain_id(smtp)
    obj = await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("Gone@Dest.test", did, "transactional"))
    assert set(obj) == {"id", "type", "created_at", "email", "sending_stream", "domain_name", *sup.MESSAGE_FIELDS}
    assert obj["type"] == "manual import" and obj["email"] == "Gone@Dest.test"
    assert obj["sending_stream"] == "transactional" and obj["domain_name"] == DOMAIN
    assert uuid.UUID(obj["id"]) and dt.datetime.fromisoformat(obj["created_at"])
    # Adding it again (any case) returns the same entry; nothing new is stored.
    again = await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("gone@dest.TEST", did, "transactional"))
    assert again == obj and await count(smtp) == 1


async def test_add_many_one_statement_keeps_order_and_dedupes(smtp: Env) -> None:
    did = await domain_id(smtp)
    await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("b@x.test", did))
    got = await sup.add(smtp.pool, smtp.account.id, [
        sup.Entry("a@x.test", did), sup.Entry("b@x.test", did), sup.Entry("A@x.test", did),
        sup.Entry("c@x.test", did, "bulk", "unsubscription")])
    assert [(o["email"], o["sending_stream"], o["type"]) for o in got] == [
        ("a@x.test", "any", "manual import"), ("b@x.test", "any", "manual import"),
        ("c@x.test", "bulk", "unsubscription")]
    assert await count(smtp) == 3


async def test_up_to_1000_per_domain_per_call(smtp: Env) -> None:
    did = await domain_id(smtp)
    got = await sup.add(smtp.pool, smtp.account.id, [sup.Entry(f"u{i}@x.test", did) for i in range(1000)])
    assert len(got) == 1000
    with pytest.raises(sup.Invalid) as e:
        await sup.add(smtp.pool, smtp.account.id, [sup.Entry(f"v{i}@x.test", did) for i in range(1001)])
    assert e.value.errors == {"base": ["at most 1000 suppressions per domain in one request"]}
    assert await count(smtp) == 1000


@pytest.mark.parametrize(("entry", "errors"), [
    (dict(email=""), {"email": ["can't be blank"]}),
    (dict(email=None), {"email": ["can't be blank"]}),
    (dict(email=5), {"email": ["can't be blank"]}),
    (dict(email="no-at-sign"), {"email": ["is invalid"]}),
    (dict(email="a@b@c.test"), {"email": ["is invalid"]}),
    (dict(email="a b@c.test"), {"email": ["is invalid"]}),
    # Internationalised addresses are suppressible (tests/core/test_suppressions_utf8.py); what the
    # mailbox rule refuses in them is refused here too.
    (dict(email="a\u202eb@c.test"), {"email": ["is invalid"]}),     # a bidirectional override
    (dict(email="a\u200bb@c.test"), {"email": ["is invalid"]}),     # a zero-width space
    (dict(email="a@\u2603.test"), {"email": ["is invalid"]}),       # a symbol IDNA 2008 refuses
    (dict(email="\u00e9" * 33 + "@c.test"), {"email": ["is invalid"]}),  # 66 octets before the @
    (dict(email="x" * 250 + "@c.test"), {"email": ["is invalid"]}),
    (dict(email="a@c.test\r\nBcc: x@y"), {"email": ["is invalid"]}),
    (dict(domain_id=None), {"domain_id": ["can't be blank"]}),
    (dict(domain_id="1"), {"domain_id": ["is invalid"]}),
    (dict(domain_id=True), {"domain_id": ["is invalid"]}),
    (dict(sending_stream="marketing"), {"sending_stream": ["must be one of: transactional, bulk, any"]}),
    (dict(sending_stream=None), {"sending_stream": ["must be one of: transactional, bulk, any"]}),
    (dict(type="bounce"), {"type": ["must be one of: hard bounce, unsubscription, spam complaint, manual import"]}),
])
async def test_invalid_entry_is_refused_and_nothing_stored(smtp: Env, entry: dict[str, Any],
                                                           errors: dict[str, list[str]]) -> None:
    did = await domain_id(smtp)
    fields: dict[str, Any] = {"email": "ok@x.test", "domain_id": did, "sending_stream": "any",
                              "type": "manual import", **entry}
    with pytest.raises(sup.Invalid) as e:
        await sup.add_one(smtp.pool, smtp.account.id, sup.Entry(**fields))
    assert e.value.errors == errors
    assert await count(smtp) == 0


async def test_one_bad_entry_refuses_the_whole_call(smtp: Env) -> None:
    did = await domain_id(smtp)
    with pytest.raises(sup.Invalid) as e:
        await sup.add(smtp.pool, smtp.account.id, [sup.Entry("ok@x.test", did), sup.Entry("bad", did)])
    assert e.value.errors == {"email[1]": ["is invalid"]}
    assert await count(smtp) == 0


async def test_domain_of_another_account_is_not_found(smtp: Env) -> None:
    other = await smtp_util.create_account(smtp.pool, "other", domain="other.test")
    foreign = await domain_id(smtp, "other.test")
    with pytest.raises(sup.NotFound):
        await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("a@x.test", foreign))
    with pytest.raises(sup.NotFound):
        await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("a@x.test", 999_999))
    assert await count(smtp) == 0
    mine = await sup.add_one(smtp.pool, other.id, sup.Entry("a@x.test", foreign))
    assert await sup.search(smtp.pool, smtp.account.id) == []  # not visible to another account
    with pytest.raises(sup.NotFound):
        await sup.delete(smtp.pool, smtp.account.id, uuid.UUID(mine["id"]))
    assert await count(smtp) == 1


async def test_search_by_email_exact_case_insensitive_and_time(smtp: Env) -> None:
    did = await domain_id(smtp)
    await sup.add(smtp.pool, smtp.account.id, [sup.Entry("Ann@x.test", did), sup.Entry("ann@x.testing", did),
                                               sup.Entry("bob@x.test", did)])
    got = await sup.search(smtp.pool, smtp.account.id, email="ANN@X.TEST")
    assert [o["email"] for o in got] == ["Ann@x.test"]
    await smtp.pool.execute("UPDATE suppressions SET created_at = '2026-01-01T00:00:00Z' WHERE email = 'bob@x.test'")
    early = await sup.search(smtp.pool, smtp.account.id,
                             end_time=sup.parse_time("end_time", "2026-01-02T00:00:00Z"))
    assert [o["email"] for o in early] == ["bob@x.test"]
    late = await sup.search(smtp.pool, smtp.account.id, start_time=sup.parse_time("start_time", "2026-01-02"))
    assert sorted(o["email"] for o in late) == ["Ann@x.test", "ann@x.testing"]
    with pytest.raises(sup.Invalid) as e:
        sup.parse_time("start_time", "yesterday")
    assert e.value.errors == {"start_time": ["is not an ISO 8601 time"]}


async def test_search_pages_with_last_id(smtp: Env) -> None:
    did = await domain_id(smtp)
    await sup.add(smtp.pool, smtp.account.id, [sup.Entry(f"p{i}@x.test", did) for i in range(1000)])
    await sup.add(smtp.pool, smtp.account.id, [sup.Entry(f"q{i}@x.test", did) for i in range(5)])
    first = await sup.search(smtp.pool, smtp.account.id)
    assert len(first) == 1000
    rest = await sup.search(smtp.pool, smtp.account.id, last_id=uuid.UUID(first[-1]["id"]))
    assert len(rest) == 5 and not {o["id"] for o in rest} & {o["id"] for o in first}


async def test_delete_returns_the_bare_object(smtp: Env) -> None:
    did = await domain_id(smtp)
    obj = await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("a@x.test", did))
    assert await sup.delete(smtp.pool, smtp.account.id, uuid.UUID(obj["id"])) == obj
    assert await count(smtp) == 0
    with pytest.raises(sup.NotFound):
        await sup.delete(smtp.pool, smtp.account.id, uuid.UUID(obj["id"]))
    with pytest.raises(sup.NotFound):
        sup.parse_id("not-a-uuid")


async def test_csv_import(smtp: Env) -> None:
    did = await domain_id(smtp)
    text = "name,email\nAnn,ann@x.test\n\nBob,bob@x.test\nBob again,BOB@x.test\n"
    got = await sup.import_csv(smtp.pool, smtp.account.id, text, domain_id=did, sending_stream="bulk")
    assert [(o["email"], o["sending_stream"]) for o in got] == [("ann@x.test", "bulk"), ("bob@x.test", "bulk")]
    plain = "\n".join(f"c{i}@x.test" for i in range(1500))  # no header; over the manual-add limit
    assert len(await sup.import_csv(smtp.pool, smtp.account.id, plain, domain_id=did)) == 1500


@pytest.mark.parametrize(("text", "errors"), [
    ("", {"base": ["the file holds no addresses"]}),
    ("email\n", {"base": ["the file holds no addresses"]}),
    ("a@x.test\nnot an address\n", {"line 2: email": ["is invalid"]}),
    ("name,email\nAnn\n", {"line 1: email": ["can't be blank"]}),
])
async def test_csv_import_refused_as_a_whole(smtp: Env, text: str, errors: dict[str, list[str]]) -> None:
    did = await domain_id(smtp)
    with pytest.raises(sup.Invalid) as e:
        await sup.import_csv(smtp.pool, smtp.account.id, text, domain_id=did)
    assert e.value.errors == errors
    assert await count(smtp) == 0


# --- at submission, over SMTP ------------------------------------------------------------------------

async def test_suppressed_recipient_accepted_not_delivered_not_charged(smtp: Env, make_config: Any,
                                                                       sink: MxSink) -> None:
    did = await domain_id(smtp)
    await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("Gone@Dest.test", did, "any"))
    code, text = await asyncio.to_thread(send, smtp, ["ok@dest.test", "gone@dest.test"])
    assert code == 250 and text.startswith("2.0.0 Ok: queued as ")
    mid = uuid.UUID(text.rsplit(" ", 1)[1])
    assert await smtp.counts() == {"messages": 1, "recipients": 2, "used": 1, "events": 1}
    states = dict(await smtp.pool.fetch("SELECT rcpt, state FROM recipients WHERE message_id = $1", mid))
    assert states == {"ok@dest.test": "queued", "gone@dest.test": "rejected"}
    (ev,) = await smtp.pool.fetch(
        """SELECT e.details, r.rcpt FROM events e JOIN recipients r ON r.id = e.recipient_id
            WHERE e.type = 'suppressed' AND e.message_id = $1""", mid)
    details = json.loads(ev["details"])
    assert ev["rcpt"] == "gone@dest.test"
    assert details["reason"] == "Recipient in suppression list. Reason: manual import"
    assert details["suppression_type"] == "manual import"

    cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
    delivery = DeliveryService(cfg, smtp.pool, make_resolver(["127.0.0.1:9"], 0.5))
    await delivery.run_once()
    await delivery.run_once()  # a second pass finds nothing more to do
    assert [r.rcpts for r in sink.received] == [["ok@dest.test"]]
    states = dict(await smtp.pool.fetch("SELECT rcpt, state FROM recipients WHERE message_id = $1", mid))
    assert states == {"ok@dest.test": "delivered", "gone@dest.test": "rejected"}


async def test_only_suppressed_recipients_charges_nothing_even_at_the_limit(smtp_factory: Any) -> None:
    env: Env = await smtp_factory(account={"monthly_limit": 3})
    did = await domain_id(env)
    await sup.add(env.pool, env.account.id, [sup.Entry(f"s{i}@dest.test", did) for i in range(3)])
    await smtp_util.use_quota(env.pool, env.account.id, 1)
    code, _ = await asyncio.to_thread(send, env, ["s0@dest.test", "s1@dest.test"])
    assert code == 250
    assert int(await env.pool.fetchval("SELECT sum(used) FROM usage")) == 1
    # Two left: one real recipient plus suppressed ones fits, because only the real one is charged.
    code, _ = await asyncio.to_thread(send, env, ["s2@dest.test", "real@dest.test"])
    assert code == 250
    assert int(await env.pool.fetchval("SELECT sum(used) FROM usage")) == 2
    assert await env.pool.fetchval("SELECT count(*) FROM events WHERE type = 'suppressed'") == 3


@pytest.mark.parametrize(("stream", "domain", "suppressed"), [
    ("any", DOMAIN, True),
    ("transactional", DOMAIN, True),
    ("bulk", DOMAIN, False),          # the credential sends on the transactional stream
    ("any", "second.test", False),    # another sending domain of the same account
])
async def test_scoped_per_domain_and_stream(smtp: Env, stream: str, domain: str, suppressed: bool) -> None:
    if domain != DOMAIN:
        await domains.create(smtp.pool, smtp.account.id, domain, verification_token="t", dns_skipped=True)
    await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("r@dest.test", await domain_id(smtp, domain), stream))
    code, _ = await asyncio.to_thread(send, smtp, ["r@dest.test"])
    assert code == 250
    state = await smtp.pool.fetchval("SELECT state FROM recipients")
    assert state == ("rejected" if suppressed else "queued")
    assert await smtp.pool.fetchval("SELECT sum(used) FROM usage") == (0 if suppressed else 1)


# --- automatic, on hard bounces (§9 item 23) ----------------------------------------------------------

@pytest.mark.parametrize(("reply", "suppressed"), [
    ("550 5.1.1 <r@dest.test>: Recipient address rejected: User unknown", True),    # badrecipient
    ("552 5.2.2 Mailbox full", True),                                              # overquota
    ("550 5.7.1 Message rejected as spam by Spamhaus", False),                      # spam
    ("554 5.7.1 Relay access denied by policy", False),                             # serverpolicy
    ("452 4.2.2 Mailbox full, try later", False),                                   # a soft bounce
])
async def test_hard_bounce_suppresses_by_category(smtp: Env, make_config: Any, sink: MxSink, reply: str,
                                                  suppressed: bool) -> None:
    sink.rcpt_replies["r@dest.test"] = reply
    code, text = await asyncio.to_thread(send, smtp, ["r@dest.test"])
    mid = uuid.UUID(text.rsplit(" ", 1)[1])
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
    await DeliveryService(cfg, smtp.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    runner = outbox.OutboxRunner(smtp.pool, [AutoSuppressions()])
    await runner.run_once()
    await runner.run_once()  # exactly once: a second pass adds nothing
    found = await sup.search(smtp.pool, smtp.account.id, email="r@dest.test")
    if not suppressed:
        assert found == []
        return
    (obj,) = found
    assert obj["type"] == "hard bounce" and obj["sending_stream"] == "transactional"
    assert obj["domain_name"] == DOMAIN and obj["message_sender_email"] == SENDER
    assert obj["message_subject"] == "Hello" and obj["message_client_ip"] == "127.0.0.1"
    assert obj["message_esp_response"] == reply and obj["message_recipient_mx_name"] == "127.0.0.1"
    assert obj["message_bounce_category"] == ("badrecipient" if "5.1.1" in reply else "overquota")
    assert obj["message_created_at"] == (await smtp.pool.fetchval(
        "SELECT created_at FROM messages WHERE id = $1", mid)).isoformat()
    # The next message to that address is accepted but rejected for that recipient.
    code, text = await asyncio.to_thread(send, smtp, ["R@dest.test"])
    assert code == 250
    details = json.loads(await smtp.pool.fetchval(
        "SELECT details FROM events WHERE type = 'suppressed' AND message_id = $1",
        uuid.UUID(text.rsplit(" ", 1)[1])))
    assert details["reason"] == "Recipient in suppression list. Reason: hard bounce"


def _event(type_: str, details: dict[str, Any]) -> outbox.OutboxEvent:
    return outbox.OutboxEvent(outbox.Position(1, 1), uuid.uuid4(), type_, 1, 1, uuid.uuid4(), 7, details,
                              dt.datetime.now(dt.UTC), "r@dest.test", "transactional", None, None, DOMAIN)


@pytest.mark.parametrize(("type_", "details", "category"), [
    ("expiration", {"reply": "connection refused", "category": "connection_failure"}, "timeout"),
    ("expiration", {"reply": "452 4.2.2 Mailbox full", "category": "mailbox_full"}, "overquota"),
    ("expiration", {"reply": "451 4.3.0 try later", "category": "other"}, None),
    ("bounce", {"reply": "550 5.1.1 no such user", "category": "bad_recipient"}, "badrecipient"),
    ("bounce", {"reply": "550 5.1.2 DNS: NXDOMAIN", "category": "dns_failure"}, None),
    ("manual_bounce", {"reason": "operator"}, None),     # says nothing about the address
    ("transient_failure", {"reply": "452 4.2.2 full", "category": "mailbox_full"}, None),
    ("delivery", {"reply": "250 ok"}, None),
])
def test_which_events_suppress(type_: str, details: dict[str, Any], category: str | None) -> None:
    got = suppressing(_event(type_, details))
    assert (got.bounce_category if got else None) == category
