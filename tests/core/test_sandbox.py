"""Sandbox inboxes: the use case and `inbox` CLI against the real database; kept messages are never
queued, charged or signed."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.auth import Principal
from mailtrap_smtp.core import sandbox
from mailtrap_smtp.core.refusal import Refused
from mailtrap_smtp.outcomes import Outcome, Rejected
from mailtrap_smtp.permissions import Level
from mailtrap_smtp.store import accounts
from tests.cli_util import CliRun

RAW = b"From: App <app@example.com>\r\nTo: a@dest.test\r\nSubject: Hello\r\n\r\nHi.\r\n"


def principal(account_id: int, **kw: Any) -> Principal:
    base: dict[str, Any] = dict(credential_id=None, account_id=account_id, account_name="acme",
                                stream="transactional", monthly_limit=10, max_message_size=1000,
                                billing_anchor_day=1)
    return Principal(**(base | kw))


@pytest.fixture
async def accts(pool: Any) -> tuple[int, int]:
    a = await accounts.create(pool, "acme", monthly_limit=10, max_message_size=1000)
    b = await accounts.create(pool, "other", monthly_limit=10, max_message_size=1000)
    return a["id"], b["id"]


async def nothing_queued_or_charged(pool: Any) -> None:
    for table in ("messages", "recipients", "usage", "events"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_keep_list_download(pool: Any, accts: tuple[int, int]) -> None:
    acct, _ = accts
    inbox = await sandbox.create_inbox(pool, acct, "  QA  ")
    assert (inbox.name, inbox.messages) == ("QA", 0)
    mid = await sandbox.keep(pool, principal(acct), inbox.id, mail_from="app@example.com",
                             recipients=["a@dest.test", "b@dest.test"], raw=RAW)
    [listed] = await sandbox.list_messages(pool, acct, inbox.id)
    assert (listed.id, listed.mail_from, listed.recipients, listed.header_from, listed.subject, listed.size) == (
        mid, "app@example.com", ["a@dest.test", "b@dest.test"], "App <app@example.com>", "Hello", len(RAW))
    assert await sandbox.message_eml(pool, acct, str(mid)) == RAW
    assert [(i.name, i.messages) for i in await sandbox.list_inboxes(pool, acct)] == [("QA", 1)]
    await nothing_queued_or_charged(pool)


async def test_list_is_newest_first_and_capped(pool: Any, accts: tuple[int, int]) -> None:
    acct, _ = accts
    inbox = await sandbox.create_inbox(pool, acct, "QA")
    ids = [await sandbox.keep(pool, principal(acct), inbox.id, mail_from="a@x.test", recipients=["r@x.test"],
                              raw=RAW) for _ in range(3)]
    assert [m.id for m in await sandbox.list_messages(pool, acct, inbox.id)] == ids[::-1]
    assert [m.id for m in await sandbox.list_messages(pool, acct, inbox.id, limit=2)] == ids[:0:-1]
    assert len(await sandbox.list_messages(pool, acct, inbox.id, limit=-5)) == 1


@pytest.mark.parametrize(("name", "error"), [
    ("", "an inbox name is 1 to 255 printable characters"),
    ("   ", "an inbox name is 1 to 255 printable characters"),
    ("x" * 256, "an inbox name is 1 to 255 printable characters"),
    ("a\nb", "an inbox name is 1 to 255 printable characters"),
    ("QA", "the account already has an inbox named 'QA'"),
])
async def test_create_inbox_refusals(pool: Any, accts: tuple[int, int], name: str, error: str) -> None:
    acct, other = accts
    await sandbox.create_inbox(pool, acct, "QA")
    await sandbox.create_inbox(pool, other, "QA")  # the same name in another account is fine
    with pytest.raises(Refused) as e:
        await sandbox.create_inbox(pool, acct, name)
    assert str(e.value) == error
    assert [i.name for i in await sandbox.list_inboxes(pool, acct)] == ["QA"]


@pytest.mark.parametrize(("who", "raw", "outcome"), [
    ({"level": Level.READ}, RAW, Outcome.NOT_PERMITTED),
    ({"stream": "bulk", "streams": frozenset({"transactional"})}, RAW, Outcome.NOT_PERMITTED),
    ({}, RAW + b"x" * 1000, Outcome.SIZE_EXCEEDED),
    ({}, RAW.replace(b"\r\nHi.", b"\nHi."), Outcome.BARE_LINE_ENDING),
    ({}, RAW + b"\0\r\n", Outcome.BARE_LINE_ENDING),
    ({"max_message_size": 5000}, RAW + b"y" * 999 + b"\r\n", Outcome.TEXT_LINE_TOO_LONG),
])
async def test_keep_refusals_store_nothing(pool: Any, accts: tuple[int, int], who: dict[str, Any], raw: bytes,
                                           outcome: Outcome) -> None:
    acct, _ = accts
    inbox = await sandbox.create_inbox(pool, acct, "QA")
    with pytest.raises(Rejected) as e:
        await sandbox.keep(pool, principal(acct, **who), inbox.id, mail_from="a@x.test", recipients=["r@x.test"],
                           raw=raw)
    assert e.value.outcome is outcome
    assert await pool.fetchval("SELECT count(*) FROM sandbox_messages") == 0


async def test_other_accounts_inboxes_and_messages_are_unknown(pool: Any, accts: tuple[int, int]) -> None:
    acct, other = accts
    inbox = await sandbox.create_inbox(pool, acct, "QA")
    mid = await sandbox.keep(pool, principal(acct), inbox.id, mail_from="a@x.test", recipients=["r@x.test"], raw=RAW)
    with pytest.raises(sandbox.InboxNotFound) as e:
        await sandbox.keep(pool, principal(other), inbox.id, mail_from="a@x.test", recipients=["r@x.test"], raw=RAW)
    assert str(e.value) == f"no sandbox inbox {inbox.id} in this account"
    assert await pool.fetchval("SELECT count(*) FROM sandbox_messages") == 1
    for call in (sandbox.list_messages(pool, other, inbox.id), sandbox.get_inbox(pool, other, inbox.id)):
        with pytest.raises(sandbox.InboxNotFound):
            await call
    for key in (str(mid), "not-a-uuid", str(uuid.uuid4())):
        with pytest.raises(sandbox.SandboxMessageNotFound) as m:
            await sandbox.message_eml(pool, other if key == str(mid) else acct, key)
        assert str(m.value) == f"no sandbox message {key} in this account"
    assert await sandbox.list_inboxes(pool, other) == []


# --- the CLI


@pytest.fixture
def run(cli_run: CliRun) -> CliRun:
    cli_run("account", "create", "acme")
    return cli_run


def test_cli_create_list_messages_download(run: Any, db_dsn: str, tmp_path: Path) -> None:
    code, out, err = run("inbox", "create", "acme", "QA", "--json")
    assert code == 0, err
    inbox = json.loads(out)
    assert (inbox["name"], inbox["messages"]) == ("QA", 0)

    async def keep() -> uuid.UUID:
        pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=1)
        try:
            acct = await pool.fetchval("SELECT id FROM accounts WHERE name = 'acme'")
            return await sandbox.keep(pool, principal(acct), inbox["id"], mail_from="a@x.test",
                                      recipients=["r@x.test"], raw=RAW)
        finally:
            await pool.close()

    mid = asyncio.run(keep())
    code, out, _ = run("inbox", "list", "acme")
    assert out.splitlines()[1].split()[:3] == [str(inbox["id"]), "QA", "1"]
    code, out, _ = run("inbox", "messages", "acme", str(inbox["id"]), "--json")
    assert [(m["id"], m["subject"]) for m in json.loads(out)] == [(str(mid), "Hello")]
    code, out, _ = run("inbox", "download", "acme", str(mid))
    assert (code, out) == (0, RAW.decode())
    target = tmp_path / "m.eml"
    code, out, _ = run("inbox", "download", "acme", str(mid), "-o", str(target))
    assert (code, out, target.read_bytes()) == (0, f"wrote {len(RAW)} bytes to {target}\n", RAW)


@pytest.mark.parametrize(("args", "error"), [
    (["inbox", "messages", "acme", "999"], "mailtrap-smtp: no sandbox inbox 999 in this account\n"),
    (["inbox", "download", "acme", "nope"], "mailtrap-smtp: no sandbox message nope in this account\n"),
    (["inbox", "create", "acme", " "], "mailtrap-smtp: an inbox name is 1 to 255 printable characters\n"),
    (["inbox", "list", "nobody"], "mailtrap-smtp: no account named 'nobody'\n"),
])
def test_cli_refusals(run: Any, args: list[str], error: str) -> None:
    code, out, err = run(*args)
    assert (code, out, err) == (1, "", error)
