"""Suppressions, email logs and stats over the HTTPS API (MAILTRAP_COMPAT §6, §7, §9 items 18, 21,
22, 33, 34): legacy and current paths, the official SDK 2.11.0 parsing every answer (through
`mailtrap.client.GENERAL_HOST`), a suppressed recipient sent through `POST /api/send`, the signed
raw-message URL fetched over real TLS, and each malformed request's exact answer with nothing stored."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import mailtrap as mt
import mailtrap.client
import pytest
from mailtrap.models.stats import StatsFilterParams

from mailtrap_smtp import outbox, tokens
from mailtrap_smtp.consumers.stats_rollup import StatsRollup
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import credentials
from mailtrap_smtp.store import domains as domains_store
from tests import smtp_util
from tests.delivery_util import FAST
from tests.http_util import DOMAIN, SENDER, ApiEnv, minimal
from tests.mx_sink import MxSink

TODAY = dt.datetime.now(dt.UTC).date().isoformat()


@pytest.fixture
async def admin(api: ApiEnv) -> str:
    return await api.new_token(level="admin")


@pytest.fixture
async def domain_id(api: ApiEnv) -> int:
    return int((await domains_store.get_by_name(api.pool, DOMAIN))["id"])


@pytest.fixture
def sdk(api: ApiEnv, admin: str, monkeypatch: pytest.MonkeyPatch) -> mt.MailtrapClient:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    monkeypatch.setattr(mailtrap.client, "GENERAL_HOST", f"127.0.0.1:{api.port}")
    return mt.MailtrapClient(token=admin, account_id=str(api.account.id))


async def _send(api: ApiEnv, to: list[str], **over: Any) -> list[str]:
    async with api.client() as c:
        r = await c.post("/api/send", json=minimal(to=[{"email": t} for t in to], **over), headers=api.auth())
    assert r.status_code == 200, r.text
    ids: list[str] = r.json()["message_ids"]
    return ids


async def _counts(api: ApiEnv) -> dict[str, int]:
    return {"suppressions": await api.pool.fetchval("SELECT count(*) FROM suppressions"),
            "used": await api.pool.fetchval("SELECT coalesce(sum(used), 0) FROM usage")}


# --- suppressions (§9 item 22) --------------------------------------------------------------------------

async def test_sdk_suppression_then_send_is_accepted_rejected_not_charged(
        api: ApiEnv, sdk: mt.MailtrapClient, domain_id: int) -> None:
    suppressions = sdk.suppressions_api.suppressions
    created = await asyncio.to_thread(suppressions.create, mt.CreateSuppressionParams(
        email="Gone@X.test", domain_id=domain_id, sending_stream="transactional"))
    assert created.type == "manual import" and created.email == "Gone@X.test" and created.domain_name == DOMAIN
    listed = await asyncio.to_thread(suppressions.get_list)
    assert [s.id for s in listed] == [created.id]
    assert [s.id for s in await asyncio.to_thread(suppressions.get_list, "gone@x.TEST")] == [created.id]
    assert await asyncio.to_thread(suppressions.get_list, "other@x.test") == []

    used_before = (await _counts(api))["used"]
    (mid,) = await _send(api, ["gone@x.test"])  # accepted, with an id
    assert (await _counts(api))["used"] == used_before  # not charged
    msg = await asyncio.to_thread(sdk.email_logs_api.email_logs.get_by_id, mid)
    assert msg.status == "not_delivered" and msg.to == "gone@x.test"
    (event,) = msg.events
    assert event.event_type == "reject"
    assert event.details.reject_reason == "Recipient in suppression list. Reason: manual import"

    deleted = await asyncio.to_thread(suppressions.delete, created.id)
    assert deleted.id == created.id and deleted.email == "Gone@X.test"
    assert await asyncio.to_thread(suppressions.get_list) == []


@pytest.mark.parametrize("prefix", ["/api/suppressions", "/api/accounts/{account}/suppressions"])
async def test_suppression_shapes_on_both_paths(api: ApiEnv, admin: str, domain_id: int, prefix: str) -> None:
    path = prefix.format(account=api.account.id)
    async with api.client() as c:
        created = await c.post(path, json={"email": "a@x.test", "domain_id": domain_id, "sending_stream": "bulk"},
                               headers=api.auth(admin))
        assert created.status_code == 201 and created.headers["content-type"] == "application/json; charset=utf-8"
        obj = created.json()["data"]
        assert obj["type"] == "manual import" and obj["sending_stream"] == "bulk"
        listed = await c.get(path, headers=api.auth(admin))
        assert listed.status_code == 200 and listed.json() == [obj]  # a bare array
        page = await c.get(path, params={"last_id": obj["id"]}, headers=api.auth(admin))
        assert page.json() == []
        deleted = await c.delete(f"{path}/{obj['id']}", headers=api.auth(admin))
        assert deleted.status_code == 200 and deleted.json() == obj  # the bare object


BAD_SUPPRESSIONS = [
    # (token, method, path, body, status, answer)
    ("admin", "POST", "/api/suppressions", b"{not json", 400, {"error": "Bad Request"}),
    ("admin", "POST", "/api/suppressions", b"[]", 400, {"error": "Bad Request"}),
    ("admin", "POST", "/api/suppressions", {"email": "nope", "domain_id": "D"}, 422,
     {"errors": {"email": ["is invalid"]}}),
    ("admin", "POST", "/api/suppressions", {"domain_id": "D"}, 422, {"errors": {"email": ["can't be blank"]}}),
    ("admin", "POST", "/api/suppressions", {"email": "a@x.test"}, 422, {"errors": {"domain_id": ["can't be blank"]}}),
    ("admin", "POST", "/api/suppressions", {"email": "a@x.test", "domain_id": "D", "sending_stream": "all"}, 422,
     {"errors": {"sending_stream": ["must be one of: transactional, bulk, any"]}}),
    ("admin", "POST", "/api/suppressions", {"email": "a@x.test", "domain_id": "D", "type": "bounce"}, 422,
     {"errors": {"type": ["must be one of: hard bounce, unsubscription, spam complaint, manual import"]}}),
    ("admin", "POST", "/api/suppressions", {"email": "a@x.test", "domain_id": 999999}, 404, {"error": "Not Found"}),
    ("read", "POST", "/api/suppressions", {"email": "a@x.test", "domain_id": "D"}, 403,
     {"errors": "Account access forbidden"}),
    ("send", "GET", "/api/suppressions", None, 403, {"errors": "Account access forbidden"}),
    ("admin", "GET", "/api/accounts/999999/suppressions", None, 403, {"errors": "Account access forbidden"}),
    ("admin", "GET", "/api/suppressions?start_time=later", None, 422,
     {"errors": {"start_time": ["is not an ISO 8601 time"]}}),
    ("admin", "GET", "/api/suppressions?last_id=xyz", None, 404, {"error": "Not Found"}),
    ("admin", "DELETE", "/api/suppressions/not-a-uuid", None, 404, {"error": "Not Found"}),
    ("admin", "DELETE", "/api/suppressions/00000000-0000-0000-0000-000000000001", None, 404, {"error": "Not Found"}),
    ("bad", "GET", "/api/suppressions", None, 401, {"error": "Incorrect API token"}),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "status", "answer"), BAD_SUPPRESSIONS)
async def test_bad_suppression_requests(api: ApiEnv, admin: str, domain_id: int, who: str, method: str, path: str,
                                        body: Any, status: int, answer: dict[str, Any]) -> None:
    tokens = {"admin": admin, "read": await api.new_token(level="read"), "send": api.token, "bad": "x" * 40}
    kw: dict[str, Any] = {}
    if isinstance(body, bytes):
        kw["content"] = body
    elif body is not None:
        kw["json"] = {k: domain_id if v == "D" else v for k, v in body.items()}
    async with api.client() as c:
        r = await c.request(method, path, headers=api.auth(tokens[who]), **kw)
    assert (r.status_code, r.json()) == (status, answer)
    assert (await _counts(api))["suppressions"] == 0


async def test_a_token_of_one_domain_sees_and_changes_only_its_suppressions(api: ApiEnv, admin: str,
                                                                           domain_id: int) -> None:
    other = await domains_store.create(api.pool, api.account.id, "second.test", verification_token="t",
                                       dns_skipped=True)
    scoped = await api.new_token(level="admin", domain_ids=[int(other["id"])])
    async with api.client() as c:
        mine = await c.post("/api/suppressions", json={"email": "a@x.test", "domain_id": domain_id},
                            headers=api.auth(admin))
        denied = await c.post("/api/suppressions", json={"email": "b@x.test", "domain_id": domain_id},
                              headers=api.auth(scoped))
        assert (denied.status_code, denied.json()) == (404, {"error": "Not Found"})
        assert (await c.get("/api/suppressions", headers=api.auth(scoped))).json() == []
        gone = await c.delete(f"/api/suppressions/{mine.json()['data']['id']}", headers=api.auth(scoped))
        assert gone.status_code == 404
    assert (await _counts(api))["suppressions"] == 1


# --- email logs (§9 item 33) and stats (§9 item 34) -----------------------------------------------------

@pytest.fixture
async def delivered(api: ApiEnv, make_config: Any) -> dict[str, str]:
    """Three recipients through /api/send: two delivered, one bounced (real MX sink), and the stats
    rollup run; {recipient: its message id}."""
    with MxSink() as sink:
        sink.rcpt_replies["bad@dest.test"] = "550 5.1.1 User unknown"
        ids = await _send(api, ["ok@dest.test", "bad@dest.test"], category="welcome")
        ids += await _send(api, ["later@dest.test"])
        cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
        await DeliveryService(cfg, api.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
    await outbox.OutboxRunner(api.pool, [StatsRollup()]).run_once()
    return dict(zip(["ok@dest.test", "bad@dest.test", "later@dest.test"], ids, strict=True))


async def test_sdk_email_logs_list_and_get(api: ApiEnv, sdk: mt.MailtrapClient, delivered: dict[str, str],
                                          domain_id: int) -> None:
    page = await asyncio.to_thread(sdk.email_logs_api.email_logs.get_list)
    assert page.total_count == 3 and page.next_page_cursor is None
    assert {m.message_id for m in page.messages} == set(delivered.values())
    assert all(m.sending_domain_id == domain_id for m in page.messages)
    ok = await asyncio.to_thread(sdk.email_logs_api.email_logs.get_by_id, delivered["ok@dest.test"])
    assert ok.status == "delivered" and ok.category == "welcome" and ok.from_ == SENDER
    assert [e.event_type for e in ok.events] == ["delivery"]
    bad = await asyncio.to_thread(sdk.email_logs_api.email_logs.get_by_id, delivered["bad@dest.test"])
    assert bad.status == "not_delivered" and bad.events[0].details.bounce_category == "badrecipient"
    assert ok.raw_message_url is not None
    async with api.client() as c:
        raw = await c.get(ok.raw_message_url.replace(f"https://127.0.0.1:{api.port}", ""))
        assert raw.status_code == 200 and raw.headers["content-type"] == "message/rfc822"
        assert raw.content == await api.raw_of(delivered["ok@dest.test"])
        forged = await c.get(ok.raw_message_url[:-4] + "0000")
        assert (forged.status_code, forged.json()) == (403, {"error": "Link expired or invalid"})
        unsigned = await c.get(f"/api/email_logs/{delivered['ok@dest.test']}/raw", headers=api.auth())
        assert (unsigned.status_code, unsigned.json()) == (403, {"error": "Link expired or invalid"})


@pytest.mark.parametrize("prefix", ["/api/email_logs", "/api/accounts/{account}/email_logs"])
async def test_email_logs_shapes_on_both_paths(api: ApiEnv, admin: str, delivered: dict[str, str],
                                               prefix: str) -> None:
    path = prefix.format(account=api.account.id)
    async with api.client() as c:
        r = await c.get(path, params={"filters[to][operator]": "ci_equal", "filters[to][value]": "OK@dest.test"},
                        headers=api.auth(admin))
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"messages", "total_count", "next_page_cursor"} and body["total_count"] == 1
        (m,) = body["messages"]
        assert m["sending_domain_id"] == m["domain_id"] and m["message_id"] == delivered["ok@dest.test"]
        one = await c.get(f"{path}/{m['message_id']}", headers=api.auth(admin))
        assert one.status_code == 200 and [e["event_type"] for e in one.json()["events"]] == ["delivery"]
        exported = await c.get(f"{path}/export", params={"format": "jsonl"}, headers=api.auth(admin))
        assert exported.status_code == 200 and exported.headers["content-type"] == "application/jsonl"
        assert sorted(json.loads(line)["to"] for line in exported.text.splitlines()) == sorted(delivered)
        as_csv = await c.get(f"{path}/export", headers=api.auth(admin))
        assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
        assert as_csv.text.splitlines()[0].startswith("message_id,status,sent_at,from,to")


BAD_LOGS = [
    ("/api/email_logs?filters[status][operator]=equal&filters[status][value]=lost", 422,
     {"errors": {"filters[status][value]": ["must be one of: delivered, not_delivered, enqueued, opted_out"]}}),
    ("/api/email_logs?filters[to][operator]=regex&filters[to][value]=x", 422, {"errors": {"filters[to][operator]": [
        "must be one of: ci_equal, ci_not_equal, ci_contain, ci_not_contain, equal, not_equal, empty, not_empty"]}}),
    ("/api/email_logs?search_after=00000000-0000-0000-0000-000000000009", 422,
     {"errors": {"search_after": ["is not a message id of this account"]}}),
    ("/api/email_logs?filters[sent_after]=yesterday", 422, {"errors": {"filters[sent_after]": [
        "is not an ISO 8601 time"]}}),
    ("/api/email_logs/export?format=xml", 422, {"errors": {"format": ["must be one of: csv, jsonl"]}}),
    ("/api/email_logs/not-a-uuid", 404, {"error": "Not Found"}),
    ("/api/email_logs/00000000-0000-0000-0000-000000000009", 404, {"error": "Not Found"}),
    ("/api/accounts/999999/email_logs", 403, {"errors": "Account access forbidden"}),
    ("/api/stats?end_date=2026-12-01", 400, {"error": "Missing required parameter: start_date"}),
    ("/api/stats?start_date=2026-12-01", 400, {"error": "Missing required parameter: end_date"}),
    ("/api/stats?start_date=12/01/2026&end_date=2026-12-01", 422,
     {"errors": {"start_date": ["must be a date (YYYY-MM-DD)"]}}),
    ("/api/stats/weekdays?start_date=2026-12-01&end_date=2026-12-01", 404, {"error": "Not Found"}),
    ("/api/accounts/999999/stats?start_date=2026-12-01&end_date=2026-12-01", 403,
     {"errors": "Account access forbidden"}),
]


@pytest.mark.parametrize(("path", "status", "answer"), BAD_LOGS)
async def test_bad_log_and_stats_requests(api: ApiEnv, admin: str, path: str, status: int,
                                          answer: dict[str, Any]) -> None:
    async with api.client() as c:
        r = await c.get(path, headers=api.auth(admin))
    assert (r.status_code, r.json()) == (status, answer)


@pytest.mark.parametrize("path", ["/api/email_logs", f"/api/stats?start_date={TODAY}&end_date={TODAY}"])
async def test_a_send_only_token_reads_nothing(api: ApiEnv, path: str) -> None:
    async with api.client() as c:
        r = await c.get(path, headers=api.auth())
    assert (r.status_code, r.json()) == (403, {"errors": "Account access forbidden"})


async def test_sdk_stats_totals_and_groupings(api: ApiEnv, sdk: mt.MailtrapClient, delivered: dict[str, str],
                                             domain_id: int) -> None:
    params = StatsFilterParams(start_date=TODAY, end_date=TODAY)
    totals = await asyncio.to_thread(sdk.stats_api.get, api.account.id, params)
    assert (totals.delivery_count, totals.bounce_count, totals.bounce_rate) == (2, 1, 1 / 3)
    by_domain = await asyncio.to_thread(sdk.stats_api.by_domain, api.account.id, params)
    assert [(g.value, g.stats.delivery_count) for g in by_domain] == [(domain_id, 2)]
    by_category = await asyncio.to_thread(sdk.stats_api.by_category, api.account.id, params)
    assert [(g.value, g.stats.delivery_count, g.stats.bounce_count) for g in by_category] == [
        ("", 1, 0), ("welcome", 1, 1)]
    by_date = await asyncio.to_thread(sdk.stats_api.by_date, api.account.id, params)
    assert [g.value for g in by_date] == [TODAY]
    by_esp = await asyncio.to_thread(sdk.stats_api.by_email_service_provider, api.account.id,
                                     StatsFilterParams(start_date=TODAY, end_date=TODAY,
                                                       sending_domain_ids=[domain_id]))
    assert [g.value for g in by_esp] == ["127.0.0.1"]
    async with api.client() as c:
        raw = await c.get("/api/stats/domains", params={"start_date": TODAY, "end_date": TODAY},
                          headers=api.auth(await api.new_token(level="read")))
    assert raw.json()[0]["domain_id"] == domain_id and set(raw.json()[0]["stats"]) == {
        "delivery_count", "delivery_rate", "bounce_count", "bounce_rate", "open_count", "open_rate",
        "click_count", "click_rate", "spam_count", "spam_rate"}


async def test_a_token_of_another_domain_reads_no_logs_or_stats(api: ApiEnv, delivered: dict[str, str]) -> None:
    other = await domains_store.create(api.pool, api.account.id, "second.test", verification_token="t",
                                       dns_skipped=True)
    scoped = await api.new_token(level="read", domain_ids=[int(other["id"])])
    async with api.client() as c:
        logs = await c.get("/api/email_logs", headers=api.auth(scoped))
        one = await c.get(f"/api/email_logs/{delivered['ok@dest.test']}", headers=api.auth(scoped))
        stats = await c.get("/api/stats", params={"start_date": TODAY, "end_date": TODAY}, headers=api.auth(scoped))
    assert logs.json()["total_count"] == 0 and one.status_code == 404
    assert stats.json()["delivery_count"] == 0


# --- per-account budgets (§8) ---------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "limit"), [
    ("/api/suppressions", 10),
    (f"/api/stats?start_date={TODAY}&end_date={TODAY}", 10),
    ("/api/email_logs", 60),
])
async def test_per_account_budgets(api: ApiEnv, admin: str, path: str, limit: int) -> None:
    other = await smtp_util.create_account(api.pool, "other", domain="other.test")
    tok = tokens.generate()
    await credentials.create(api.pool, other.id, public_id=tok.public_id, digest=tok.digest,
                             streams=["transactional"], level="admin")
    second = await api.new_token(level="admin")  # the budget is the account's, not the token's
    async with api.client() as c:
        for i in range(limit):
            r = await c.get(path, headers=api.auth(admin if i % 2 else second))
            assert r.status_code == 200, r.text
        over = await c.get(path, headers=api.auth(admin))
        assert (over.status_code, over.json()) == (429, {"errors": "Rate limit exceeded"})
        assert int(over.headers["Retry-After"]) > 0
        elsewhere = await c.get(path, headers=api.auth(tok.token))  # another account: its own budget
        assert elsewhere.status_code == 200
        if "suppressions" in path:  # another budget of the same account is untouched
            stats = await c.get("/api/stats", params={"start_date": TODAY, "end_date": TODAY},
                                headers=api.auth(admin))
            assert stats.status_code == 200
