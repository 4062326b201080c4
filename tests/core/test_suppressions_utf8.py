"""Internationalised addresses in the suppression list (RFC 6531 §3.3, `mailbox.suppression_form`):
added through the use case and the CLI, stored with the domain as A-labels and a non-ASCII local part
lower-cased, every spelling of one mailbox one suppression; at submission over real SMTP (SMTPUTF8)
a suppressed internationalised recipient is stored `rejected`, not charged, never queued; a hard
bounce of one suppresses it in the same form."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from mailtrap_smtp import cli, outbox
from mailtrap_smtp.consumers.auto_suppressions import AutoSuppressions
from mailtrap_smtp.core import suppressions as sup
from mailtrap_smtp.store import domains
from tests.smtp_util import DOMAIN, SENDER, Env, authed, create_account, reply_line

QUEUED = "250 2.0.0 Ok: queued as "
ACE = "xn--bcher-kva.example"  # bücher.example


async def _domain_id(env: Env) -> int:
    return int((await domains.get_by_name(env.pool, DOMAIN))["id"])


async def _emails(pool: Any) -> list[str]:
    return [r["email"] for r in await pool.fetch("SELECT email FROM suppressions ORDER BY created_at, email")]


@pytest.mark.parametrize(("given", "stored"), [
    ("j\u00fcrgen@dest.test", "j\u00fcrgen@dest.test"),
    ("J\u00fcrgen@Dest.test", "j\u00fcrgen@Dest.test"),               # ASCII domain: as given
    ("ops@B\u00fccher.example", f"ops@{ACE}"),                       # ASCII local part: as given
    ("Ops@" + ACE, "Ops@" + ACE),                                    # all ASCII: unchanged
    ("\u7528\u6237@\u4f8b\u5b50.test", "\u7528\u6237@xn--fsqu00a.test"),  # 用户@例子.test
    ('"j\u00f6rg doe"@dest.test', '"j\u00f6rg doe"@dest.test'),      # quoted (RFC 6531 §3.3)
])
async def test_internationalised_address_is_stored_in_its_compared_form(smtp: Env, given: str,
                                                                        stored: str) -> None:
    obj = await sup.add_one(smtp.pool, smtp.account.id, sup.Entry(given, await _domain_id(smtp)))
    assert obj["email"] == stored
    assert await _emails(smtp.pool) == [stored]


async def test_every_spelling_of_one_mailbox_is_one_suppression(smtp: Env) -> None:
    did = await _domain_id(smtp)
    first = await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("J\u00fcrgen@B\u00fccher.example", did))
    for spelling in ("j\u00fcrgen@" + ACE, "J\u00dcRGEN@B\u00dcCHER.example", "j\u00fcrgen@b\u00fccher.example"):
        assert await sup.add_one(smtp.pool, smtp.account.id, sup.Entry(spelling, did)) == first
    # In one call too: deduplicated before the statement.
    got = await sup.add(smtp.pool, smtp.account.id, [sup.Entry("\u00c9mile@dest.test", did),
                                                      sup.Entry("\u00e9mile@DEST.test", did)])
    assert [o["email"] for o in got] == ["\u00e9mile@dest.test"]  # one entry, first spelling (lower-cased)
    assert await _emails(smtp.pool) == [f"j\u00fcrgen@{ACE}", "\u00e9mile@dest.test"]
    for query in ("J\u00dcRGEN@b\u00fccher.example", f"j\u00fcrgen@{ACE.upper()}"):
        assert [o["id"] for o in await sup.search(smtp.pool, smtp.account.id, email=query)] == [first["id"]]
    assert await sup.search(smtp.pool, smtp.account.id, email="jurgen@b\u00fccher.example") == []


async def test_csv_import_takes_internationalised_addresses(smtp: Env) -> None:
    text = "email\nJ\u00fcrgen@B\u00fccher.example\nj\u00fcrgen@xn--bcher-kva.example\nops@dest.test\n"
    got = await sup.import_csv(smtp.pool, smtp.account.id, text, domain_id=await _domain_id(smtp))
    assert [o["email"] for o in got] == [f"j\u00fcrgen@{ACE}", "ops@dest.test"]


# --- at submission, over SMTP with SMTPUTF8 ---------------------------------------------------------------

async def _send_utf8(env: Env, rcpts: list[str]) -> uuid.UUID:
    c = await authed(env)
    assert await c.cmd(f"MAIL FROM:<{SENDER}> SMTPUTF8") == reply_line("SENDER_OK")
    for r in rcpts:
        assert await c.cmd(f"RCPT TO:<{r}>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("DATA") == reply_line("START_DATA")
    got = await c.cmd(f"From: <{SENDER}>\r\nTo: {', '.join(rcpts)}\r\nSubject: Gr\u00fc\u00dfe\r\n\r\nhi\r\n.")
    c.close()
    assert got.startswith(QUEUED), got
    return uuid.UUID(got.rsplit(" ", 1)[1])


@pytest.mark.parametrize("rcpt", [
    "j\u00fcrgen@b\u00fccher.example",
    "J\u00fcrgen@" + ACE,                     # the domain in A-labels, the local part in another case
    "J\u00dcRGEN@B\u00dcCHER.example",
])
async def test_suppressed_internationalised_recipient_is_rejected_not_charged(smtp: Env, rcpt: str) -> None:
    await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("J\u00fcrgen@B\u00fccher.example", await _domain_id(smtp)))
    mid = await _send_utf8(smtp, [rcpt, "ok@dest.test"])
    states = dict(await smtp.pool.fetch("SELECT rcpt, state FROM recipients WHERE message_id = $1", mid))
    assert states == {rcpt: "rejected", "ok@dest.test": "queued"}  # stored as the client wrote it
    assert await smtp.counts() == {"messages": 1, "recipients": 2, "used": 1, "events": 1}
    details = json.loads(await smtp.pool.fetchval(
        "SELECT details FROM events WHERE type = 'suppressed' AND message_id = $1", mid))
    assert details["email"] == rcpt
    assert details["reason"] == "Recipient in suppression list. Reason: manual import"


async def test_other_mailbox_of_the_domain_is_not_suppressed(smtp: Env) -> None:
    await sup.add_one(smtp.pool, smtp.account.id, sup.Entry("j\u00fcrgen@b\u00fccher.example", await _domain_id(smtp)))
    mid = await _send_utf8(smtp, ["jurgen@b\u00fccher.example", "j\u00fcrgen2@b\u00fccher.example"])
    states = [r["state"] for r in await smtp.pool.fetch("SELECT state FROM recipients WHERE message_id = $1", mid)]
    assert states == ["queued", "queued"]
    assert await smtp.counts() == {"messages": 1, "recipients": 2, "used": 2, "events": 1}


async def test_hard_bounce_of_internationalised_recipient_suppresses_in_compared_form(smtp: Env) -> None:
    rcpt = "J\u00fcrgen@B\u00fccher.example"
    mid = await _send_utf8(smtp, [rcpt])
    rid = int(await smtp.pool.fetchval("SELECT id FROM recipients WHERE message_id = $1", mid))
    bounce = outbox.OutboxEvent(
        outbox.Position(1, 1), uuid.uuid4(), "bounce", smtp.account.id, await _domain_id(smtp), mid, rid,
        {"reply": "550 5.1.1 no such user", "category": "bad_recipient"}, dt.datetime.now(dt.UTC), rcpt,
        "transactional", None, None, DOMAIN)
    async with smtp.pool.acquire() as conn, conn.transaction():
        await AutoSuppressions().apply(conn, [bounce])
    (obj,) = await sup.search(smtp.pool, smtp.account.id)
    assert obj["email"] == f"j\u00fcrgen@{ACE}" and obj["type"] == "hard bounce"
    assert obj["message_bounce_category"] == "badrecipient"
    # Another spelling of the address is refused from now on.
    again = await _send_utf8(smtp, [f"j\u00fcrgen@{ACE}"])
    assert await smtp.pool.fetchval("SELECT state FROM recipients WHERE message_id = $1", again) == "rejected"


# --- the CLI ----------------------------------------------------------------------------------------------

@pytest.fixture
def run(make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    make_config()
    path = str(tmp_path / "config.toml")

    async def go(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(cli.main, ["-c", path, *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


async def test_cli_add_import_list_internationalised(run: Any, pool: Any, tmp_path: Path) -> None:
    await create_account(pool)
    code, out, err = await run("suppression", "add", "acme", "J\u00fcrgen@B\u00fccher.example", "--domain", DOMAIN,
                               "--json")
    assert code == 0, err
    assert [s["email"] for s in json.loads(out)] == [f"j\u00fcrgen@{ACE}"]
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("email\n\u7528\u6237@\u4f8b\u5b50.test\nj\u00fcrgen@b\u00fccher.example\n", encoding="utf-8")
    code, out, err = await run("suppression", "import", "acme", str(csv_file), "--domain", DOMAIN)
    assert (code, out) == (0, f"imported 2 suppression(s) for {DOMAIN}\n"), err
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 2  # the second line was already there
    code, out, _ = await run("suppression", "list", "acme", "--email", "\u7528\u6237@\u4f8b\u5b50.TEST", "--json")
    assert [s["email"] for s in json.loads(out)] == ["\u7528\u6237@xn--fsqu00a.test"]
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"email\ncaf\xe9@dest.test\n")
    code, out, err = await run("suppression", "import", "acme", str(latin1), "--domain", DOMAIN)
    assert code != 0 and err.strip().endswith(f"{latin1}: not UTF-8 text")
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 2
