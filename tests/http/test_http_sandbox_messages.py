"""A sandbox inbox's messages through the Python SDK's testing API (`testing_api.messages`): the list
and one message parse as its `EmailMessage` without a validation error, with the fields we have
filled from the message itself; paging (`page`, `last_id`), search, marking read, deleting, and the
bodies, raw source, `.eml` and headers the SDK downloads."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from pathlib import Path
from typing import Any

import mailtrap as mt
import mailtrap.client
import pytest
from mailtrap.models.messages import EmailMessage, UpdateEmailMessageParams

from mailtrap_smtp import cli
from mailtrap_smtp.core.sandbox import human_size
from tests.http_util import SENDER, ApiEnv, minimal


@pytest.fixture
async def inbox(api: ApiEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), "inbox", "create",
                                              api.account.name, "QA", "--json"])
    assert code == 0
    return int(json.loads(capsys.readouterr().out)["id"])


@pytest.fixture
async def admin(api: ApiEnv) -> str:
    return await api.new_token(level="admin")


@pytest.fixture
def messages(api: ApiEnv, admin: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    monkeypatch.setattr(mailtrap.client, "GENERAL_HOST", f"127.0.0.1:{api.port}")
    return mt.MailtrapClient(token=admin, account_id=str(api.account.id)).testing_api.messages


async def _keep(api: ApiEnv, inbox: int, **mail: Any) -> str:
    async with api.client() as c:
        r = await c.post(f"/api/send/{inbox}", json=minimal(**mail), headers=api.auth())
    assert r.status_code == 200, r.text
    (mid,) = r.json()["message_ids"]
    return str(mid)


FULL = {"from": {"email": SENDER, "name": "Zoë Sender"},
        "to": [{"email": "ann@x.test", "name": "Ann"}, {"email": "bob@x.test"}],
        "subject": "Grüße", "text": "Hello text", "html": "<p>Hello <b>html</b></p>"}


async def test_sdk_lists_and_shows_messages_in_its_shape(api: ApiEnv, inbox: int, messages: Any) -> None:
    kept = await _keep(api, inbox, **FULL)
    listed = await asyncio.to_thread(messages.get_list, inbox)
    assert len(listed) == 1 and isinstance(listed[0], EmailMessage)
    m = listed[0]
    assert (m.inbox_id, m.subject, m.from_email, m.from_name) == (inbox, "Grüße", SENDER, "Zoë Sender")
    assert (m.to_email, m.to_name) == ("ann@x.test, bob@x.test", "Ann")
    assert (m.text_body_size, m.html_body_size) == (len("Hello text"), len("<p>Hello <b>html</b></p>"))
    assert m.email_size > 0 and m.human_size == human_size(m.email_size) and m.is_read is False
    assert m.sent_at == m.created_at and m.updated_at == m.created_at
    assert m.blacklists_report_info is False and m.smtp_information.ok is True and m.smtp_information.data is None
    base = f"/api/accounts/{api.account.id}/inboxes/{inbox}/messages/{m.id}"
    assert (m.html_path, m.txt_path, m.raw_path, m.download_path, m.html_source_path) == (
        f"{base}/body.html", f"{base}/body.txt", f"{base}/body.raw", f"{base}/body.eml", f"{base}/body.htmlsource")
    shown = await asyncio.to_thread(messages.show_message, inbox, m.id)
    assert shown == m
    # Our own id of the message (what /api/send/{inbox_id} answered) rides along for the SDK to ignore.
    async with api.client() as c:
        raw_list = (await c.get(f"/api/accounts/{api.account.id}/inboxes/{inbox}/messages",
                                headers=api.auth(await api.new_token(level="read")))).json()
    assert [x["message_id"] for x in raw_list] == [kept]


async def test_sdk_downloads_bodies_source_and_headers(api: ApiEnv, inbox: int, messages: Any) -> None:
    await _keep(api, inbox, **FULL)
    (m,) = await asyncio.to_thread(messages.get_list, inbox)
    assert await asyncio.to_thread(messages.get_text_message, inbox, m.id) == "Hello text"
    assert await asyncio.to_thread(messages.get_html_message, inbox, m.id) == "<p>Hello <b>html</b></p>"
    assert await asyncio.to_thread(messages.get_html_source, inbox, m.id) == "<p>Hello <b>html</b></p>"
    raw = await asyncio.to_thread(messages.get_raw_message, inbox, m.id)
    eml = await asyncio.to_thread(messages.get_message_as_eml, inbox, m.id)
    assert raw == eml and len(raw.encode()) == m.email_size
    parsed = email.message_from_string(eml, policy=email.policy.default)
    assert parsed["Subject"] == "Grüße" and parsed["To"] == "Ann <ann@x.test>, bob@x.test"
    fields = await asyncio.to_thread(messages.get_mail_headers, inbox, m.id)
    assert fields["subject"] == "Grüße" and fields["from"] == f"Zoë Sender <{SENDER}>"
    assert fields["to"] == "Ann <ann@x.test>, bob@x.test" and set(fields) >= {"from", "to", "subject", "mime-version"}


async def test_a_body_the_message_lacks_is_not_found(api: ApiEnv, inbox: int, admin: str) -> None:
    await _keep(api, inbox)  # text only
    async with api.client() as c:
        (m,) = (await c.get(f"/api/accounts/{api.account.id}/inboxes/{inbox}/messages", headers=api.auth(admin))).json()
        html = await c.get(m["html_path"], headers=api.auth(admin))
        text = await c.get(m["txt_path"], headers=api.auth(admin))
    assert (html.status_code, html.json()) == (404, {"error": "Not Found"})
    assert text.status_code == 200 and m["html_body_size"] == 0


async def test_sdk_marks_read_and_deletes(api: ApiEnv, inbox: int, messages: Any) -> None:
    await _keep(api, inbox, subject="one")
    await _keep(api, inbox, subject="two")
    first, second = await asyncio.to_thread(messages.get_list, inbox)
    assert (first.subject, second.subject) == ("two", "one") and first.id > second.id  # newest first
    read = await asyncio.to_thread(messages.update, inbox, second.id, UpdateEmailMessageParams(is_read=True))
    assert read.is_read is True and read.id == second.id and read.updated_at >= read.created_at
    assert (await asyncio.to_thread(messages.show_message, inbox, second.id)).is_read is True
    unread = await asyncio.to_thread(messages.update, inbox, second.id, UpdateEmailMessageParams(is_read=False))
    assert unread.is_read is False
    gone = await asyncio.to_thread(messages.delete, inbox, first.id)
    assert gone.id == first.id and gone.subject == "two"
    assert [x.id for x in await asyncio.to_thread(messages.get_list, inbox)] == [second.id]
    with pytest.raises(mt.APIError) as info:
        await asyncio.to_thread(messages.show_message, inbox, first.id)
    assert info.value.status == 404


async def test_sdk_pages_and_searches(api: ApiEnv, inbox: int, messages: Any) -> None:
    for i in range(32):
        await _keep(api, inbox, subject=f"{'welcome' if i % 8 == 0 else 'news'} {i}",
                    to=[{"email": f"r{i}@x.test", "name": "Special_Name" if i == 5 else "Plain"}])
    page1 = await asyncio.to_thread(messages.get_list, inbox)
    page2 = await asyncio.to_thread(messages.get_list, inbox, page=2)
    assert len(page1) == 30 and [m.subject for m in page2] == ["news 1", "welcome 0"]
    ids = [m.id for m in page1 + page2]
    assert ids == sorted(ids, reverse=True)
    after = await asyncio.to_thread(messages.get_list, inbox, last_id=page1[-1].id)
    assert [m.id for m in after] == [m.id for m in page2]
    assert [m.id for m in await asyncio.to_thread(messages.get_list, inbox, last_id=page1[-1].id, page=5)] == [
        m.id for m in page2]  # last_id wins over page
    found = await asyncio.to_thread(messages.get_list, inbox, search="WELCOME")
    assert [m.subject for m in found] == ["welcome 24", "welcome 16", "welcome 8", "welcome 0"]
    assert [m.to_email for m in await asyncio.to_thread(messages.get_list, inbox, search="r31@")] == ["r31@x.test"]
    # LIKE's wildcards are searched for as themselves.
    assert [m.subject for m in await asyncio.to_thread(messages.get_list, inbox, search="l_N")] == ["news 5"]
    assert await asyncio.to_thread(messages.get_list, inbox, search="%") == []


@pytest.mark.parametrize(("method", "suffix", "body", "status", "expect"), [
    ("GET", "/999999", None, 404, {"error": "Not Found"}),
    ("GET", "/abc", None, 404, {"error": "Not Found"}),
    ("PATCH", "/999999", {"message": {"is_read": "true"}}, 404, {"error": "Not Found"}),
    ("PATCH", "/{n}", {"message": {"is_read": "maybe"}}, 422, {"errors": {"is_read": ["is invalid"]}}),
    ("PATCH", "/{n}", {}, 422, {"errors": {"is_read": ["is invalid"]}}),
    ("DELETE", "/999999", None, 404, {"error": "Not Found"}),
    ("GET", "/{n}/spam_report", None, 404, {"error": "Not Found"}),
    ("GET", "?page=0", None, 422, {"errors": {"query.page": ["is invalid"]}}),
    ("GET", "?last_id=x", None, 422, {"errors": {"query.last_id": ["is invalid"]}}),
])
async def test_bad_message_requests(api: ApiEnv, inbox: int, admin: str, method: str, suffix: str,
                                    body: Any, status: int, expect: dict[str, Any]) -> None:
    await _keep(api, inbox)
    base = f"/api/accounts/{api.account.id}/inboxes/{inbox}/messages"
    async with api.client() as c:
        (m,) = (await c.get(base, headers=api.auth(admin))).json()
        r = await c.request(method, base + suffix.format(n=m["id"]), json=body, headers=api.auth(admin))
        after = (await c.get(base, headers=api.auth(admin))).json()
    assert (r.status_code, r.json()) == (status, expect)
    assert after == [m]  # nothing changed


async def test_another_inbox_or_account_is_not_found_or_forbidden(api: ApiEnv, inbox: int, admin: str,
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tests.smtp_util import create_account

    await _keep(api, inbox)
    other = await create_account(api.pool, "other", domain=None)
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), "inbox", "create", other.name,
                                              "theirs", "--json"]) == 0
    theirs = json.loads(capsys.readouterr().out)["id"]
    async with api.client() as c:
        (m,) = (await c.get(f"/api/accounts/{api.account.id}/inboxes/{inbox}/messages",
                            headers=api.auth(admin))).json()
        wrong_inbox = await c.get(f"/api/accounts/{api.account.id}/inboxes/{theirs}/messages/{m['id']}",
                                  headers=api.auth(admin))
        wrong_account = await c.get(f"/api/accounts/{other.id}/inboxes/{theirs}/messages", headers=api.auth(admin))
        delete_by_reader = await c.delete(f"/api/accounts/{api.account.id}/inboxes/{inbox}/messages/{m['id']}",
                                          headers=api.auth(await api.new_token(level="read")))
    assert (wrong_inbox.status_code, wrong_inbox.json()) == (404, {"error": "Not Found"})
    assert (wrong_account.status_code, wrong_account.json()) == (403, {"errors": "Account access forbidden"})
    assert (delete_by_reader.status_code, delete_by_reader.json()) == (403, {"errors": "Account access forbidden"})
