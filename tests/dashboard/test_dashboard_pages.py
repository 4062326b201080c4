"""The dashboard's pages over real HTTPS with httpx: each malformed form answered with its exact
message (422) and nothing stored; the logs' filters and cursor pages; CSV import; template preview;
webhook pause and resume; the overview's usage marks."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from mailtrap_smtp.core import sandbox
from mailtrap_smtp.http.dashboard.message_view import MESSAGE_CSP
from mailtrap_smtp.store import domains as domains_store
from tests.dashboard_util import csrf, login
from tests.http_util import ApiEnv, minimal
from tests.smtp_util import create_account
from tests.webhook_receiver import Receiver


@pytest.fixture
async def session(api: ApiEnv) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    admin = await api.new_token(level="admin", streams=("transactional", "bulk"))
    client = await login(api, admin)
    yield client, await csrf(client)
    await client.aclose()


async def _counts(api: ApiEnv) -> dict[str, int]:
    tables = ("sending_domains", "suppressions", "webhooks", "credentials", "email_templates", "sandbox_inboxes")
    async with api.pool.acquire() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


def _error(page: str) -> str:
    found = re.search(r'<p class="error" role="alert">(.*?)</p>', page, re.S)
    assert found is not None, page[:2000]
    return html.unescape(found.group(1))


async def _domain_id(api: ApiEnv) -> str:
    return str((await domains_store.get_by_name(api.pool, "example.com"))["id"])


BAD_FORMS = [
    ("/dashboard/domains", {"domain_name": ""}, "the domain name is empty"),
    ("/dashboard/domains", {"domain_name": "a..b"}, "'a..b' is not a valid domain name: it has an empty label ('..')"),
    ("/dashboard/domains", {"domain_name": "example.com"}, "domain example.com already exists"),
    ("/dashboard/suppressions", {"email": "nope", "domain_id": "{domain}"}, "email is invalid"),
    ("/dashboard/suppressions", {"email": "a@b.test", "domain_id": "{other}"},
     "no sending domain {other} in this account"),
    ("/dashboard/suppressions", {"email": "a@b.test", "domain_id": "abc"}, "domain_id is invalid"),
    ("/dashboard/suppressions", {"email": "a@b.test", "domain_id": "{domain}", "sending_stream": "x"},
     "sending_stream must be one of: transactional, bulk, any"),
    ("/dashboard/tokens", {"level": "send"}, "a token needs at least one stream (transactional, bulk)"),
    ("/dashboard/tokens", {"streams": "transactional", "level": "root"},
     "unknown level 'root': expected send, read or admin"),
    ("/dashboard/tokens", {"streams": "transactional", "domain_ids": "{other}"},
     "{other} is not a sending domain of this account"),
    ("/dashboard/webhooks", {"url": ""}, "url: must be an http:// or https:// URL with a host"),
    ("/dashboard/webhooks", {"url": "https://hooks.test/x", "event_types": "bogus"},
     "event_types: unknown 'bogus'; one of delivery, open, click, unsubscribe, spam_complaint, soft_bounce, "
     "bounce, suspension, reject"),
    ("/dashboard/webhooks", {"url": "https://hooks.test/x", "payload_format": "xml"},
     "payload_format: must be json or jsonlines"),
    ("/dashboard/templates", {"name": "", "subject": "s", "category": "c"}, "name can't be blank"),
    ("/dashboard/templates", {"name": "n", "subject": "{{{{#if}}}}", "category": "c"},
     "subject line 1: {{{{#if}}}} takes exactly one variable"),
]


@pytest.mark.parametrize(("path", "form", "message"), BAD_FORMS)
async def test_bad_form_is_refused_with_its_message(api: ApiEnv, session: tuple[httpx.AsyncClient, str],
                                                    path: str, form: dict[str, str], message: str) -> None:
    client, token = session
    await create_account(api.pool, "other", domain="other.test")
    ids = {"domain": await _domain_id(api),
           "other": str((await domains_store.get_by_name(api.pool, "other.test"))["id"])}
    before = await _counts(api)
    r = await client.post(path, data={"csrf": token, **{k: v.format(**ids) for k, v in form.items()}})
    assert r.status_code == 422
    assert _error(r.text) == message.format(**ids)
    assert await _counts(api) == before


async def test_csv_import_all_or_nothing(api: ApiEnv, session: tuple[httpx.AsyncClient, str]) -> None:
    client, token = session
    domain = await _domain_id(api)
    bad = await client.post("/dashboard/suppressions/import", data={"csrf": token, "domain_id": domain},
                            files={"file": ("s.csv", b"email\na@x.test\nnot-an-address\n", "text/csv")})
    assert bad.status_code == 422 and _error(bad.text) == "line 2: email is invalid"
    assert (await _counts(api))["suppressions"] == 0
    good = await client.post("/dashboard/suppressions/import", data={"csrf": token, "domain_id": domain},
                             files={"file": ("s.csv", b"name,email\nA,a@x.test\nB,b@x.test\n", "text/csv")},
                             follow_redirects=True)
    assert good.status_code == 200 and "Imported 2 addresses." in good.text
    assert "a@x.test" in good.text and "b@x.test" in good.text
    found = await client.get("/dashboard/suppressions", params={"email": "b@x.test"})
    assert "b@x.test" in found.text and "a@x.test" not in found.text


async def test_logs_filters_and_cursor_pages(api: ApiEnv, session: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = session
    to = [{"email": f"r{i:02d}@dest.test"} for i in range(30)]
    async with api.client() as c:
        sent = await c.post("/api/send", json=minimal(to=to, subject="bulk one"), headers=api.auth())
        other = await c.post("/api/send", json=minimal(to=[{"email": "solo@else.test"}], subject="lonely"),
                             headers=api.auth())
    assert sent.status_code == other.status_code == 200
    ids = set(sent.json()["message_ids"])
    first = await client.get("/dashboard/logs", params={"subject": "bulk"})
    assert first.status_code == 200 and "30 messages." in first.text
    page1 = set(re.findall(r'/dashboard/logs/([0-9a-f-]{36})"', first.text))
    assert len(page1) == 25 and page1 <= ids
    older = re.search(r'<a rel="next" href="([^"]+)"', first.text)
    assert older is not None
    second = await client.get(html.unescape(older.group(1)))
    page2 = set(re.findall(r'/dashboard/logs/([0-9a-f-]{36})"', second.text))
    assert page2 == ids - page1 and 'rel="next"' not in second.text
    solo = await client.get("/dashboard/logs", params={"to": "SOLO@"})
    assert "1 messages." in solo.text and "lonely" in solo.text and "bulk one" not in solo.text


@pytest.mark.parametrize(("params", "message"), [
    ({"sent_after": "yesterday"}, "filters[sent_after] is not an ISO 8601 time"),
    ({"search_after": "abc"}, "search_after is not a message id"),
    ({"status": "lost"}, "filters[status][value] must be one of: delivered, not_delivered, enqueued, opted_out"),
])
async def test_logs_bad_filters(session: tuple[httpx.AsyncClient, str], params: dict[str, str], message: str) -> None:
    client, _ = session
    r = await client.get("/dashboard/logs", params=params)
    assert r.status_code == 422 and _error(r.text) == message


async def test_template_edit_with_preview(api: ApiEnv, session: tuple[httpx.AsyncClient, str]) -> None:
    client, token = session
    made = await client.post("/dashboard/templates", data={
        "csrf": token, "name": "Welcome", "subject": "Hi {{name}}", "category": "welcome",
        "body_html": "<p>Hello {{name}}</p>"}, follow_redirects=True)
    assert made.status_code == 200 and "Subject:</strong> Hi " in made.text
    path = str(made.url.path)
    saved = await client.post(path, data={"csrf": token, "name": "Welcome", "subject": "Hi {{name}}!",
                                          "category": "welcome", "body_html": "<p>Hello {{name}}</p>",
                                          "variables": '{"name": "<Ada>"}'})
    assert saved.status_code == 200 and "Subject:</strong> Hi &lt;Ada&gt;!" in saved.text
    # the HTML preview is a sandboxed srcdoc frame, the variable escaped inside it
    assert 'sandbox="" referrerpolicy="no-referrer"' in saved.text
    assert "srcdoc=\"&lt;p&gt;Hello &amp;lt;Ada&amp;gt;&lt;/p&gt;\"" in saved.text
    bad_json = await client.get(path, params={"variables": "{"})
    assert bad_json.status_code == 200 and _error(bad_json.text).startswith("Preview: ")


async def test_webhook_to_loopback_refused(api: ApiEnv, session: tuple[httpx.AsyncClient, str]) -> None:
    client, token = session
    created = await client.post("/dashboard/webhooks", data={"csrf": token, "url": "https://127.0.0.1/hook"})
    # a loopback target is refused unless the operator allows it (webhooks.allow_private_targets)
    assert (created.status_code, _error(created.text)) == (422, "url: the host is not a public address")
    assert (await _counts(api))["webhooks"] == 0


async def test_webhook_pause_resume_allowed(api_factory: Any) -> None:
    env: ApiEnv = await api_factory(webhooks={"allow_private_targets": True})
    client = await login(env, await env.new_token(level="admin"))
    token = await csrf(client)
    created = await client.post("/dashboard/webhooks", data={"csrf": token, "url": "https://127.0.0.1/hook",
                                                             "event_types": ["delivery", "bounce"]})
    secret = re.search(r'<code id="signing-secret">([0-9a-f]{32})</code>', created.text)
    assert created.status_code == 200 and secret is not None
    hook_id = await env.pool.fetchval("SELECT id FROM webhooks")
    listed = await client.get("/dashboard/webhooks")
    assert secret.group(1) not in listed.text  # shown once
    paused = await client.post(f"/dashboard/webhooks/{hook_id}/active", data={"csrf": token, "active": "false"},
                               follow_redirects=True)
    assert "Paused." in paused.text and await env.pool.fetchval("SELECT active FROM webhooks") is False
    resumed = await client.post(f"/dashboard/webhooks/{hook_id}/active", data={"csrf": token, "active": "true"},
                                follow_redirects=True)
    assert "Resumed." in resumed.text and await env.pool.fetchval("SELECT active FROM webhooks") is True
    await client.aclose()


@pytest.mark.parametrize(("used", "reached"), [(79, []), (80, [80]), (95, [80, 90]), (100, [80, 90, 100])])
async def test_overview_usage_marks(api_factory: Any, used: int, reached: list[int]) -> None:
    env: ApiEnv = await api_factory(account={"monthly_limit": 100})
    async with env.pool.acquire() as conn:
        await conn.execute("INSERT INTO usage (account_id, period_start, used) VALUES ($1, date_trunc('month', "
                           "now() AT TIME ZONE 'UTC')::date, $2)", env.account.id, used)
    client = await login(env, await env.new_token(level="admin"))
    page = (await client.get("/dashboard/")).text
    await client.aclose()
    assert f"<strong>{used}</strong> of 100 emails ({used:.1f} %)" in page
    shown = re.search(r"Reached: ([^.]*)\.", page)
    assert (shown.group(1) if shown else "") == ", ".join(f"{m} %" for m in reached)


@pytest.mark.parametrize(("status", "flash"), [(200, "Test event sent: acknowledged (HTTP 200)."),
                                               (500, "Test event sent: failed: HTTP 500.")])
async def test_webhook_test_event(api_factory: Any, status: int, flash: str) -> None:
    env: ApiEnv = await api_factory(webhooks={"allow_private_targets": True})
    receiver = Receiver(statuses=[status])
    await receiver.start()
    client = await login(env, await env.new_token(level="admin"))
    try:
        token = await csrf(client)
        created = await client.post("/dashboard/webhooks", data={"csrf": token, "url": receiver.url()})
        secret = re.search(r'<code id="signing-secret">([0-9a-f]{32})</code>', created.text)
        assert secret is not None
        hook_id = await env.pool.fetchval("SELECT id FROM webhooks")
        r = await client.post(f"/dashboard/webhooks/{hook_id}/test", data={"csrf": token}, follow_redirects=True)
        shown = re.search(r'<p class="(flash|error)" role="(?:status|alert)">(.*?)</p>', r.text)
        assert r.status_code == 200 and shown is not None
        assert (shown.group(1), shown.group(2)) == ("flash" if status == 200 else "error", flash)
    finally:
        await client.aclose()
        await receiver.stop()
    (got,) = receiver.requests
    assert got.headers["mailtrap-signature"] == hmac.new(secret.group(1).encode(), got.body, hashlib.sha256).hexdigest()
    (event,) = json.loads(got.body)["events"]
    assert (event["event"], event["email"], event["category"]) == ("delivery", "test@example.com", "webhook test")
    attempt = await env.pool.fetchrow("SELECT events, status, acknowledged, first_event_id FROM webhook_attempts")
    assert (attempt["events"], attempt["status"], attempt["acknowledged"]) == (1, status, status == 200)
    assert str(attempt["first_event_id"]) == event["event_id"]
    # the outbox is untouched: no stored event, the webhook active, no failure counted on its cursor
    assert await env.pool.fetchval("SELECT count(*) FROM events WHERE event_id = $1::uuid", event["event_id"]) == 0
    assert await env.pool.fetchval("SELECT active FROM webhooks") is True
    assert not await env.pool.fetchval("SELECT coalesce(max(failures), 0) FROM outbox_cursors")


@pytest.mark.parametrize(("name", "message"), [
    ("", "an inbox name is 1 to 255 printable characters"),
    ("x" * 256, "an inbox name is 1 to 255 printable characters"),
    ("taken", "the account already has an inbox named 'taken'"),
])
async def test_inbox_bad_name(api: ApiEnv, session: tuple[httpx.AsyncClient, str], name: str, message: str) -> None:
    client, token = session
    await sandbox.create_inbox(api.pool, api.account.id, "taken")
    r = await client.post("/dashboard/inboxes", data={"csrf": token, "name": name})
    assert (r.status_code, _error(r.text)) == (422, message)
    assert await api.pool.fetchval("SELECT count(*) FROM sandbox_inboxes") == 1


async def test_inbox_message_headers_html_and_raw(api: ApiEnv, session: tuple[httpx.AsyncClient, str]) -> None:
    client, token = session
    made = await client.post("/dashboard/inboxes", data={"csrf": token, "name": "QA"}, follow_redirects=True)
    inbox_id = int(made.url.path.rsplit("/", 1)[1])
    assert "Inbox &#39;QA&#39; created" in made.text
    body = '<p>Hi</p><script>parent.document.title="owned"</script><img src="https://tracker.test/p.gif">'
    async with api.client() as c:
        kept = await c.post(f"/api/send/{inbox_id}", json=minimal(subject="Kept one", html=body, text="plain hi"),
                            headers=api.auth())
    assert kept.status_code == 200, kept.text
    (message_id,) = kept.json()["message_ids"]
    listed = await client.get(f"/dashboard/inboxes/{inbox_id}")
    assert "Kept one" in listed.text and message_id in listed.text
    page = await client.get(f"/dashboard/inboxes/{inbox_id}/messages/{message_id}")
    assert page.status_code == 200 and "<th scope=\"row\">Subject</th><td><code>Kept one</code>" in page.text
    assert "plain hi" in page.text and '<iframe class="message-html" sandbox=""' in page.text
    assert "<script>parent" not in page.text  # the HTML reaches the page only through the frame
    html_part = await client.get(f"/dashboard/inboxes/{inbox_id}/messages/{message_id}/html")
    assert html_part.headers["content-security-policy"] == MESSAGE_CSP and "<script>" in html_part.text
    raw = await client.get(f"/dashboard/inboxes/{inbox_id}/messages/{message_id}/raw")
    async with api.pool.acquire() as conn:
        assert raw.content == await sandbox.message_eml(conn, api.account.id, message_id)
    assert raw.headers["content-type"] == "message/rfc822"
