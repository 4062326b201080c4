"""`queue show` says what a message asked of the next hops: SMTPUTF8 (RFC 6531) and REQUIRETLS or
`TLS-Required: No` (RFC 8689), as submission stored them, for messages sent over real SMTP (STARTTLS,
AUTH, MAIL parameters) and read back through the CLI against the same database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mailtrap_smtp import cli
from tests.smtp_util import SENDER, Env, authed, reply_line

QUEUED = "250 2.0.0 Ok: queued as "


@pytest.fixture
def run(make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    path = str(tmp_path / "config.toml")  # the one the smtp fixture's service was started from

    async def go(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(cli.main, ["-c", path, *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


@pytest.mark.parametrize(("params", "rcpt", "header", "utf8", "asked", "line"), [
    ("", "r@dest.test", "", False, None, "none"),
    (" SMTPUTF8 REQUIRETLS", "j\u00f6rg@dest.test", "", True, "requiretls", "requiretls"),
    (" SMTPUTF8", "r@dest.test", "Subject: \u00dcbung\r\n", True, None, "none"),
    ("", "r@dest.test", "TLS-Required: No\r\n", False, "tls-required-no", "tls-required-no"),
    (" REQUIRETLS", "r@dest.test", "TLS-Required: No\r\n", False, "requiretls", "requiretls"),  # RFC 8689 §3
])
async def test_queue_show_reports_what_the_message_asked(smtp: Env, run: Any, params: str, rcpt: str, header: str,
                                                         utf8: bool, asked: str | None, line: str) -> None:
    c = await authed(smtp)
    assert await c.cmd(f"MAIL FROM:<{SENDER}>{params}") == reply_line("SENDER_OK")
    assert await c.cmd(f"RCPT TO:<{rcpt}>") == reply_line("RECIPIENT_OK")
    assert await c.cmd("DATA") == reply_line("START_DATA")
    got = await c.cmd(f"From: <{SENDER}>\r\nTo: <{rcpt}>\r\n{header}\r\nhi\r\n.")
    c.close()
    assert got.startswith(QUEUED), got
    mid = got.rsplit(" ", 1)[1]
    code, out, err = await run("queue", "show", mid, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["smtputf8"], data["tls_request"]) == (utf8, asked)
    code, out, _ = await run("queue", "show", mid)
    pairs = dict(ln.split(":", 1) for ln in out.split("\n\n")[0].splitlines())
    assert (pairs["smtputf8"].strip(), pairs["tls_request"].strip()) == (str(utf8), line)
