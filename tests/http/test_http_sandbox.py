"""Sandbox inboxes (MAILTRAP_COMPAT.md §1, §9 items 16, 17): `POST /api/send/{inbox_id}` and
`/api/batch/{inbox_id}` keep the message for an inbox of the account and answer one id; nothing is
queued, delivered or charged. Inboxes are made with the CLI (core/sandbox.py, from `tokens`); messages
are listed and downloaded as .eml through the CLI and the API."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from pathlib import Path
from typing import Any

import mailtrap as mt
import pytest

from mailtrap_smtp import cli
from tests.http_util import SENDER, ApiEnv, minimal


async def _cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), *args])
    return code, capsys.readouterr().out


@pytest.fixture
async def inbox(api: ApiEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> int:
    code, out = await _cli(tmp_path, capsys, "inbox", "create", api.account.name, "QA", "--json")
    assert code == 0
    return int(json.loads(out)["id"])


async def _kept(api: ApiEnv) -> int:
    async with api.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM sandbox_messages"))


async def test_sdk_sandbox_client_keeps_the_message(api: ApiEnv, inbox: int, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # §9 items 16, 17
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", api.ca_path)
    client = mt.MailtrapClient(token=api.token, api_host=f"127.0.0.1:{api.port}", sandbox=True, inbox_id=inbox)
    mail = mt.Mail(sender=mt.Address(email="anyone@unverified.test"), to=[mt.Address(email="a@x.test")],
                   cc=[mt.Address(email="b@x.test")], bcc=[mt.Address(email="c@x.test")], subject="Try", text="T")
    result = await asyncio.to_thread(client.send, mail)
    assert result["success"] is True and len(result["message_ids"]) == 1
    await api.assert_nothing_stored()  # not queued, not charged
    assert await _kept(api) == 1
    code, out = await _cli(tmp_path, capsys, "inbox", "messages", api.account.name, str(inbox), "--json")
    (row,) = json.loads(out)
    assert (row["id"], row["subject"], row["recipients"]) == (result["message_ids"][0], "Try",
                                                              ["a@x.test", "b@x.test", "c@x.test"])
    eml = tmp_path / "m.eml"
    code, _ = await _cli(tmp_path, capsys, "inbox", "download", api.account.name, row["id"], "-o", str(eml))
    assert code == 0
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Try" and msg["To"] == "a@x.test" and msg["Bcc"] is None
    code, out = await _cli(tmp_path, capsys, "inbox", "list", api.account.name, "--json")
    assert code == 0
    assert [(r["name"], r["messages"]) for r in json.loads(out)] == [("QA", 1)]


async def test_api_lists_and_downloads_messages(api: ApiEnv, inbox: int) -> None:
    reader = await api.new_token(level="read")
    async with api.client() as c:
        sent = (await c.post(f"/api/send/{inbox}", json=minimal(), headers=api.auth())).json()
        (mid,) = sent["message_ids"]
        boxes = await c.get(f"/api/accounts/{api.account.id}/inboxes", headers=api.auth(reader))
        listed = await c.get(f"/api/accounts/{api.account.id}/inboxes/{inbox}/messages", headers=api.auth(reader))
        eml = await c.get(listed.json()[0]["download_path"], headers=api.auth(reader))
        refused = await c.get(f"/api/accounts/{api.account.id}/inboxes", headers=api.auth())  # a send token
    assert [(b["id"], b["name"], b["emails_count"]) for b in boxes.json()] == [(inbox, "QA", 1)]
    assert [m["message_id"] for m in listed.json()] == [mid]
    assert eml.status_code == 200 and eml.headers["content-type"] == "message/rfc822"
    assert email.message_from_bytes(eml.content, policy=email.policy.default)["From"] == SENDER
    assert (refused.status_code, refused.json()) == (403, {"errors": "Account access forbidden"})


async def test_sandbox_batch(api: ApiEnv, inbox: int) -> None:
    body = {"base": {"from": {"email": SENDER}, "subject": "S", "text": "T"},
            "requests": [{"to": [{"email": "a@x.test"}, {"email": "b@x.test"}]}, {"to": [{"email": "bad"}]}]}
    async with api.client() as c:
        r = await c.post(f"/api/batch/{inbox}", json=body, headers=api.auth())
    first, second = r.json()["responses"]
    assert first["success"] is True and len(first["message_ids"]) == 1
    assert second == {"success": False, "errors": ["'to' address is invalid"]}
    assert await _kept(api) == 1
    await api.assert_nothing_stored()


@pytest.mark.parametrize(("path", "body", "status", "errors"), [
    ("/api/send/999999", minimal(), 404, ["Not Found"]),
    ("/api/send/{other}", minimal(), 404, ["Not Found"]),
    ("/api/batch/999999", {"requests": [{"to": [{"email": "a@x.test"}]}]}, 404, ["Not Found"]),
    ("/api/send/{inbox}", minimal(subject=None), 400, ["'subject' is required"]),
    ("/api/batch/{inbox}", {"requests": []}, 400, ["empty field: 'requests'"]),
])
async def test_sandbox_refusals(api: ApiEnv, inbox: int, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                path: str, body: dict[str, Any], status: int, errors: list[str]) -> None:
    from tests.smtp_util import create_account

    other = await create_account(api.pool, "other", domain=None)
    code, out = await _cli(tmp_path, capsys, "inbox", "create", other.name, "theirs", "--json")
    assert code == 0
    async with api.client() as c:
        r = await c.post(path.format(inbox=inbox, other=json.loads(out)["id"]), json=body, headers=api.auth())
    assert (r.status_code, r.json()) == (status, {"success": False, "errors": errors})
    assert await _kept(api) == 0
    await api.assert_nothing_stored()


async def test_cli_refusals(api: ApiEnv, inbox: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), "inbox", "create",
                                              api.account.name, "QA"])
    assert (code, capsys.readouterr().err) == (1, "mailtrap-smtp: the account already has an inbox named 'QA'\n")
    code = await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), "inbox", "download",
                                              api.account.name, "00000000-0000-0000-0000-000000000000"])
    assert code == 1 and "no sandbox message" in capsys.readouterr().err
