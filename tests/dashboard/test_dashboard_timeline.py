"""A message's timeline on the dashboard (issue 15): sent through the API to a real MX sink speaking
STARTTLS, deferred once (451) and delivered at the next attempt; the page shows the reception, then
each attempt with its MX, reply, TLS version and policy and its delays (since reception, and since
the previous attempt); a suppressed recipient's page shows its rejection and no attempt."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from typing import Any

import pytest

from mailtrap_smtp.core import suppressions as sup
from mailtrap_smtp.core import timeline
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.http.dashboard.web import took
from mailtrap_smtp.store import domains
from tests.dashboard_util import login
from tests.delivery_util import FAST, later
from tests.http_util import ApiEnv, minimal
from tests.mx_sink import MxSink

DELAY = re.compile(r"^[\d.]+ (s|min \d\d s|h \d\d min|d \d+ h)$")


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


async def _send(api: ApiEnv, admin: str, to: str) -> str:
    async with api.client() as c:
        r = await c.post("/api/send", headers=api.auth(admin), json=minimal(to=[{"email": to}]))
    assert r.status_code == 200, r.text
    return str(r.json()["message_ids"][0])


async def test_each_attempt_with_mx_reply_tls_and_delay(api: ApiEnv, make_config: Any,
                                                       tls_sink: MxSink) -> None:
    admin = await api.new_token(level="admin", streams=("transactional", "bulk"))
    entry = await _send(api, admin, "later@dest.test")
    tls_sink.data_reply = "451 4.3.0 try again later"
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": tls_sink.address}})
    await DeliveryService(cfg, api.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    tls_sink.data_reply = "250 2.0.0 OK queued"
    await DeliveryService(cfg, api.pool, make_resolver(["127.0.0.1:9"], 0.5), clock=lambda: later(10)).run_once()

    async with api.pool.acquire() as conn:
        steps = await timeline.timeline(conn, api.account.id, uuid.UUID(entry))
    assert [(s.label, s.attempt) for s in steps] == [("received", None), ("deferred", 1), ("delivered", 2)]
    first, second = steps[1], steps[2]
    for s in (first, second):
        assert s.mx == tls_sink.host and s.tls in ("TLSv1.2", "TLSv1.3") and s.tls_policy == "opportunistic"
    assert first.reply == "451 4.3.0 try again later" and first.since_previous is None
    assert second.reply is not None and second.reply.startswith("250")
    assert second.since_previous == second.at - first.at and second.since_reception == second.at - steps[0].at

    client = await login(api, admin)
    try:
        page = await client.get(f"/dashboard/logs/{entry}")
    finally:
        await client.aclose()
    assert page.status_code == 200
    text = _text(page.text)
    assert "received" in text
    attempts = re.findall(r'<li class="step attempt (\w+)">(.*?)</li>', page.text, re.S)
    assert [a[0] for a in attempts] == ["deferred", "delivered"]
    for number, (outcome, body) in enumerate(attempts, 1):
        facts = dict(zip(re.findall(r"<dt>(.*?)</dt>", body), (html.unescape(re.sub(r"<[^>]+>", "", d))
                                                               for d in re.findall(r"<dd>(.*?)</dd>", body, re.S)),
                         strict=True))
        assert f"Attempt {number}: {outcome}" in _text(body)
        assert facts["MX"] == tls_sink.host
        assert facts["TLS"] in ("TLSv1.2, policy opportunistic", "TLSv1.3, policy opportunistic")
        delays = facts["Delay"].split(", ")
        assert delays[0].endswith(" after reception") and DELAY.match(delays[0].removesuffix(" after reception"))
        if number == 1:
            assert facts["Reply"] == "451 4.3.0 try again later" and len(delays) == 1
        else:
            assert facts["Reply"].startswith("250") and delays[1].endswith(" after attempt 1")
            assert DELAY.match(delays[1].removesuffix(" after attempt 1"))


async def test_a_suppressed_recipient_shows_its_rejection(api: ApiEnv, make_config: Any) -> None:
    did = int((await domains.get_by_name(api.pool, "example.com"))["id"])
    await sup.add_one(api.pool, api.account.id, sup.Entry("gone@dest.test", did, "transactional"))
    admin = await api.new_token(level="admin", streams=("transactional", "bulk"))
    entry = await _send(api, admin, "gone@dest.test")
    with MxSink() as sink:
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
        await DeliveryService(cfg, api.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
        assert not sink.received
    client = await login(api, admin)
    try:
        page = await client.get(f"/dashboard/logs/{entry}")
    finally:
        await client.aclose()
    text = _text(page.text)
    assert "rejected: on the suppression list" in text
    assert "Recipient in suppression list. Reason: manual import" in text
    assert "Attempt" not in text


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.0, "0.0 s"), (0.44, "0.4 s"), (9.94, "9.9 s"), (12.7, "12 s"), (185, "3 min 05 s"), (3599, "59 min 59 s"),
    (7620, "2 h 07 min"), (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"), (-1.0, "0.0 s"),
])
def test_delays_as_people_read_them(seconds: float, shown: str) -> None:
    assert took(dt.timedelta(seconds=seconds)) == shown
