"""Operations: graceful stop (SIGTERM path), metrics, swaks as a third real client."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from prometheus_client import REGISTRY

from tests.smtp_util import SENDER, Env, message, reply_line


async def test_stop_tells_idle_sessions_and_lets_transactions_finish(smtp: Env) -> None:
    idle = smtp.raw()
    await idle.connect()
    await idle.login(smtp.token)
    busy = smtp.raw()
    await busy.connect()
    await busy.login(smtp.token)
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
        await busy.cmd(line)
    await busy.send(b"From: <" + SENDER.encode() + b">\r\n\r\nfirst half\r\n")
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(smtp.service.stop(5.0))
    assert await idle.reply() == reply_line("SHUTTING_DOWN")
    assert await idle.closed()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", smtp.port)  # no longer accepting
    await busy.send(b"second half\r\n.\r\n")
    assert (await busy.reply()).startswith("250 2.0.0 Ok: queued as ")
    assert await busy.reply() == reply_line("SHUTTING_DOWN")
    await asyncio.wait_for(stopping, 5)
    assert (await smtp.counts())["messages"] == 1


async def test_stop_aborts_after_grace(smtp: Env) -> None:
    busy = smtp.raw()
    await busy.connect()
    await busy.login(smtp.token)
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
        await busy.cmd(line)
    await busy.send(b"From: <" + SENDER.encode() + b">\r\n\r\nnever finished\r\n")
    await asyncio.sleep(0.05)
    await asyncio.wait_for(smtp.service.stop(0.3), 5)
    assert await busy.closed()
    await smtp.assert_nothing_stored()


def _metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_outcomes(smtp: Env) -> None:
    before = {
        "ok": _metric("mts_auth_attempts_total", {"outcome": "success"}),
        "bad": _metric("mts_auth_attempts_total", {"outcome": "invalid"}),
        "acc": _metric("mts_messages_accepted_total", {"stream": "transactional"}),
        "rej": _metric("mts_messages_rejected_total", {"reply": "SENDER_DOMAIN_NOT_ALLOWED"}),
        "tls": _metric("mts_tls_handshakes_total", {"outcome": "success"}),
        "lat": _metric("mts_accept_latency_seconds_count", {}),
    }
    c = smtp.raw()
    await c.connect()
    await c.login(smtp.token)
    await c.cmd("MAIL FROM:<x@nope.test>")
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
        await c.cmd(line)
    await c.send(message() + b".\r\n")
    await c.reply()
    bad = smtp.raw()
    await bad.connect()
    assert await bad.login("mts_00000000_" + "A" * 32) == reply_line("AUTH_INVALID")
    assert _metric("mts_auth_attempts_total", {"outcome": "success"}) == before["ok"] + 1
    assert _metric("mts_auth_attempts_total", {"outcome": "invalid"}) == before["bad"] + 1
    assert _metric("mts_messages_accepted_total", {"stream": "transactional"}) == before["acc"] + 1
    assert _metric("mts_messages_rejected_total", {"reply": "SENDER_DOMAIN_NOT_ALLOWED"}) == before["rej"] + 1
    assert _metric("mts_tls_handshakes_total", {"outcome": "success"}) == before["tls"] + 2
    assert _metric("mts_accept_latency_seconds_count", {}) == before["lat"] + 1
    c.writer.close()
    bad.writer.close()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
async def test_swaks(smtp: Env, ca_file) -> None:
    async def swaks(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "swaks", "--server", "127.0.0.1", "--port", str(smtp.port), "--tls", "--tls-verify",
            "--tls-ca-path", str(ca_file), "--tls-sni", "localhost", "--auth", "PLAIN", "--auth-user", "api",
            "--auth-password", smtp.token, "--from", SENDER, "--to", "a@dest.test",
            "--header", f"From: <{SENDER}>", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace")

    rc, out = await swaks()
    assert rc == 0, out
    assert "<~  250 2.0.0 Ok: queued as " in out
    rc, out = await swaks("--auth", "LOGIN")
    assert rc == 0, out
    rc, out = await swaks("--from", "x@nope.test")
    assert rc != 0 and "<~* 550 5.7.1 Sending from domain is not allowed" in out
    assert (await smtp.counts())["messages"] == 2


async def test_listeners_share_ports_with_reuse_port(smtp: Env) -> None:
    # `serve --processes N`: every process binds the same ports (SO_REUSEPORT).
    import dataclasses
    import os as _os

    from mailtrap_smtp.app import smtp_service
    from mailtrap_smtp.signing import KeyStore

    # The twin has only the STARTTLS listener (port_override applies to every listener).
    cfg = dataclasses.replace(smtp.cfg, smtp=dataclasses.replace(smtp.cfg.smtp, listeners=smtp.cfg.smtp.listeners[:1]))
    twin = smtp_service(cfg, smtp.pool, signer=KeyStore(smtp.pool, _os.urandom(32)), process_index=1,
                       port_override=smtp.port)
    await twin.start()
    try:
        assert twin.ports[0] == smtp.port
        for _ in range(6):  # whichever process the kernel picks, the dialogue is the same
            c = smtp.raw()
            assert (await c.connect()).startswith("220 ")
            c.writer.close()
    finally:
        await twin.stop(1.0)


async def test_basic_verbs(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    assert await c.cmd("HELO client.test") == "250 mx.service.test"
    assert await c.cmd("EHLO") == reply_line("HELO_SYNTAX")
    assert await c.cmd("RSET now") == reply_line("SYNTAX")
    assert await c.cmd("XYZZY") == reply_line("UNKNOWN_COMMAND")
    await c.cmd("EHLO client.test")
    await c.starttls()
    await c.cmd("HELO client.test")
    assert await c.cmd("AUTH PLAIN x") == reply_line("EHLO_FIRST")  # AUTH is an ESMTP extension
    await c.cmd("EHLO client.test")
    assert await c.cmd("HELP") == reply_line("HELP")
    assert await c.cmd("VRFY someone") == reply_line("VRFY")
    assert await c.cmd("QUIT") == reply_line("BYE")
    assert await c.closed()
