"""Operations through the real CLI, database and network: output piped to a reader that leaves,
`domain show`, whole header values in `queue show`, no next attempt for finished recipients, and the
MX host a failed connection tried."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import messages
from tests.cli_util import CliRun
from tests.delivery_util import FAST, enqueue, event_list
from tests.mx_sink import free_port
from tests.paths import ROOT

LONG_SUBJECT = "A subject " + "that goes on " * 30 + "and ends here"


def test_output_to_a_reader_that_left_is_no_traceback(cli_run: CliRun, tmp_path: Path) -> None:
    cli_run("account", "create", "acme")
    # `mailtrap-smtp ... | head -0`: the reader is gone before anything is written.
    with subprocess.Popen([sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"),
                           "account", "list"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141  # 128 + SIGPIPE, as shell tools end
    assert err == ""


def test_domain_show_prints_the_records_to_publish_at_any_time(cli_run: CliRun) -> None:
    cli_run("account", "create", "acme")
    code, out, _ = cli_run("domain", "add", "acme", "example.test", "--json")
    assert code == 0
    added = json.loads(out)["records"]
    code, out, err = cli_run("domain", "show", "EXAMPLE.test", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["domain"]["name"] == "example.test" and shown["domain"]["state"] == "unverified"
    assert [{k: r[k] for k in ("key", "type", "name", "value", "required")} for r in shown["records"]] == [
        {k: r[k] for k in ("key", "type", "name", "value", "required")} for r in added]
    assert {r["last_status"] for r in shown["records"]} == {None}  # never checked yet
    code, out, _ = cli_run("domain", "show", "example.test")
    assert code == 0
    for r in added:  # every full name and whole value is in the table
        assert re.search(rf"{re.escape(r['name'])}\s+{re.escape(r['value'])}\s", out), r["key"]
    assert "unchecked" in out
    code, _, err = cli_run("domain", "show", "nope.test")
    assert (code, err) == (1, "mailtrap-smtp: no domain named nope.test\n")


async def _finished_and_queued(pool: Any) -> uuid.UUID:
    raw = (b"From: a@example.com\r\nTo: r@dest.test\r\nSubject: " + LONG_SUBJECT.encode()
           + b"\r\nX-Folded: first part\r\n  second part\r\n\r\nbody\r\n")
    mid = await enqueue(pool, ["done@dest.test", "wait@dest.test"], raw=raw)
    await pool.execute("UPDATE recipients SET state = 'delivered' WHERE rcpt = 'done@dest.test'")
    return mid


def test_queue_show_and_list(cli_run: CliRun, db_dsn: str) -> None:
    import asyncpg

    async def prepare() -> uuid.UUID:
        pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
        try:
            return await _finished_and_queued(pool)
        finally:
            await pool.close()

    mid = asyncio.run(prepare())
    code, out, _ = cli_run("queue", "show", str(mid))
    assert code == 0
    assert f"  Subject: {LONG_SUBJECT}\n" in out  # never cut
    assert "  X-Folded: first part\n    second part\n" in out
    code, out, _ = cli_run("queue", "list", "--json")
    by_rcpt = {r["rcpt"]: r for r in json.loads(out)}
    assert by_rcpt["done@dest.test"]["next_attempt_at"] is None
    assert by_rcpt["wait@dest.test"]["next_attempt_at"] is not None
    code, out, _ = cli_run("queue", "list")
    done_line = next(line for line in out.splitlines() if "done@dest.test" in line)
    wait_line = next(line for line in out.splitlines() if "wait@dest.test" in line)
    assert not re.search(r"\d{4}-\d\d-\d\dT", done_line.split("done@dest.test", 1)[1])
    assert re.search(r"\d{4}-\d\d-\d\dT", wait_line.split("wait@dest.test", 1)[1])
    code, out, _ = cli_run("queue", "show", str(mid), "--json")
    rcpts = {r["rcpt"]: r for r in json.loads(out)["recipients"]}
    assert rcpts["done@dest.test"]["next_attempt_at"] is None and rcpts["wait@dest.test"]["next_attempt_at"]


async def test_connection_failure_event_records_the_mx_host(make_config: Any, pool: Any, dns_server: Any) -> None:
    dns_server.add("dest.test", "MX", "10 mx1.dest.test.")
    dns_server.add("mx1.dest.test", "A", "127.0.0.1")
    cfg = make_config(delivery={**FAST, "mx_port": free_port()},  # nothing listens there
                      dns={"nameservers": [dns_server.address], "timeout_seconds": 2.0})
    mid = await enqueue(pool, ["a@dest.test"])
    await DeliveryService(cfg, pool, make_resolver(cfg.dns.nameservers, 2.0)).run_once()
    (details,) = [d for t, _, d in await event_list(pool, mid) if t == "transient_failure"]
    assert details["mx"] == "mx1.dest.test" and details["category"] == "connection_failure"
    assert (await messages.recipients_of(pool, mid))[0]["state"] == "queued"
