"""Sent and rejected per day (issue 15, the overview's chart): `SubmissionRollup` counts every
recipient of an accepted message as sent and every suppressed one as rejected, from real SMTP
submissions, a real suppression, a refused submission and a real delivery; exactly once across two
runners; and the receptions stored before the consumer existed are counted too (backfill). The
stats API keeps Mailtrap's ten keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import smtplib
from typing import Any

import pytest

from mailtrap_smtp import outbox
from mailtrap_smtp.consumers.stats_rollup import StatsRollup, SubmissionRollup
from mailtrap_smtp.core import stats
from mailtrap_smtp.core import suppressions as sup
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import domains
from tests import smtp_util
from tests.delivery_util import FAST
from tests.mx_sink import MxSink
from tests.smtp_util import DOMAIN, SENDER, Env, message

smtp = smtp_util.smtp  # fixture

TODAY = dt.datetime.now(dt.UTC).date()


def _send(env: Env, rcpts: list[str], frm: str = SENDER) -> None:
    with smtplib.SMTP("127.0.0.1", env.port, timeout=10) as s:
        s.starttls(context=env.ssl_context)
        s.login("api", env.token)
        s.sendmail(frm, rcpts, message(frm=frm))


def _refused(env: Env) -> int:
    """A message from a domain that is not the account's: refused at MAIL FROM, nothing stored."""
    try:
        _send(env, ["x@dest.test"], frm="app@not-ours.test")
    except smtplib.SMTPSenderRefused as e:
        return e.smtp_code
    raise AssertionError("a foreign sender domain was accepted")


@pytest.fixture
async def submitted(smtp: Env, make_config: Any) -> None:
    """Five recipients accepted (one on the suppression list), one submission refused, the four
    others delivered (three) or bounced (one); the delivery rollup run first, as on an existing
    installation, then the new one twice on two runners at once."""
    did = int((await domains.get_by_name(smtp.pool, DOMAIN))["id"])
    await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("gone@dest.test", did, "transactional"))
    with MxSink() as sink:
        sink.rcpt_replies["bad@dest.test"] = "550 5.1.1 User unknown"
        await asyncio.to_thread(_send, smtp, ["a@dest.test", "gone@dest.test", "bad@dest.test"])
        await asyncio.to_thread(_send, smtp, ["b@dest.test", "c@dest.test"])
        assert await asyncio.to_thread(_refused, smtp) == 550
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
        await DeliveryService(cfg, smtp.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    # The delivery rollup's cursor moves past every reception first: the new cursor still sees them.
    await outbox.OutboxRunner(smtp.pool, [StatsRollup()]).run_once()
    runners = [outbox.OutboxRunner(smtp.pool, [SubmissionRollup()]) for _ in range(2)]
    await asyncio.gather(*(r.run_once() for r in runners))
    await asyncio.gather(*(r.run_once() for r in runners))  # nothing new: counted once


async def test_sent_delivered_bounced_rejected_per_day(smtp: Env, submitted: None) -> None:
    days = await stats.per_day(smtp.pool, smtp.account.id, TODAY - dt.timedelta(days=29), TODAY)
    assert days == {TODAY: stats.Day(sent=5, delivered=3, bounced=1, rejected=1)}


async def test_another_account_sees_none_of_them(smtp: Env, submitted: None) -> None:
    other = await smtp_util.create_account(smtp.pool, "other-stats", domain="other.test")
    assert await stats.per_day(smtp.pool, other.id, TODAY, TODAY) == {}


async def test_the_stats_api_keeps_mailtraps_ten_keys(smtp: Env, submitted: None) -> None:
    got = await stats.totals(smtp.pool, smtp.account.id, stats.StatsRequest(TODAY, TODAY))
    assert set(got) == {"delivery_count", "delivery_rate", "bounce_count", "bounce_rate", "open_count",
                        "open_rate", "click_count", "click_rate", "spam_count", "spam_rate"}
    assert (got["delivery_count"], got["bounce_count"]) == (3, 1)
