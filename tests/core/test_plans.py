"""Named plans (`[plans.<name>]`), `account create --plan`, `account set-plan`, and what happens at
the limit: raising the plan lets the account send again at once on every process, and a new billing
period starts with nothing used on its anchor day (two real server processes)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from mailtrap_smtp import cli, config, quota
from tests.cli_util import make_cli_run
from tests.smtp_util import SENDER, RawClient, create_account, message, reply_line, smtp_sections, spawn_service

PLANS = {"starter": {"monthly_messages": 2, "message_size": 1000000},
         "pro": {"monthly_messages": 50, "message_size": 2000000, "alert_thresholds": [50, 100]}}


def load_text(tmp_path: Path, text: str) -> config.Config:
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    return config.load(p, environ={})


def test_plans_notifications_retention_in_the_config(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "[plans.pro]\nmonthly_messages = 50\nalert_thresholds = [90]\n"
                              "[plans.free]\n[notifications]\nfrom = 'alerts@op.test'\n"
                              "[retention]\nraw_message_days = 7\nlog_days = 30\n")
    assert cfg.plans == {"pro": config.PlanConfig(50, 10 * 1024 * 1024, [90]), "free": config.PlanConfig()}
    assert cfg.notifications.from_ == "alerts@op.test"
    assert (cfg.retention.raw_message_days, cfg.retention.log_days) == (7, 30)
    shown = config.redacted(cfg)
    assert shown["notifications"] == {"from": "alerts@op.test"} and shown["plans"]["pro"]["monthly_messages"] == 50
    env = config.load(None, environ={"MAILTRAP_SMTP_PLANS__BIG": "{monthly_messages = 9}",
                                     "MAILTRAP_SMTP_NOTIFICATIONS__FROM": "a@b.test"})
    assert env.plans["big"].monthly_messages == 9 and env.notifications.from_ == "a@b.test"


@pytest.mark.parametrize(("text", "error"), [
    ("[plans.x]\nmonthly_messages = -1", "plans.x.monthly_messages: must be 0 or more, got -1"),
    ("[plans.x]\nmessage_size = 40000000",
     "plans.x.message_size: must be between 1 and limits.message_size_cap (31457280), got 40000000"),
    ("[plans.x]\nalert_thresholds = [80, 120]",
     "plans.x.alert_thresholds: distinct percentages between 1 and 100, got [80, 120]"),
    ("[plans.x]\nalert_thresholds = [80, 80]",
     "plans.x.alert_thresholds: distinct percentages between 1 and 100, got [80, 80]"),
    ("[plans.x]\nalert_thresholds = ['80']", "plans.x.alert_thresholds[0]: expected an integer, got '80'"),
    ("[plans.x]\nmonthly = 5", "plans.x.monthly: unknown key"),
    ("[plans]\nx = 5", "plans.x: expected a table, got 5"),
    ("[notifications]\nfrom = 'not an address'", "notifications.from: not an email address: 'not an address'"),
    ("[notifications]\nfrom = 'a@b.test\\r\\nBcc: x@y'", "notifications.from: not an email address"),
    ("[notifications]\nfrom_ = 'a@b.test'", "notifications.from_: unknown key"),
    ("[retention]\nlog_days = -1", "retention.log_days: must be 0 (keep) or more, got -1"),
    ("[retention]\ninterval_seconds = 0", "retention.interval_seconds: must be positive, got 0"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        load_text(tmp_path, text)
    assert error in str(e.value) and "\n" not in str(e.value)


@pytest.fixture
def run(make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    return make_cli_run(make_config, tmp_path, capsys, plans=PLANS)


def test_account_create_on_a_plan_and_set_plan(run: Any) -> None:
    code, out, err = run("account", "create", "acme", "--plan", "starter", "--alert-email", "ops@acme.test")
    assert code == 0, err
    assert out == "created account acme on plan starter (monthly limit 2, max message size 1000000 bytes)\n"
    code, out, err = run("account", "set-plan", "acme", "pro")
    assert code == 0, err
    assert out == ("account acme is on plan pro (monthly limit 50, max message size 2000000 bytes, "
                   "alerts at 50 %, 100 %)\n")
    code, out, _ = run("account", "set-plan", "acme", "starter", "--json")
    row = json.loads(out)
    assert (row["plan"], row["monthly_limit"], row["alert_thresholds"]) == ("starter", 2, [80, 90, 100])


@pytest.mark.parametrize(("args", "error"), [
    (("account", "create", "x", "--plan", "gold"), "mailtrap-smtp: no plan named 'gold' (plans: pro, starter)\n"),
    (("account", "create", "x", "--plan", "pro", "--monthly-limit", "5"),
     "mailtrap-smtp: --plan sets the limits: leave out --monthly-limit and --max-message-size\n"),
    (("account", "create", "x", "--plan", "pro", "--billing-anchor-day", "32"),
     "mailtrap-smtp: billing_anchor_day must be between 1 and 31\n"),
    (("account", "set-plan", "nobody", "pro"), "mailtrap-smtp: no account named 'nobody'\n"),
    (("account", "set-plan", "acme", "gold"), "mailtrap-smtp: no plan named 'gold' (plans: pro, starter)\n"),
])
def test_plan_errors_change_nothing(run: Any, args: tuple[str, ...], error: str) -> None:
    assert run("account", "create", "acme", "--plan", "starter")[0] == 0
    code, _, err = run(*args)
    assert (code, err) == (1, error)
    code, out, _ = run("account", "list", "--json")
    assert [(a["name"], a["monthly_limit"]) for a in json.loads(out)] == [("acme", 2)]


# --- two server processes ----------------------------------------------------------------------------

async def _try_send(port: int, ctx: Any, token: str) -> str:
    c = RawClient("127.0.0.1", port, ctx)
    await c.connect()
    r = await c.login(token)
    if r != reply_line("AUTH_OK"):
        return r
    await c.cmd(f"MAIL FROM:<{SENDER}>")
    await c.cmd("RCPT TO:<a@dest.test>")
    await c.cmd("DATA")
    await c.send(message() + b".\r\n")
    reply = await c.reply()
    await c.cmd("QUIT")
    return reply


async def _stop(procs: list[Any]) -> None:
    for proc, _ in procs:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in procs:
        async with asyncio.timeout(10):
            await proc.communicate()  # reads its stdout to the end, which closes the pipe
        assert proc.returncode == 0


async def test_raising_the_plan_sends_again_at_once_on_every_process(
        pool: Any, make_config: Any, tmp_path: Path, client_ssl_context: Any) -> None:
    make_config(**smtp_sections(plans=PLANS))
    acct = await create_account(pool, monthly_limit=2)
    procs = await asyncio.gather(*(spawn_service(str(tmp_path / "config.toml")) for _ in range(2)))
    ports = [p[1][0] for p in procs]
    try:
        for port in ports:
            assert (await _try_send(port, client_ssl_context, acct.token)).startswith("250 ")
        for port in ports:  # at the limit on both
            assert await _try_send(port, client_ssl_context, acct.token) == reply_line("QUOTA_EXCEEDED")
        code = await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), "account", "set-plan",
                                                  "acme", "pro"])
        assert code == 0
        for port in ports:  # the next AUTH on each process sees the new limit
            assert (await _try_send(port, client_ssl_context, acct.token)).startswith("250 ")
    finally:
        await _stop(procs)
    assert await pool.fetchval("SELECT sum(used) FROM usage") == 4


async def test_a_new_billing_period_starts_empty_on_its_anchor_day(
        pool: Any, make_config: Any, tmp_path: Path, client_ssl_context: Any) -> None:
    make_config(**smtp_sections())
    today = dt.datetime.now(dt.UTC).date()
    tomorrow = today + dt.timedelta(days=1)
    # Anchor today: a period began today. Anchor tomorrow: the period that began a month ago runs on.
    fresh = await create_account(pool, "fresh", monthly_limit=1)
    running = await create_account(pool, "running", monthly_limit=1, domain="other.test")
    await pool.execute("UPDATE accounts SET billing_anchor_day = $1 WHERE id = $2", today.day, fresh.id)
    await pool.execute("UPDATE accounts SET billing_anchor_day = $1 WHERE id = $2", tomorrow.day, running.id)
    previous = quota.period_start(today.day, today - dt.timedelta(days=1))
    current_running = quota.period_start(tomorrow.day, today)
    assert quota.period_start(today.day, today) == today and previous < today
    await pool.execute("INSERT INTO usage (account_id, period_start, used) VALUES ($1, $2, 1), ($3, $4, 1)",
                       fresh.id, previous, running.id, current_running)
    procs = await asyncio.gather(*(spawn_service(str(tmp_path / "config.toml")) for _ in range(2)))
    try:
        outcomes = [await _try_send(p[1][0], client_ssl_context, fresh.token) for p in procs]
        refused = [await _try_send(p[1][0], client_ssl_context, running.token) for p in procs]
    finally:
        await _stop(procs)
    # The fresh period allows one message: the first process's is accepted, the second at the limit.
    assert outcomes[0].startswith("250 ") and outcomes[1] == reply_line("QUOTA_EXCEEDED")
    assert refused == [reply_line("QUOTA_EXCEEDED")] * 2
    assert await pool.fetchval("SELECT used FROM usage WHERE account_id = $1 AND period_start = $2",
                               fresh.id, today) == 1
