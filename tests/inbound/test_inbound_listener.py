"""The inbound listener over real sockets: smtplib over STARTTLS delivering the report samples to
VERP return paths, the events they leave in PostgreSQL, and hostile dialogues (exact replies,
nothing stored)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.delivery import verp
from mailtrap_smtp.delivery.return_path import load_key
from tests.delivery_util import event_list, wait_for
from tests.inbound_util import (
    FBL,
    RCPT,
    Inbound,
    enqueue_from_domain,
    forgeries,
    recipient_ids,
    send,
    smtplib_send,
)
from tests.mx_sink import free_port
from tests.paths import ROOT
from tests.report_samples import EXPECTED, render
from tests.smtp_util import RawClient, reply_line

_EVENT_OF = {"bounce": "bounce", "soft_bounce": "soft_bounce", "spam": "spam"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_sample_over_smtp_becomes_its_event(inbound: Inbound, name: str) -> None:
    want = EXPECTED[name]
    refused = await send(inbound, render(name, inbound.verp, RCPT))
    assert refused == {}
    evs = await inbound.feedback_events()
    if want["kind"] not in _EVENT_OF:
        assert evs == []  # not feedback / unparseable: accepted, nothing recorded
        return
    ((etype, rcpt, details),) = evs
    assert etype == _EVENT_OF[want["kind"]] and rcpt == RCPT
    assert details["source"] == "inbound" and details["format"] == want["format"]
    assert details["final_recipient"] == RCPT and details["reported_by"] == "127.0.0.1"
    if etype == "spam":
        assert details["feedback_type"] == want["feedback_type"]
    else:
        assert details["category"] == want["category"] and details["status"] == want["status"]
        if "remote_mta" in want:
            assert details["remote_mta"] == want["remote_mta"]


async def test_same_report_twice_is_recorded_once(inbound: Inbound) -> None:
    raw = render("rfc3464_postfix_user_unknown.eml", inbound.verp, RCPT)
    await send(inbound, raw)
    await send(inbound, raw)
    assert [e[0] for e in await inbound.feedback_events()] == ["bounce"]


@pytest.mark.parametrize("which", range(4), ids=["bad-mac", "no-tag", "postmaster", "short-tag"])
async def test_forged_return_path_refused_and_nothing_changes(inbound: Inbound, which: int) -> None:
    forged = forgeries(inbound.verp)[which]
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        await send(inbound, render("rfc3464_postfix_user_unknown.eml", forged, RCPT), [forged])
    assert e.value.recipients == {forged: (550, b"5.1.1 No such user here")}
    assert await inbound.feedback_events() == []


async def test_tag_of_a_deleted_message_accepted_and_ignored(inbound: Inbound) -> None:
    gone = verp.make(inbound.key, verp.Tag(uuid.uuid4(), 999), "mt7q2x.src.test")
    assert await send(inbound, render("rfc3464_postfix_user_unknown.eml", gone, RCPT), [gone]) == {}
    async with inbound.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type <> 'reception'") == 0


async def test_one_report_to_two_return_paths_records_both(inbound: Inbound) -> None:
    other = (await recipient_ids(inbound.pool, inbound.message_id))["other@dest.test"]
    second = verp.make(inbound.key, verp.Tag(inbound.message_id, other), "mt7q2x.src.test")
    await send(inbound, render("rfc3464_postfix_user_unknown.eml", inbound.verp, RCPT), [inbound.verp, second])
    assert sorted((t, r) for t, r, _ in await inbound.feedback_events()) == [
        ("bounce", "gone@dest.test"), ("bounce", "other@dest.test")]


@pytest.mark.parametrize(("rcpt", "sample", "path", "expected"), [
    pytest.param(FBL, "arf_original_mail_from_headers.eml", "good", ["spam"], id="arf-original-mail-from"),
    pytest.param(FBL.upper(), "arf_abuse_rfc822.eml", "good", ["spam"], id="arf-return-path-upper-case-rcpt"),
    pytest.param(FBL, "rfc3464_postfix_user_unknown.eml", "good", ["bounce"], id="dsn-to-feedback-address"),
    pytest.param(FBL, "arf_original_mail_from_headers.eml", "forged", [], id="forged-return-path-in-report"),
    pytest.param(FBL, "rfc3464_spamhaus_block.eml", "good", [], id="report-without-original-headers"),
])
async def test_feedback_address_takes_whom_from_the_report(inbound: Inbound, rcpt: str, sample: str, path: str,
                                                           expected: list[str]) -> None:
    named = inbound.verp if path == "good" else forgeries(inbound.verp)[0]
    assert await send(inbound, render(sample, named, RCPT), [rcpt]) == {}
    assert [t for t, _, _ in await inbound.feedback_events()] == expected


# --- hostile dialogues: exact reply, nothing stored ---


@pytest.mark.parametrize(("lines", "expected"), [
    pytest.param(["EHLO x", "AUTH PLAIN AGFwaQBzZWNyZXQ="], "INBOUND_NO_AUTH", id="auth"),
    pytest.param(["EHLO x", "MAIL FROM:<> SIZE=999999999"], "SIZE_EXCEEDED", id="size-param-over-cap"),
    pytest.param(["EHLO x", "MAIL FROM:<> SMTPUTF8"], "UNSUPPORTED_PARAMETER", id="unknown-mail-param"),
    pytest.param(["EHLO x", "RCPT TO:<{verp}>"], "NEED_MAIL", id="rcpt-before-mail"),
    pytest.param(["MAIL FROM:<>"], "EHLO_FIRST", id="mail-before-ehlo"),
    pytest.param(["EHLO x", "MAIL FROM:<>", "DATA"], "NEED_RCPT", id="data-without-rcpt"),
    pytest.param(["EHLO x", "MAIL FROM:<>", "MAIL FROM:<>"], "NESTED_MAIL", id="nested-mail"),
    pytest.param(["EHLO x", "MAIL FROM:<>", "RCPT TO:<{verp}> NOTIFY=NEVER"], "UNSUPPORTED_PARAMETER",
                 id="rcpt-param"),
    pytest.param(["EHLO x", "MAIL FROM:<>", "RCPT TO:<a b@c>"], "RECIPIENT_SYNTAX", id="rcpt-syntax"),
    pytest.param(["EHLO x", "MAIL FROM:<>", "RCPT TO:<bounces+é@h.test>"], "NON_ASCII_ADDRESS", id="rcpt-8bit"),
    pytest.param(["EHLO x", "X" * 600], "LINE_TOO_LONG", id="line-too-long"),
    pytest.param(["EHLO x", "NOOP \x00"], "BAD_CHARACTERS", id="nul"),
    pytest.param(["EHLO x", "NOOP a\rb"], "BAD_CHARACTERS", id="bare-cr"),
    pytest.param(["EHLO x", "EXPN postmaster"], "NOT_IMPLEMENTED", id="expn"),
    pytest.param(["FOO"], "UNKNOWN_COMMAND", id="unknown-verb"),
    pytest.param(["EHLO"], "HELO_SYNTAX", id="ehlo-without-name"),
])
async def test_hostile_command(inbound: Inbound, lines: list[str], expected: str) -> None:
    async with inbound.raw() as c:
        *setup, last = [line.format(verp=inbound.verp) for line in lines]
        for line in setup:
            assert (await c.cmd(line.encode("utf-8")))[:1] not in ("4", "5")
        assert (await c.cmd(last.encode("utf-8"))).splitlines()[-1] == reply_line(expected)
    assert await inbound.feedback_events() == []


async def test_helo_and_ehlo_replies(inbound: Inbound) -> None:
    async with inbound.raw() as c:
        assert await c.cmd("HELO reporter.test") == "250 mx.service.test"
        assert await c.cmd("EHLO reporter.test") == ("250-mx.service.test\n250-PIPELINING\n250-SIZE 65536\n"
                                                      "250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250 STARTTLS")


async def test_too_many_recipients(inbound: Inbound) -> None:
    async with inbound.raw() as c:
        await c.cmd("EHLO x")
        await c.cmd("MAIL FROM:<>")
        for _ in range(3):
            assert await c.cmd(f"RCPT TO:<{inbound.verp}>") == reply_line("RECIPIENT_OK")
        assert await c.cmd(f"RCPT TO:<{inbound.verp}>") == reply_line("TOO_MANY_RECIPIENTS")


async def test_message_over_the_cap_refused_after_the_dot_and_nothing_stored(inbound: Inbound) -> None:
    raw = render("rfc3464_postfix_user_unknown.eml", inbound.verp, RCPT) + b"x" * 70000 + b"\r\n"
    async with inbound.raw() as c:
        await c.cmd("EHLO x")
        await c.cmd("MAIL FROM:<>")
        await c.cmd(f"RCPT TO:<{inbound.verp}>")
        assert (await c.cmd("DATA")).startswith("354")
        assert await c.cmd(raw + b"\r\n.") == reply_line("SIZE_EXCEEDED")
        assert await c.cmd("NOOP") == reply_line("NOOP_OK")  # the session goes on
    assert await inbound.feedback_events() == []


async def test_smuggled_terminator_does_not_end_data(inbound: Inbound) -> None:
    """`\\n.\\n` is not the end of DATA: what follows is data, not a second transaction."""
    raw = render("rfc3464_postfix_user_unknown.eml", inbound.verp, RCPT)
    async with inbound.raw() as c:
        await c.cmd("EHLO x")
        await c.cmd("MAIL FROM:<>")
        await c.cmd(f"RCPT TO:<{inbound.verp}>")
        await c.cmd("DATA")
        await c.send(b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<>\r\nRCPT TO:<" + inbound.verp.encode() + b">\r\nDATA\r\n"
                     + raw + b"\r\n.\r\n")
        assert await c.reply() == reply_line("INBOUND_ACCEPTED")
    assert await inbound.feedback_events() == []  # one message, and it is not a report


async def test_plaintext_pipelined_behind_starttls_is_discarded(inbound: Inbound) -> None:
    async with inbound.raw() as c:
        await c.cmd("EHLO x")
        await c.send(b"STARTTLS\r\nMAIL FROM:<>\r\n")
        assert await c.reply() == reply_line("STARTTLS_READY")
        await c.writer.start_tls(inbound.ctx, server_hostname="localhost")
        # MAIL was not carried over into the TLS session: RCPT still needs MAIL (and EHLO first).
        assert await c.cmd("MAIL FROM:<>") == reply_line("EHLO_FIRST")


async def test_bdat_closes_the_session(inbound: Inbound) -> None:
    async with inbound.raw() as c:
        await c.cmd("EHLO x")
        assert await c.cmd("BDAT 10 LAST") == reply_line("BDAT_NOT_SUPPORTED")
        assert await c.closed()


async def test_too_many_errors_close_the_session(inbound: Inbound) -> None:
    async with inbound.raw() as c:
        for _ in range(5):
            assert await c.cmd("FOO") == reply_line("UNKNOWN_COMMAND")
        assert await c.cmd("FOO") == reply_line("TOO_MANY_ERRORS")
        assert await c.closed()


async def test_connections_per_ip_and_in_total_are_capped(make_config: Any, pool: asyncpg.Pool[Any],
                                                          client_ssl_context: ssl.SSLContext) -> None:
    from mailtrap_smtp.inbound.server import InboundService

    for limits, inbound_cfg, reply in (({"connections_per_ip": 2}, {}, "TOO_MANY_CONNECTIONS_IP"),
                                       ({}, {"max_connections": 2}, "INBOUND_BUSY")):
        cfg = make_config(inbound={"listeners": [f"127.0.0.1:{free_port()}"], **inbound_cfg}, limits=limits)
        svc = InboundService(cfg, pool)
        await svc.start()
        try:
            async with RawClient("127.0.0.1", svc.ports[0], client_ssl_context), \
                    RawClient("127.0.0.1", svc.ports[0], client_ssl_context):
                third = RawClient("127.0.0.1", svc.ports[0], client_ssl_context)
                assert await third.connect() == reply_line(reply)
                assert await third.closed()
            # Both ended: a new connection is let in again.
            await wait_for(lambda: svc.active == 0)
            async with RawClient("127.0.0.1", svc.ports[0], client_ssl_context) as again:
                assert await again.cmd("NOOP") == reply_line("NOOP_OK")
        finally:
            await svc.stop(1.0)


async def test_plaintext_delivery_allowed(inbound: Inbound) -> None:
    """An MX must not require STARTTLS (RFC 3207 §4): MTAs without TLS still return their bounces."""
    raw = render("qmail_permanent.eml", inbound.verp, RCPT)

    def plain() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", inbound.port, timeout=10) as s:
            return s.sendmail("", [inbound.verp], raw)

    assert await asyncio.to_thread(plain) == {}
    assert [e[0] for e in await inbound.feedback_events()] == ["bounce"]


async def test_serve_role_inbound_runs_only_the_listener(make_config: Any, db_dsn: str,
                                                         client_ssl_context: ssl.SSLContext) -> None:
    from mailtrap_smtp.app import Service

    port = free_port()
    cfg = make_config(inbound={"listeners": [f"127.0.0.1:{port}"]})
    with pytest.raises(ValueError, match="role inbound needs"):
        Service(make_config(inbound={"listeners": []}), role="inbound", dsn=db_dsn)
    service = Service(cfg, role="inbound", dsn=db_dsn)
    await service.start()
    try:
        assert [type(p).__name__ for p in service._parts] == ["InboundService"]
        async with RawClient("127.0.0.1", port, client_ssl_context) as c:
            assert "STARTTLS" in await c.cmd("EHLO x")
            assert await c.cmd("RCPT TO:<a@b.test>") == reply_line("NEED_MAIL")
    finally:
        await service.stop()


def test_cli_serve_role_inbound_needs_listeners(make_config: Any, tmp_path: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from mailtrap_smtp import cli

    make_config()
    assert cli.main(["-c", str(tmp_path / "config.toml"), "serve", "--role", "inbound"]) != 0
    assert capsys.readouterr().err == "mailtrap-smtp: --role inbound needs [inbound] listeners in the configuration\n"


async def test_cli_serve_role_inbound_process_records_a_bounce(
        make_config: Any, pool: asyncpg.Pool[Any], tmp_path: Any, client_ssl_context: ssl.SSLContext) -> None:
    """The real command in its own process: `mailtrap-smtp serve --role inbound`, stopped by SIGTERM."""
    import signal
    import sys

    port = free_port()
    cfg = make_config(inbound={"listeners": [f"127.0.0.1:{port}"]})
    mid = await enqueue_from_domain(pool, [RCPT])
    rid = (await recipient_ids(pool, mid))[RCPT]
    address = verp.make(load_key(cfg), verp.Tag(mid, rid), "mt7q2x.src.test")  # the key file the process reads
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(tmp_path / "config.toml"), "serve", "--role", "inbound",
        "--processes", "1", cwd=ROOT, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        raw = render("rfc3464_gmail_no_such_account.eml", address, RCPT)
        assert await asyncio.to_thread(smtplib_send, port, client_ssl_context, [address], raw) == {}
        types = [t for t, _, _ in await event_list(pool, mid)]
        assert types == ["reception", "bounce"]
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
