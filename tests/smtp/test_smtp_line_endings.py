"""Line endings over real sockets, real TLS and the real database, down to what the remote MX gets.

`smtp.bare_newline = "normalize"` (the default, Postfix 3.9 `smtpd_forbid_bare_newline = normal`):
bare-LF lines count as CRLF lines, only CRLF "." CRLF ends DATA, bare CR and NUL are refused. Every
member of the smuggling family ends as ONE message (whose body holds the would-be commands as text)
or ONE refusal, and the relay to the MX carries that one message only.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
from pathlib import Path
from typing import Any

import pytest

from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from tests.delivery_util import FAST
from tests.mx_sink import MxSink
from tests.smtp_util import SENDER, Env, authed, message, reply_line

SMUGGLED = (b"MAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\n"
            b"From: <" + SENDER.encode() + b">\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")
QUEUED = "250 2.0.0 Ok: queued as "

# (would-be end of data, reply under "normalize")
VARIANTS = [
    (b"\n.\n", QUEUED),
    (b"\n.\r\n", QUEUED),
    (b"\r\n.\n", QUEUED),
    (b"\r.\r", reply_line("BARE_LINE_ENDING")),
    (b"\r\n.\r", reply_line("BARE_LINE_ENDING")),
    (b"\r\n\x00.\r\n", reply_line("BARE_LINE_ENDING")),
    (b"\r\n.\x00\r\n", reply_line("BARE_LINE_ENDING")),
    (b"\r\n.\r\r\n", reply_line("BARE_LINE_ENDING")),
    (b"\r\r\n.\r\r\n", reply_line("BARE_LINE_ENDING")),
    (b"\n\x00.\n", reply_line("BARE_LINE_ENDING")),
]


async def deliver_all(env: Env) -> None:
    delivery = DeliveryService(env.cfg, env.pool, make_resolver(["127.0.0.1:9"], 0.5))
    await delivery.run_once()


@pytest.mark.parametrize(("fake", "expected"), VARIANTS, ids=[repr(v[0]) for v in VARIANTS])
async def test_smuggling_variant_is_one_message_or_one_refusal(smtp_factory: Any, sink: MxSink, fake: bytes,
                                                               expected: str) -> None:
    env = await smtp_factory(delivery={**FAST, "routes": {"dest.test": sink.address}})
    c = await authed(env)
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
        await c.cmd(line)
    await c.send(b"From: <" + SENDER.encode() + b">\r\n\r\nbody" + fake + SMUGGLED + b"\r\n.\r\n")
    # Exactly one reply for the whole thing: the would-be commands were message text.
    assert (await c.reply()).startswith(expected)
    assert await c.cmd("NOOP") == reply_line("NOOP_OK")
    c.writer.close()
    if expected != QUEUED:
        await env.assert_nothing_stored()
        return
    assert await env.counts() == {"messages": 1, "recipients": 1, "used": 1, "events": 1}
    stored = bytes(await env.pool.fetchval("SELECT raw FROM messages"))
    assert stored.count(b"\n") == stored.count(b"\r\n") and b"\r" not in stored.replace(b"\r\n", b"")
    assert b"\r\nbody\r\n.\r\n" + SMUGGLED + b"\r\n" == stored[stored.index(b"\r\nbody"):]
    await deliver_all(env)
    (got,) = sink.received  # one message at the MX: the smuggled one stayed text
    assert got.rcpts == ["a@dest.test"] and got.data == stored
    assert b"\r\nRCPT TO:<victim@dest.test>\r\n" in got.data


@pytest.mark.parametrize("fake", [v[0] for v in VARIANTS], ids=[repr(v[0]) for v in VARIANTS])
async def test_smuggling_variant_refused_in_reject_mode(smtp_factory: Any, fake: bytes) -> None:
    env = await smtp_factory(smtp={"bare_newline": "reject"})
    c = await authed(env)
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
        await c.cmd(line)
    await c.send(b"From: <" + SENDER.encode() + b">\r\n\r\nbody" + fake + SMUGGLED + b"\r\n.\r\n")
    assert await c.reply() == reply_line("BARE_LINE_ENDING")
    assert await c.cmd("NOOP") == reply_line("NOOP_OK")
    c.writer.close()
    await env.assert_nothing_stored()


async def test_lf_only_session_is_served_and_stored_with_crlf(smtp: Env) -> None:
    # Every command and every content line ends in a bare LF; only the final dot is CRLF-framed.
    c = smtp.raw()
    await c.connect()
    await c.send(b"EHLO lf.test\n")
    assert (await c.reply()).startswith("250-mx.service.test\n")
    await c.send(b"STARTTLS\n")
    assert await c.reply() == reply_line("STARTTLS_READY")
    await c.writer.start_tls(c.ctx, server_hostname="localhost")
    await c.send(b"EHLO lf.test\n")
    await c.reply()
    await c.send(b"AUTH PLAIN " + base64.b64encode(f"\0api\0{smtp.token}".encode()) + b"\n")
    assert await c.reply() == reply_line("AUTH_OK")
    for line, want in ((f"MAIL FROM:<{SENDER}>", "SENDER_OK"), ("RCPT TO:<a@dest.test>", "RECIPIENT_OK"),
                       ("DATA", "START_DATA")):
        await c.send(line.encode() + b"\n")
        assert await c.reply() == reply_line(want)
    await c.send(message().replace(b"\r\n", b"\n") + b"..dot\n\r\n.\r\n")
    assert (await c.reply()).startswith(QUEUED)
    stored = bytes(await smtp.pool.fetchval("SELECT raw FROM messages"))
    assert stored.endswith(b"\r\n\r\nHi there.\r\n.dot\r\n\r\n")
    assert stored.count(b"\n") == stored.count(b"\r\n")
    c.writer.close()


async def test_bare_lf_command_refused_in_reject_mode(smtp_factory: Any) -> None:
    env = await smtp_factory(smtp={"bare_newline": "reject"})
    c = env.raw()
    await c.connect()
    await c.send(b"EHLO lf.test\n")
    assert await c.reply() == "500 5.5.2 Syntax error: bare LF received, use CRLF line endings"
    assert (await c.cmd("EHLO crlf.test")).startswith("250-mx.service.test\n")
    c.writer.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by .ci/run")
async def test_curl_upload_of_an_lf_text_file(smtp: Env, tmp_path: Path, ca_file: Path) -> None:
    msg = tmp_path / "msg.txt"
    msg.write_bytes(b"From: App <" + SENDER.encode() + b">\nTo: a@dest.test\nSubject: curl\n\nHello from curl.\n"
                    b"Second line.\n")
    proc = await asyncio.create_subprocess_exec(
        "curl", "--silent", "--show-error", f"smtp://127.0.0.1:{smtp.port}", "--ssl-reqd", "--cacert", str(ca_file),
        "--mail-from", SENDER, "--mail-rcpt", "a@dest.test", "--upload-file", str(msg),
        "--user", f"api:{smtp.token}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    row = await smtp.pool.fetchrow("SELECT raw, subject FROM messages")
    assert row["subject"] == "curl"
    stored = bytes(row["raw"])
    assert stored.count(b"\n") == stored.count(b"\r\n")
    assert b"\r\nSubject: curl\r\n" in stored and b"\r\n\r\nHello from curl.\r\nSecond line.\r\n" in stored
    assert await smtp.counts() == {"messages": 1, "recipients": 1, "used": 1, "events": 1}
