"""Quota notifications at 80/90/100 % (issue 12): decided in the charging statement, exactly one per
threshold per billing period, also with two server processes and many parallel sessions crossing
them at once; an email through our own queue, DKIM-signed with the operator's domain."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest

from mailtrap_smtp import domainops, metrics, outbox, quota
from mailtrap_smtp.consumers.quota_notices import QuotaNotices
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.store import accounts, messages
from tests.smtp_util import (
    SENDER,
    RawClient,
    create_account,
    message,
    reply_line,
    smtp_sections,
    spawn_service,
    use_quota,
)

OPERATOR_FROM = "alerts@operator.test"
ALERTS = "owner@alerts.test"


async def _operator(pool: Any, cfg: Any, kek: bytes) -> dict[bytes, bytes]:
    """The operator's account and domain with its DKIM keys; a dkimpy DNS hook for its records."""
    await accounts.create(pool, "operator", monthly_limit=1000, max_message_size=1_000_000)
    report = await domainops.add_domain(pool, cfg, kek, "operator", "operator.test", skip_dns=True)
    return {f"{r.name}.".encode(): r.value.encode() for r in report.records if r.type == "TXT"}


def new_message(account_id: int, rcpts: list[str]) -> messages.NewMessage:
    """A message as the submission path stores it (no sending domain: suppressions do not apply)."""
    return messages.NewMessage(
        id=uuid.uuid4(), account_id=account_id, credential_id=None, domain_id=None, stream="transactional",
        mail_from="a@x.test", header_from="a@x.test", subject="s", message_id_header="<1@x>", category=None,
        custom_variables=None, client_ip="127.0.0.1", raw=b"Subject: s\r\n\r\nbody\r\n", recipients=rcpts)


def _dnsfunc(txt: dict[bytes, bytes]) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return txt.get(name if name.endswith(b".") else name + b".")
    return lookup


async def _crossings(pool: Any) -> list[int]:
    rows = await pool.fetch("SELECT details FROM events WHERE type = 'quota_threshold' ORDER BY id")
    return [json.loads(r["details"])["threshold"] for r in rows]


async def _notifications(pool: Any) -> list[Any]:
    return list(await pool.fetch(
        """SELECT m.*, r.rcpt FROM messages m JOIN recipients r ON r.message_id = m.id
            WHERE m.category = 'quota_notification' ORDER BY m.created_at"""))


async def _send(port: int, ctx: Any, token: str, i: int, n: int) -> list[str]:
    c = RawClient("127.0.0.1", port, ctx)
    await c.connect()
    out: list[str] = []
    if await c.login(token) != reply_line("AUTH_OK"):
        return ["auth refused"]
    for k in range(n):
        if await c.cmd(f"MAIL FROM:<{SENDER}>") != reply_line("SENDER_OK"):
            out.append("mail refused")
            break
        r = await c.cmd(f"RCPT TO:<r{i}-{k}@dest.test>")
        if r != reply_line("RECIPIENT_OK"):
            out.append(r)
            await c.cmd("RSET")
            continue
        assert await c.cmd("DATA") == reply_line("START_DATA")
        await c.send(message() + b".\r\n")
        out.append(await c.reply())
    await c.cmd("QUIT")
    return out


async def test_two_processes_many_sessions_three_notifications(pool: Any, make_config: Any, tmp_path: Path,
                                                               client_ssl_context: Any) -> None:
    cfg = make_config(**smtp_sections(limits={"connections_per_account": 100},
                                      notifications={"from": OPERATOR_FROM}))  # writes config.toml
    kek = os.urandom(32)
    txt = await _operator(pool, cfg, kek)
    acct = await create_account(pool, monthly_limit=100)
    await pool.execute("UPDATE accounts SET alert_email = $1 WHERE id = $2", ALERTS, acct.id)
    procs = await asyncio.gather(*(spawn_service(str(tmp_path / "config.toml")) for _ in range(2)))
    try:
        results = await asyncio.gather(*(_send(procs[i % 2][1][0], client_ssl_context, acct.token, i, 6)
                                         for i in range(20)))  # 120 recipients wanted, 100 allowed
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            async with asyncio.timeout(10):
                await proc.communicate()  # reads its stdout to the end, which closes the pipe
    accepted = [r for rs in results for r in rs if r.startswith("250 2.0.0 Ok: queued as ")]
    assert len(accepted) == 100
    assert sorted(await _crossings(pool)) == [80, 90, 100]
    assert await pool.fetchval("SELECT count(*) FROM quota_notifications") == 3

    # Two runners at once (two nodes): the cursor's lease gives the page to one; three emails in all.
    before = metrics.QUOTA_NOTIFICATIONS.labels(threshold="100", emailed="yes")._value.get()
    signer = KeyStore(pool, kek)
    runners = [outbox.OutboxRunner(pool, [QuotaNotices(cfg, signer)]) for _ in range(2)]
    await asyncio.gather(*(r.run_once() for r in runners))
    await asyncio.gather(*(r.run_once() for r in runners))
    sent = await _notifications(pool)
    assert len(sent) == 3
    assert metrics.QUOTA_NOTIFICATIONS.labels(threshold="100", emailed="yes")._value.get() == before + 1
    subjects = sorted(m["subject"] for m in sent)
    assert subjects == ["Account acme reached its monthly sending limit",
                        "Account acme used 80% of its monthly sending limit",
                        "Account acme used 90% of its monthly sending limit"]
    operator = await accounts.get_by_name(pool, "operator")
    for m in sent:
        raw = bytes(m["raw"])
        assert m["rcpt"] == ALERTS and m["mail_from"] == OPERATOR_FROM and m["account_id"] == operator["id"]
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert parsed["From"] == OPERATOR_FROM and parsed["To"] == ALERTS
        assert raw.startswith(b"DKIM-Signature: ") and b"d=operator.test" in raw.split(b"\r\n\r\n")[0]
        assert dkimpy.verify(raw, dnsfunc=_dnsfunc(txt))
    states = {r["state"] for r in await pool.fetch(
        "SELECT state FROM recipients WHERE rcpt = $1", ALERTS)}
    assert states == {"queued"}  # in our own queue, for delivery like any message


async def test_no_alert_address_event_log_metric_only(pool: Any, make_config: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config(notifications={"from": OPERATOR_FROM})
    kek = os.urandom(32)
    await _operator(pool, cfg, kek)
    acct = await create_account(pool, monthly_limit=10)
    before = metrics.QUOTA_NOTIFICATIONS.labels(threshold="90", emailed="no")._value.get()
    await use_quota(pool, acct.id, 8)  # 80 % reached by an operator's adjustment, not by a charge
    period = await pool.fetchval("SELECT period_start FROM usage")
    await messages.accept(pool, new_message(acct.id, ["a@dest.test"]), period)  # 8 -> 9: crosses 90 only
    assert await _crossings(pool) == [90]
    caplog.set_level("INFO", logger="mailtrap_smtp.consumers.quota_notices")
    await outbox.OutboxRunner(pool, [QuotaNotices(cfg, KeyStore(pool, kek))]).run_once()
    assert await _notifications(pool) == []
    assert metrics.QUOTA_NOTIFICATIONS.labels(threshold="90", emailed="no")._value.get() == before + 1
    assert any("account acme crossed 90% of its monthly limit (9 of 10" in r.getMessage() for r in caplog.records)


async def test_once_per_period_even_when_the_limit_is_raised(pool: Any) -> None:
    acct = await create_account(pool, monthly_limit=10)
    period = quota.current_period(1)
    await messages.accept(pool, new_message(acct.id, [f"r{i}@dest.test" for i in range(10)]), period)
    assert await _crossings(pool) == [80, 90, 100]  # one charge across all three: three events
    await accounts.set_plan(pool, acct.id, plan="bigger", monthly_limit=20, max_message_size=1_000_000,
                            alert_thresholds=[80, 90, 100])
    await messages.accept(pool, new_message(acct.id, [f"s{i}@dest.test" for i in range(10)]), period)
    assert await _crossings(pool) == [80, 90, 100]  # 20 of 20 again, but this period was told already
    nxt = quota.period_end(1, period)
    await messages.accept(pool, new_message(acct.id, [f"t{i}@dest.test" for i in range(16)]), nxt)
    assert await _crossings(pool) == [80, 90, 100, 80]  # a new billing period: told again


async def test_thresholds_of_the_plan(pool: Any) -> None:
    acct = await create_account(pool, monthly_limit=4)
    await accounts.set_plan(pool, acct.id, plan="p", monthly_limit=4, max_message_size=1_000_000,
                            alert_thresholds=[50])
    for i in range(4):
        await messages.accept(pool, new_message(acct.id, [f"r{i}@dest.test"]), quota.current_period(1))
    assert await _crossings(pool) == [50]
