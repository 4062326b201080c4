"""Stats (MAILTRAP_COMPAT §7.2, §9 item 34): daily rollups maintained by an outbox consumer from
real deliveries and bounces, totals and groupings over a date range, parsed by the official SDK."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import smtplib
import uuid
from typing import Any

import pytest
from mailtrap.models.stats import SendingStatGroup, SendingStats

from mailtrap_smtp import outbox
from mailtrap_smtp.consumers.stats_rollup import StatsRollup
from mailtrap_smtp.core import stats
from mailtrap_smtp.core.suppressions import Invalid
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import domains
from tests import smtp_util
from tests.delivery_util import FAST
from tests.mx_sink import MxSink
from tests.smtp_util import DOMAIN, SENDER, Env, message

smtp = smtp_util.smtp  # fixture
smtp_factory = smtp_util.smtp_factory  # fixture

TODAY = dt.datetime.now(dt.UTC).date().isoformat()


def _send(env: Env, rcpts: list[str], category: str | None) -> None:
    extra = f"X-MT-Category: {category}\r\n" if category else ""
    with smtplib.SMTP("127.0.0.1", env.port, timeout=10) as s:
        s.starttls(context=env.ssl_context)
        s.login("api", env.token)
        s.sendmail(SENDER, rcpts, message(extra=extra))


@pytest.fixture
async def rolled_up(smtp: Env, make_config: Any) -> int:
    """Six delivered and two bounced recipients in two categories; the rollup run twice at once."""
    with MxSink() as sink:
        sink.rcpt_replies["b1@dest.test"] = "550 5.1.1 User unknown"
        sink.rcpt_replies["b2@dest.test"] = "550 5.1.1 User unknown"
        await asyncio.to_thread(_send, smtp, [f"d{i}@dest.test" for i in range(4)] + ["b1@dest.test"], "welcome")
        await asyncio.to_thread(_send, smtp, ["d4@dest.test", "d5@dest.test", "b2@dest.test"], None)
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
        await DeliveryService(cfg, smtp.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    runners = [outbox.OutboxRunner(smtp.pool, [StatsRollup()]) for _ in range(2)]
    await asyncio.gather(*(r.run_once() for r in runners))  # two nodes: the lease gives it to one
    await asyncio.gather(*(r.run_once() for r in runners))  # nothing new: counted once
    return int((await domains.get_by_name(smtp.pool, DOMAIN))["id"])


def params(**kw: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in kw.items()}


async def test_totals_have_the_ten_keys_and_the_sdk_parses_them(smtp: Env, rolled_up: int) -> None:
    got = await stats.totals(smtp.pool, smtp.account.id,
                             stats.parse_query(params(start_date=TODAY, end_date=TODAY)))
    assert got == {"delivery_count": 6, "delivery_rate": 0.75, "bounce_count": 2, "bounce_rate": 0.25,
                   "open_count": 0, "open_rate": 0.0, "click_count": 0, "click_rate": 0.0,
                   "spam_count": 0, "spam_rate": 0.0}
    assert SendingStats(**json.loads(json.dumps(got))).delivery_count == 6


async def test_grouped_by_domain_category_provider_and_date(smtp: Env, rolled_up: int) -> None:
    req = stats.parse_query(params(start_date=TODAY, end_date=TODAY))
    by_domain = await stats.grouped(smtp.pool, smtp.account.id, req, "domains")
    assert [(g["sending_domain_id"], g["domain_id"], g["stats"]["delivery_count"]) for g in by_domain] == [
        (rolled_up, rolled_up, 6)]
    by_category = await stats.grouped(smtp.pool, smtp.account.id, req, "categories")
    assert [(g["category"], g["stats"]["delivery_count"], g["stats"]["bounce_count"]) for g in by_category] == [
        ("", 2, 1), ("welcome", 4, 1)]
    by_provider = await stats.grouped(smtp.pool, smtp.account.id, req, "email_service_providers")
    assert [(g["email_service_provider"], g["stats"]["bounce_rate"]) for g in by_provider] == [("127.0.0.1", 0.25)]
    by_date = await stats.grouped(smtp.pool, smtp.account.id, req, "date")
    assert [g["date"] for g in by_date] == [TODAY]
    for grouping, key in (("domains", "sending_domain_id"), ("categories", "category"),
                          ("email_service_providers", "email_service_provider"), ("date", "date")):
        items = json.loads(json.dumps(await stats.grouped(smtp.pool, smtp.account.id, req, grouping)))
        parsed = [SendingStatGroup(name=key, value=i[key], stats=SendingStats(**i["stats"])) for i in items]
        assert sum(p.stats.delivery_count for p in parsed) == 6


@pytest.mark.parametrize(("extra", "delivered"), [
    ({"categories[]": ["welcome"]}, 4),
    ({"categories[]": ["welcome", ""]}, 6),
    ({"sending_streams[]": ["bulk"]}, 0),
    ({"sending_streams[]": ["transactional"]}, 6),
    ({"email_service_providers[]": ["Google"]}, 0),
    ({"sending_domain_ids[]": ["999"]}, 0),
    ({"domain_ids[]": ["DOMAIN"]}, 6),
])
async def test_filters(smtp: Env, rolled_up: int, extra: dict[str, list[str]], delivered: int) -> None:
    extra = {k: [str(rolled_up) if v == "DOMAIN" else v for v in vs] for k, vs in extra.items()}
    req = stats.parse_query({**params(start_date=TODAY, end_date=TODAY), **extra})
    assert (await stats.totals(smtp.pool, smtp.account.id, req))["delivery_count"] == delivered


async def test_other_days_and_accounts_are_apart(smtp: Env, rolled_up: int) -> None:
    yesterday = (dt.date.fromisoformat(TODAY) - dt.timedelta(days=1)).isoformat()
    req = stats.parse_query(params(start_date="2020-01-01", end_date=yesterday))
    assert (await stats.totals(smtp.pool, smtp.account.id, req))["delivery_count"] == 0
    other = await smtp_util.create_account(smtp.pool, "other", domain="other.test")
    req = stats.parse_query(params(start_date=TODAY, end_date=TODAY))
    assert (await stats.totals(smtp.pool, other.id, req))["delivery_count"] == 0
    # The rollup holds one row per day and key, not one per message.
    assert await smtp.pool.fetchval("SELECT count(*) FROM stats_daily") == 2


@pytest.mark.parametrize(("query", "missing"), [
    ({}, "start_date"),
    ({"end_date": ["2026-12-01"]}, "start_date"),
    ({"start_date": ["2026-12-01"]}, "end_date"),
    ({"start_date": [""], "end_date": ["2026-12-01"]}, "start_date"),
])
def test_missing_dates(query: dict[str, list[str]], missing: str) -> None:
    with pytest.raises(stats.MissingParameter) as e:
        stats.parse_query(query)
    assert e.value.name == missing


@pytest.mark.parametrize(("query", "errors"), [
    (params(start_date="2026-13-01", end_date="2026-12-01"), {"start_date": ["must be a date (YYYY-MM-DD)"]}),
    (params(start_date="yesterday", end_date="2026-12-01"), {"start_date": ["must be a date (YYYY-MM-DD)"]}),
    (params(start_date="2026-12-01T00:00", end_date="2026-12-01"), {"start_date": ["must be a date (YYYY-MM-DD)"]}),
    (params(start_date="2026-12-02", end_date="2026-12-01"), {"end_date": ["must not be before start_date"]}),
    (params(start_date="1900-01-01", end_date="2026-12-01"),
     {"end_date": ["must be at most 3660 days after start_date"]}),
    ({**params(start_date="2026-12-01", end_date="2026-12-01"), "sending_domain_ids[]": ["x"]},
     {"sending_domain_ids": ["must be integers"]}),
    ({**params(start_date="2026-12-01", end_date="2026-12-01"), "sending_streams[]": ["any"]},
     {"sending_streams": ["must be one of: transactional, bulk"]}),
])
def test_invalid_parameters(query: dict[str, list[str]], errors: dict[str, list[str]]) -> None:
    with pytest.raises(Invalid) as e:
        stats.parse_query(query)
    assert e.value.errors == errors


@pytest.mark.parametrize(("mx", "provider"), [
    ("gmail-smtp-in.l.google.com", "Google"),
    ("ALT1.ASPMX.L.GOOGLE.COM.", "Google"),
    ("example-com.mail.protection.outlook.com", "Microsoft"),
    ("mta5.am0.yahoodns.net", "Yahoo"),
    ("mx01.mail.icloud.com", "Apple"),
    ("mx.mailbox.org", "mailbox.org"),
    ("mx1.dest.test", "dest.test"),
    ("127.0.0.1", "127.0.0.1"),
    ("notgoogle.com", "notgoogle.com"),
    ("", None),
    (None, None),
])
async def test_mailbox_provider_of_an_mx_host(pool: Any, mx: str | None, provider: str | None) -> None:
    assert await pool.fetchval("SELECT mts_mail_provider($1)", mx) == provider


@pytest.mark.parametrize(("type_", "details", "kind"), [
    ("delivery", {"reply": "250 ok", "mx": "mx.a.test"}, "delivery"),
    ("bounce", {"reply": "550 5.1.1 no"}, "bounce"),
    ("expiration", {"reply": "451 4.4.1 timeout"}, "bounce"),
    ("spam", {"source": "inbound", "feedback_type": "abuse"}, "spam"),
    ("transient_failure", {"reply": "451 later"}, None),   # a soft bounce is not counted
    ("suppressed", {"reason": "x"}, None),
    ("reception", {}, None),
])
def test_what_the_rollup_counts(type_: str, details: dict[str, Any], kind: str | None) -> None:
    from mailtrap_smtp.consumers.stats_rollup import counted

    e = outbox.OutboxEvent(outbox.Position(1, 1), uuid.uuid4(), type_, 1, 1, uuid.uuid4(), 2, details,
                           dt.datetime.now(dt.UTC), "r@x.test", "transactional", None, None, DOMAIN)
    got = counted(e)
    assert (got.kind if got else None) == kind
