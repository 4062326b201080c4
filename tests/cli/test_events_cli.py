"""The command line of issue 12 against the real database: `suppression`, `logs`, `stats`,
`account erase-recipient`; the export of 200,000 entries in a child process with its peak memory
measured; and the retention sweep."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from mailtrap_smtp import cli, quota
from mailtrap_smtp.config import RetentionConfig
from mailtrap_smtp.core import retention
from mailtrap_smtp.core import suppressions as sup
from mailtrap_smtp.store import domains, messages
from tests.paths import ROOT
from tests.smtp_util import DOMAIN, create_account


@pytest.fixture
def run(make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    make_config()
    path = str(tmp_path / "config.toml")

    async def go(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(cli.main, ["-c", path, *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


async def _message(pool: Any, account_id: int, rcpts: list[str], *, subject: str = "Hello",
                   domain: str = DOMAIN) -> uuid.UUID:
    did = int((await domains.get_by_name(pool, domain))["id"])
    mid = uuid.uuid4()
    await messages.accept(pool, messages.NewMessage(
        id=mid, account_id=account_id, credential_id=None, domain_id=did, stream="transactional",
        mail_from=f"app@{domain}", header_from=f"app@{domain}", subject=subject, message_id_header="<1@x>",
        category=None, custom_variables=None, client_ip="192.0.2.1",
        raw=b"From: app@example.com\r\nTo: " + ", ".join(rcpts).encode() + b"\r\nSubject: s\r\n\r\nbody\r\n",
        recipients=rcpts), quota.current_period(1))
    return mid


# --- suppression --------------------------------------------------------------------------------------

async def test_suppression_add_list_import_delete(run: Any, pool: Any, tmp_path: Path) -> None:
    await create_account(pool)
    code, out, err = await run("suppression", "add", "acme", "a@x.test", "B@x.test", "--domain", DOMAIN,
                               "--stream", "bulk", "--json")
    assert code == 0, err
    added = json.loads(out)
    assert [(s["email"], s["sending_stream"], s["type"]) for s in added] == [
        ("a@x.test", "bulk", "manual import"), ("B@x.test", "bulk", "manual import")]
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("email,name\nc@x.test,C\nd@x.test,D\n", encoding="utf-8")
    code, out, _ = await run("suppression", "import", "acme", str(csv_file), "--domain", DOMAIN)
    assert (code, out) == (0, f"imported 2 suppression(s) for {DOMAIN}\n")
    code, out, _ = await run("suppression", "list", "acme", "--email", "b@X.test", "--json")
    assert [s["email"] for s in json.loads(out)] == ["B@x.test"]
    code, out, _ = await run("suppression", "list", "acme")
    assert out.splitlines()[0].split() == ["ID", "EMAIL", "TYPE", "SENDING_STREAM", "DOMAIN_NAME", "CREATED_AT"]
    assert len(out.splitlines()) == 5
    code, out, _ = await run("suppression", "delete", "acme", added[0]["id"])
    assert (code, out) == (0, f"deleted suppression {added[0]['id']} (a@x.test, {DOMAIN}, bulk)\n")
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 3


@pytest.mark.parametrize(("args", "error"), [
    (("suppression", "add", "acme", "not-an-address", "--domain", DOMAIN), "mailtrap-smtp: email is invalid\n"),
    (("suppression", "add", "acme", "a@x.test", "--domain", "other.test"),
     "mailtrap-smtp: no sending domain 'other.test' in this account\n"),
    (("suppression", "add", "nobody", "a@x.test", "--domain", DOMAIN), "mailtrap-smtp: no account named 'nobody'\n"),
    (("suppression", "import", "acme", "/nonexistent.csv", "--domain", DOMAIN),
     "mailtrap-smtp: /nonexistent.csv: No such file or directory\n"),
    (("suppression", "delete", "acme", "xyz"), "mailtrap-smtp: no suppression 'xyz'\n"),
    (("suppression", "delete", "acme", str(uuid.UUID(int=1))),
     "mailtrap-smtp: no suppression 00000000-0000-0000-0000-000000000001\n"),
    (("suppression", "list", "acme", "--since", "soon"), "mailtrap-smtp: --since is not an ISO 8601 time\n"),
])
async def test_suppression_errors_store_nothing(run: Any, pool: Any, args: tuple[str, ...], error: str) -> None:
    await create_account(pool)
    await create_account(pool, "other", domain="other.test")
    code, _, err = await run(*args)
    assert (code, err) == (1, error)
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0


# --- logs and stats -------------------------------------------------------------------------------------

async def test_logs_list_show_export(run: Any, pool: Any) -> None:
    acct = await create_account(pool)
    await _message(pool, acct.id, ["one@dest.test"], subject="First")
    await _message(pool, acct.id, ["two@dest.test", "three@dest.test"], subject="Second, \"quoted\"")
    code, out, err = await run("logs", "list", "acme", "--json", "--limit", "2")
    assert code == 0, err
    page = json.loads(out)
    assert [m["to"] for m in page["messages"]] == ["three@dest.test", "two@dest.test"]
    assert page["total_count"] == 3 and page["next_page_cursor"] == page["messages"][1]["message_id"]
    code, out, _ = await run("logs", "list", "acme", "--json", "--after", page["next_page_cursor"])
    assert [m["to"] for m in json.loads(out)["messages"]] == ["one@dest.test"]
    code, out, _ = await run("logs", "list", "acme", "--json", "--filter", "subject:ci_contain:first")
    assert [m["to"] for m in json.loads(out)["messages"]] == ["one@dest.test"]
    entry = page["messages"][0]["message_id"]
    code, out, _ = await run("logs", "show", "acme", entry, "--json")
    assert json.loads(out)["to"] == "three@dest.test" and json.loads(out)["events"] == []
    code, out, _ = await run("logs", "show", "acme", entry, "--raw")
    assert out.startswith("From: app@example.com\r\n")
    code, out, _ = await run("logs", "export", "acme", "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][:5] == ["message_id", "status", "sent_at", "from", "to"]
    assert [r[4] for r in rows[1:]] == ["three@dest.test", "two@dest.test", "one@dest.test"]
    assert rows[1][5] == 'Second, "quoted"'
    code, out, _ = await run("logs", "export", "acme", "--format", "jsonl", "--filter", "to:equal:one@dest.test")
    (line,) = out.splitlines()
    assert json.loads(line)["subject"] == "First" and json.loads(line)["status"] == "enqueued"


@pytest.mark.parametrize(("args", "error"), [
    (("logs", "list", "acme", "--filter", "bogus:equal:x"), "mailtrap-smtp: --filter 'bogus:equal:x': no field "
     "'bogus' (fields: to, from, subject, category, client_ip, sending_ip, email_service_provider_response, "
     "recipient_mx, email_service_provider, status, sending_stream, sending_domain_id, domain_id, opens_count, "
     "clicks_count, events)\n"),
    (("logs", "list", "acme", "--filter", "status:equal:lost"),
     "mailtrap-smtp: filters[status][value] must be one of: delivered, not_delivered, enqueued, opted_out\n"),
    (("logs", "export", "acme", "--format", "xml"), "mailtrap-smtp: format must be one of: csv, jsonl\n"),
    (("logs", "show", "acme", str(uuid.UUID(int=5))),
     "mailtrap-smtp: no message 00000000-0000-0000-0000-000000000005\n"),
    (("stats", "acme", "--start-date", "2026-12-02", "--end-date", "2026-12-01"),
     "mailtrap-smtp: end_date must not be before start_date\n"),
])
async def test_logs_and_stats_errors(run: Any, pool: Any, args: tuple[str, ...], error: str) -> None:
    await create_account(pool)
    code, out, err = await run(*args)
    assert (code, out, err) == (1, "", error)


async def test_stats_command(run: Any, pool: Any) -> None:
    acct = await create_account(pool)
    did = int((await domains.get_by_name(pool, DOMAIN))["id"])
    today = dt.datetime.now(dt.UTC).date()
    await pool.execute(
        """INSERT INTO stats_daily (account_id, day, domain_id, stream, category, provider, delivery_count,
                                    bounce_count) VALUES ($1, $2, $3, 'transactional', 'welcome', 'Google', 3, 1)""",
        acct.id, today, did)
    code, out, err = await run("stats", "acme", "--start-date", today.isoformat(), "--end-date", today.isoformat(),
                               "--json")
    assert code == 0, err
    assert json.loads(out)["delivery_rate"] == 0.75
    code, out, _ = await run("stats", "acme", "--start-date", today.isoformat(), "--end-date", today.isoformat(),
                             "--by", "email_service_providers", "--json")
    assert json.loads(out) == [{"email_service_provider": "Google", "stats": {
        "delivery_count": 3, "delivery_rate": 0.75, "bounce_count": 1, "bounce_rate": 0.25, "open_count": 0,
        "open_rate": 0.0, "click_count": 0, "click_rate": 0.0, "spam_count": 0, "spam_rate": 0.0}}]


# --- export of 200,000 entries in constant memory -------------------------------------------------------

def _peak_rss_kib(args: list[str]) -> tuple[int, int]:
    """Run the CLI in a child process; (its exit status, its peak resident memory in KiB)."""
    proc = subprocess.Popen([sys.executable, "-m", "mailtrap_smtp", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    assert proc.returncode == 0, proc.stderr.read().decode()
    proc.stderr.close()
    return proc.returncode, int(usage.ru_maxrss)


async def _bulk_entries(pool: Any, account_id: int, n: int) -> None:
    """n log entries in n/100 messages of 100 recipients, written by SQL (fast setup)."""
    did = await pool.fetchval("SELECT id FROM sending_domains WHERE account_id = $1", account_id)
    await pool.execute(
        """WITH m AS (
               INSERT INTO messages (id, account_id, domain_id, stream, mail_from, header_from, subject, size, raw,
                                     created_at)
               SELECT gen_random_uuid(), $1, $2, 'transactional', 'app@example.com', 'app@example.com',
                      'Subject ' || g, 100, 'x'::bytea, now() - make_interval(secs => g)
                 FROM generate_series(1, $3 / 100) g
               RETURNING id)
           INSERT INTO recipients (message_id, rcpt, domain, state)
           SELECT m.id, 'user' || r || '@dest.test', 'dest.test', 'delivered' FROM m, generate_series(1, 100) r""",
        account_id, did, n)


async def test_export_of_200000_entries_in_bounded_memory(make_config: Any, pool: Any, tmp_path: Path) -> None:
    make_config()
    small = await create_account(pool, "small", domain="small.test")
    big = await create_account(pool, "big", domain="big.test")
    await _bulk_entries(pool, small.id, 2_000)
    await _bulk_entries(pool, big.id, 200_000)
    config = str(tmp_path / "config.toml")
    out = tmp_path / "big.jsonl"
    _, base = await asyncio.to_thread(_peak_rss_kib, ["-c", config, "logs", "export", "small", "--format", "jsonl",
                                                      "--output", str(tmp_path / "small.jsonl")])
    _, peak = await asyncio.to_thread(_peak_rss_kib, ["-c", config, "logs", "export", "big", "--format", "jsonl",
                                                      "--output", str(out)])
    with out.open(encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    assert lines == 200_000
    # 100 times the rows: if the export held them, this would grow by hundreds of MiB.
    assert peak - base < 25 * 1024, (base, peak)
    print(f"export peak RSS: 2,000 entries {base} KiB, 200,000 entries {peak} KiB")


# --- retention and erasure ------------------------------------------------------------------------------

async def test_retention_sweep(pool: Any) -> None:
    acct = await create_account(pool)
    old_done = await _message(pool, acct.id, ["a@dest.test"])
    old_queued = await _message(pool, acct.id, ["b@dest.test"])
    new_done = await _message(pool, acct.id, ["c@dest.test"])
    await pool.execute("UPDATE recipients SET state = 'delivered' WHERE message_id = ANY($1::uuid[])",
                       [old_done, new_done])
    await pool.execute("UPDATE messages SET created_at = now() - interval '40 days' WHERE id = ANY($1::uuid[])",
                       [old_done, old_queued])
    now = dt.datetime.now(dt.UTC)
    swept = await retention.sweep(pool, RetentionConfig(raw_message_days=30), now)
    assert swept == retention.Swept(1, 0, 0)
    raws = dict(await pool.fetch("SELECT id, length(raw) FROM messages"))
    assert raws[old_done] == 0 and raws[old_queued] > 0 and raws[new_done] > 0
    assert await pool.fetchval("SELECT size FROM messages WHERE id = $1", old_done) > 0  # metadata kept
    assert await retention.sweep(pool, RetentionConfig(raw_message_days=30), now) == retention.Swept(0, 0, 0)
    events_before = await pool.fetchval("SELECT count(*) FROM events")
    swept = await retention.sweep(pool, RetentionConfig(log_days=30), now)
    assert swept.messages == 1
    assert {r["id"] for r in await pool.fetch("SELECT id FROM messages")} == {old_queued, new_done}
    assert await pool.fetchval("SELECT count(*) FROM events") == events_before - 1  # its reception event
    assert await retention.sweep(pool, RetentionConfig(), now) == retention.Swept(0, 0, 0)  # 0 days: kept


async def test_erase_recipient(run: Any, pool: Any) -> None:
    acct = await create_account(pool)
    other = await create_account(pool, "other", domain="other.test")
    alone = await _message(pool, acct.id, ["Gone@dest.test"])
    shared = await _message(pool, acct.id, ["gone@dest.test", "stay@dest.test"])
    elsewhere = await _message(pool, other.id, ["gone@dest.test"], domain="other.test")
    did = int((await domains.get_by_name(pool, DOMAIN))["id"])
    await sup.add_one(pool, acct.id, sup.Entry("GONE@dest.test", did))
    code, out, err = await run("account", "erase-recipient", "acme", "gone@dest.test")
    assert code == 0, err
    assert out == ("erased gone@dest.test from account acme: 2 recipients, 1 messages, 1 bodies, "
                   "1 suppressions, 0 events\n")
    ids = {r["id"] for r in await pool.fetch("SELECT id FROM messages")}
    assert ids == {shared, elsewhere} and alone not in ids
    assert [r["rcpt"] for r in await pool.fetch("SELECT rcpt FROM recipients WHERE message_id = $1", shared)] == [
        "stay@dest.test"]
    assert await pool.fetchval("SELECT length(raw) FROM messages WHERE id = $1", shared) == 0
    assert await pool.fetchval("SELECT count(*) FROM recipients WHERE message_id = $1", elsewhere) == 1
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0
    code, out, _ = await run("account", "erase-recipient", "acme", "gone@dest.test", "--json")
    assert json.loads(out) == {"recipients": 0, "messages": 0, "bodies": 0, "suppressions": 0, "events": 0}
    code, _, err = await run("account", "erase-recipient", "acme", "not an address")
    assert (code, err) == (1, "mailtrap-smtp: not an email address: 'not an address'\n")
