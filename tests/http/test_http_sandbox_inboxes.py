"""Sandbox inboxes themselves through the Python SDK's testing API (`testing_api.inboxes`): each call
parses as its `Inbox` without a validation error and shows what we keep (counts, unread, the last
message's time, the account's size limit, the API host, the token's permissions) and the empty values
we document for what we have not (POP3, email username, forwarding); create through the account's
one implicit project, rename, clean, mark all read, delete; every refusal's exact answer with
nothing changed; the CLI `inbox` commands keep working."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import mailtrap as mt
import mailtrap.client
import pytest
from mailtrap.models.inboxes import CreateInboxParams, Inbox, UpdateInboxParams
from mailtrap.models.messages import UpdateEmailMessageParams

from mailtrap_smtp import cli
from mailtrap_smtp.core import sandbox
from tests.http_util import ApiEnv, minimal


@pytest.fixture
async def inbox(api: ApiEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), "inbox", "create",
                                              api.account.name, "QA", "--json"])
    assert code == 0
    return int(json.loads(capsys.readouterr().out)["id"])


def _testing(api: ApiEnv, token: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    monkeypatch.setattr(mailtrap.client, "GENERAL_HOST", f"127.0.0.1:{api.port}")
    return mt.MailtrapClient(token=token, account_id=str(api.account.id)).testing_api


@pytest.fixture
async def testing(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> Any:
    return _testing(api, await api.new_token(level="admin"), monkeypatch)


async def _keep(api: ApiEnv, inbox: int, subject: str = "s") -> None:
    async with api.client() as c:
        r = await c.post(f"/api/send/{inbox}", json=minimal(subject=subject), headers=api.auth())
    assert r.status_code == 200, r.text


async def _size_limit(api: ApiEnv) -> int:
    async with api.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT max_message_size FROM accounts WHERE id = $1", api.account.id))


async def _state(api: ApiEnv) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with api.pool.acquire() as conn:
        boxes = await conn.fetch("SELECT id, account_id, name FROM sandbox_inboxes ORDER BY id")
        kept = await conn.fetch("SELECT number, inbox_id, is_read FROM sandbox_messages ORDER BY number")
    return [tuple(r) for r in boxes], [tuple(r) for r in kept]


# What we have no such thing for (README, API section): the values the SDK's model accepts.
EMPTY = {"username": "", "max_size": 0, "status": "active", "email_username": "", "email_username_enabled": False,
         "sent_messages_count": 0, "forwarded_messages_count": 0, "forward_from_email_address": "", "domain": "",
         "pop3_domain": "", "email_domain": "", "smtp_ports": [], "pop3_ports": [], "password": None}


async def test_sdk_lists_and_gets_inboxes_in_its_shape(api: ApiEnv, inbox: int, testing: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    empty = (await sandbox.create_inbox(api.pool, api.account.id, "Empty")).id
    for subject in ("one", "two", "three"):
        await _keep(api, inbox, subject)
    newest, middle, _ = await asyncio.to_thread(testing.messages.get_list, inbox)
    await asyncio.to_thread(testing.messages.update, inbox, middle.id, UpdateEmailMessageParams(is_read=True))
    listed = await asyncio.to_thread(testing.inboxes.get_list)
    assert [type(i) for i in listed] == [Inbox, Inbox] and [i.id for i in listed] == [inbox, empty]
    qa, blank = listed
    assert (qa.name, qa.emails_count, qa.emails_unread_count, qa.used) == ("QA", 3, 2, True)
    assert dt.datetime.fromisoformat(qa.last_message_sent_at) == newest.created_at  # the SDK parses this one
    assert (qa.project_id, qa.api_domain, qa.max_message_size) == (
        api.account.id, f"127.0.0.1:{api.port}", await _size_limit(api))
    assert (qa.permissions.can_read, qa.permissions.can_update, qa.permissions.can_destroy,
            qa.permissions.can_leave) == (True, True, True, False)
    assert {k: getattr(qa, k) for k in EMPTY} == EMPTY
    assert (blank.name, blank.emails_count, blank.emails_unread_count, blank.used,
            blank.last_message_sent_at) == ("Empty", 0, 0, False, None)
    assert await asyncio.to_thread(testing.inboxes.get_by_id, inbox) == qa
    reader = _testing(api, await api.new_token(level="read"), monkeypatch)
    seen = await asyncio.to_thread(reader.inboxes.get_by_id, inbox)
    assert (seen.permissions.can_read, seen.permissions.can_update, seen.permissions.can_destroy,
            seen.permissions.can_leave) == (True, False, False, False)
    assert seen.emails_unread_count == 2  # reading the inbox reads no message


async def test_sdk_creates_renames_marks_read_cleans_and_deletes(api: ApiEnv, inbox: int, testing: Any,
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    made = await asyncio.to_thread(testing.inboxes.create, api.account.id, CreateInboxParams(name="Made"))
    assert (made.name, made.project_id, made.emails_count, made.last_message_sent_at) == (
        "Made", api.account.id, 0, None)
    await _keep(api, made.id, "a")
    await _keep(api, made.id, "b")
    await _keep(api, inbox, "stays")
    renamed = await asyncio.to_thread(testing.inboxes.update, made.id, UpdateInboxParams(name="Renamed"))
    assert (renamed.id, renamed.name, renamed.emails_count, renamed.emails_unread_count) == (made.id, "Renamed", 2, 2)
    read = await asyncio.to_thread(testing.inboxes.mark_as_read, made.id)
    assert (read.emails_count, read.emails_unread_count) == (2, 0)
    assert [m.is_read for m in await asyncio.to_thread(testing.messages.get_list, made.id)] == [True, True]
    cleaned = await asyncio.to_thread(testing.inboxes.clean, made.id)
    assert (cleaned.name, cleaned.emails_count, cleaned.used, cleaned.last_message_sent_at) == (
        "Renamed", 0, False, None)
    assert await asyncio.to_thread(testing.messages.get_list, made.id) == []
    await _keep(api, made.id, "c")
    gone = await asyncio.to_thread(testing.inboxes.delete, made.id)
    assert (gone.id, gone.name, gone.emails_count) == (made.id, "Renamed", 1)
    with pytest.raises(mt.APIError) as info:
        await asyncio.to_thread(testing.inboxes.get_by_id, made.id)
    assert info.value.status == 404
    boxes, kept = await _state(api)
    assert [b[2] for b in boxes] == ["QA"] and [k[1] for k in kept] == [inbox]  # the other inbox untouched
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), "inbox", "list",
                                              api.account.name, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["id"], row["name"], row["messages"], row["unread"]) == (inbox, "QA", 1, 1)


FORBIDDEN = {"errors": "Account access forbidden"}
NOT_FOUND = {"error": "Not Found"}


@pytest.mark.parametrize(("who", "method", "path", "body", "status", "expect"), [
    ("admin", "GET", "/inboxes/999999", None, 404, NOT_FOUND),
    ("admin", "GET", "/inboxes/{theirs}", None, 404, NOT_FOUND),
    ("admin", "GET", "{other}/inboxes", None, 403, FORBIDDEN),
    ("send", "GET", "/inboxes", None, 403, FORBIDDEN),
    ("send", "GET", "/inboxes/{inbox}", None, 403, FORBIDDEN),
    ("read", "DELETE", "/inboxes/{inbox}", None, 403, FORBIDDEN),
    ("admin", "DELETE", "/inboxes/{theirs}", None, 404, NOT_FOUND),
    ("admin", "DELETE", "{other}/inboxes/{theirs}", None, 403, FORBIDDEN),
    ("read", "PATCH", "/inboxes/{inbox}/clean", None, 403, FORBIDDEN),
    ("admin", "PATCH", "/inboxes/{theirs}/clean", None, 404, NOT_FOUND),
    ("read", "PATCH", "/inboxes/{inbox}/all_read", None, 403, FORBIDDEN),
    ("admin", "PATCH", "/inboxes/{theirs}/all_read", None, 404, NOT_FOUND),
    ("read", "PATCH", "/inboxes/{inbox}", {"inbox": {"name": "X"}}, 403, FORBIDDEN),
    ("admin", "PATCH", "/inboxes/{theirs}", {"inbox": {"name": "X"}}, 404, NOT_FOUND),
    ("admin", "PATCH", "/inboxes/{inbox}", {"inbox": {"name": "Other"}}, 422,
     {"errors": {"name": ["has already been taken"]}}),
    ("admin", "PATCH", "/inboxes/{inbox}", {"inbox": {"name": " "}}, 422,
     {"errors": {"name": ["an inbox name is 1 to 255 printable characters"]}}),
    ("admin", "PATCH", "/inboxes/{inbox}", {"inbox": {"email_username": "qa"}}, 422,
     {"errors": {"email_username": ["is not supported"]}}),
    ("admin", "PATCH", "/inboxes/{inbox}", {}, 422, {"errors": {"name": ["can't be blank"]}}),
    ("admin", "PATCH", "/inboxes/{inbox}", {"inbox": {"name": 7}}, 422, {"errors": {"name": ["can't be blank"]}}),
    ("admin", "POST", "/projects/999999/inboxes", {"inbox": {"name": "New"}}, 404, NOT_FOUND),
    ("admin", "POST", "/projects/{other_id}/inboxes", {"inbox": {"name": "New"}}, 404, NOT_FOUND),
    ("read", "POST", "/projects/{account}/inboxes", {"inbox": {"name": "New"}}, 403, FORBIDDEN),
    ("admin", "POST", "/projects/{account}/inboxes", {"inbox": {"name": "QA"}}, 422,
     {"errors": {"name": ["has already been taken"]}}),
    ("admin", "POST", "/projects/{account}/inboxes", {"inbox": {}}, 422, {"errors": {"name": ["can't be blank"]}}),
    ("admin", "PATCH", "/inboxes/{inbox}/reset_credentials", None, 404, NOT_FOUND),
])
async def test_inbox_refusals_change_nothing(api: ApiEnv, inbox: int, who: str, method: str, path: str,
                                            body: Any, status: int, expect: dict[str, Any]) -> None:
    from tests.smtp_util import create_account

    await sandbox.create_inbox(api.pool, api.account.id, "Other")
    other = await create_account(api.pool, "other", domain=None)
    theirs = (await sandbox.create_inbox(api.pool, other.id, "theirs")).id
    await _keep(api, inbox)
    before = await _state(api)
    token = api.token if who == "send" else await api.new_token(level=who)
    url = path.format(inbox=inbox, theirs=theirs, other=f"/api/accounts/{other.id}", other_id=other.id,
                      account=api.account.id)
    if not url.startswith("/api/"):
        url = f"/api/accounts/{api.account.id}{url}"
    async with api.client() as c:
        r = await c.request(method, url, json=body, headers=api.auth(token))
    assert (r.status_code, r.json()) == (status, expect)
    assert await _state(api) == before
