"""The overview's chart over real HTTPS (issue 15): after real sends through the API (one recipient
on the suppression list, one refused by the MX), a real delivery and both rollups, the chart the
page draws has the four series — sent, delivered, bounced, rejected — with today's counts, and the
table beside it the same numbers."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

from mailtrap_smtp import outbox
from mailtrap_smtp.consumers.stats_rollup import StatsRollup, SubmissionRollup
from mailtrap_smtp.core import suppressions as sup
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import domains
from tests.dashboard_util import login
from tests.delivery_util import FAST
from tests.http_util import ApiEnv, minimal
from tests.mx_sink import MxSink

BAR = re.compile(r'<rect class="s(\d)"[^>]*><title>(\d{4}-\d\d-\d\d): (\d+) (\w+)</title></rect>')


async def test_the_chart_has_sent_delivered_bounced_rejected(api: ApiEnv, make_config: Any) -> None:
    did = int((await domains.get_by_name(api.pool, "example.com"))["id"])
    await sup.add_one(api.pool, api.account.id, sup.Entry("gone@dest.test", did, "transactional"))
    admin = await api.new_token(level="admin", streams=("transactional", "bulk"))
    with MxSink() as sink:
        sink.rcpt_replies["bad@dest.test"] = "550 5.1.1 User unknown"
        async with api.client() as c:
            for to in (["a@dest.test", "gone@dest.test"], ["b@dest.test", "bad@dest.test"]):
                r = await c.post("/api/send", headers=api.auth(admin),
                                 json=minimal(to=[{"email": t} for t in to]))
                assert r.status_code == 200, r.text
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
        await DeliveryService(cfg, api.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    await outbox.OutboxRunner(api.pool, [StatsRollup(), SubmissionRollup()]).run_once()

    client = await login(api, admin)
    try:
        page = (await client.get("/dashboard/")).text
    finally:
        await client.aclose()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    bars = BAR.findall(page)
    assert len(bars) == 30 * 4  # a bar per series per day, zero-high on the days without mail
    assert {(s, label) for s, _, _, label in bars} == {("0", "sent"), ("1", "delivered"), ("2", "bounced"),
                                                       ("3", "rejected")}
    assert {label: int(n) for _, day, n, label in bars if day == today} == {
        "sent": 4, "delivered": 2, "bounced": 1, "rejected": 1}
    assert all(n == "0" for _, day, n, _ in bars if day != today)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "Sent 4, delivered 2 (66.7 %), bounced 1 (33.3 %), rejected 1." in " ".join(text.split())
    assert f"<tr><td>{today}</td><td>4</td><td>2</td><td>1</td><td>1</td></tr>" in page
