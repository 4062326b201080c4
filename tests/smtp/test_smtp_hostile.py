"""Hostile and broken clients, as transcripts: each asserts the exact reply and that nothing was
stored or charged."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from tests.smtp_util import SENDER, Env, authed, reply_line


async def test_commands_pipelined_behind_starttls_are_discarded(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    await c.cmd("EHLO client.test")
    await c.send(b"STARTTLS\r\nEHLO injected\r\nAUTH PLAIN AGFwaQB4\r\nMAIL FROM:<app@example.com>\r\n")
    assert await c.reply() == reply_line("STARTTLS_READY")
    await c.writer.start_tls(c.ctx, server_hostname="localhost")
    # The first reply over TLS answers our EHLO, not the plaintext commands sent before.
    assert (await c.cmd("EHLO client.test")).startswith("250-mx.service.test\n")
    assert await c.cmd("MAIL FROM:<app@example.com>") == reply_line("AUTH_REQUIRED")
    c.writer.close()


async def test_over_long_lines(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    assert await c.cmd("NOOP " + "x" * 600) == reply_line("LINE_TOO_LONG")
    assert await c.cmd("EHLO " + "x" * 100_000) == reply_line("LINE_TOO_LONG")
    assert await c.cmd("NOOP") == reply_line("NOOP_OK")
    await c.login(smtp.token)
    assert await c.cmd("MAIL FROM:<" + "a" * 600 + "@example.com>") == reply_line("LINE_TOO_LONG")
    c.writer.close()


async def test_nul_and_cr_inside_commands(smtp_factory) -> None:
    env = await smtp_factory(smtp={"max_errors": 100})
    c = await authed(env)
    assert await c.cmd(b"MAIL FROM:<a\x00b@example.com>") == reply_line("BAD_CHARACTERS")
    assert await c.cmd(b"MAIL FROM:<a\rb@example.com>") == reply_line("BAD_CHARACTERS")
    await c.cmd(f"MAIL FROM:<{SENDER}>")
    assert await c.cmd(b"RCPT TO:<a\rRCPT TO:<b@x.test>@dest.test>") == reply_line("BAD_CHARACTERS")
    assert await c.cmd(b"RCPT TO:<a@dest.test\x00>") == reply_line("BAD_CHARACTERS")
    assert await c.cmd(b"EHLO a\rX-Injected: yes") == reply_line("BAD_CHARACTERS")
    c.writer.close()
    await env.assert_nothing_stored()


async def test_header_injection_through_ehlo(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    await c.login(smtp.token, ehlo="evil.test(X-Injected:yes)\tby")
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
        await c.cmd(line)
    await c.send(b"From: <" + SENDER.encode() + b">\r\n\r\nx\r\n.\r\n")
    assert (await c.reply()).startswith("250 ")
    raw = bytes(await smtp.pool.fetchval("SELECT raw FROM messages"))
    received = raw.split(b"\r\n")[0]
    assert received == b"Received: from evil.testX-Injectedyesby ([127.0.0.1])"
    assert b"\nX-Injected" not in raw
    c.writer.close()


async def test_too_many_errors(smtp_factory) -> None:
    env = await smtp_factory(smtp={"max_errors": 3})
    c = env.raw()
    await c.connect()
    for _ in range(3):
        assert await c.cmd("FOO") == reply_line("UNKNOWN_COMMAND")
    assert await c.cmd("FOO") == reply_line("TOO_MANY_ERRORS")
    assert await c.closed()


async def test_idle_client_times_out(smtp_factory) -> None:
    env = await smtp_factory(smtp={"command_timeout_seconds": 0.4})
    c = env.raw()
    await c.connect()
    assert await c.reply(timeout=3) == reply_line("IDLE_TIMEOUT")
    assert await c.closed()


async def test_trickling_data_is_cut(smtp_factory) -> None:
    env = await smtp_factory(smtp={"command_timeout_seconds": 0.5, "min_data_rate_bytes_per_second": 1000})
    c = await authed(env)
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
        await c.cmd(line)
    await c.send(b"From: <" + SENDER.encode() + b">\r\n\r\n")

    async def trickle() -> None:
        for _ in range(100):
            await c.send(b"x")
            await asyncio.sleep(0.1)  # 10 bytes/s: resets no idle timer that matters

    task = asyncio.create_task(trickle())
    try:
        assert await c.reply(timeout=5) == reply_line("DATA_TOO_SLOW")
    finally:
        task.cancel()
    await env.assert_nothing_stored()


async def test_session_deadline(smtp_factory) -> None:
    env = await smtp_factory(smtp={"session_deadline_seconds": 0.8, "command_timeout_seconds": 5})
    c = env.raw()
    await c.connect()
    replies = []
    async with asyncio.timeout(5):
        while True:
            await c.send(b"NOOP\r\n")
            r = await c.reply()
            if r != reply_line("NOOP_OK"):
                replies.append(r)
                break
            await asyncio.sleep(0.1)
    assert replies == [reply_line("SESSION_DEADLINE")]
    assert await c.closed()


async def test_connection_flood_per_ip(smtp_factory) -> None:
    env = await smtp_factory(limits={"connections_per_ip": 3})
    clients = [env.raw() for _ in range(3)]
    for c in clients:
        assert (await c.connect()).startswith("220 ")
    extra = env.raw()
    assert await extra.connect() == reply_line("TOO_MANY_CONNECTIONS_IP")
    assert await extra.closed()
    await clients[0].cmd("QUIT")
    assert await clients[0].closed()
    await asyncio.sleep(0.1)
    again = env.raw()
    assert (await again.connect()).startswith("220 ")
    for c in (*clients[1:], again):
        c.writer.close()


async def test_client_that_stops_reading_is_cut(smtp_factory) -> None:
    env = await smtp_factory(smtp={"command_timeout_seconds": 0.5, "max_errors": 10**9})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", env.port))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    payload = b"EHLO x\r\n" * 4096  # ~200 bytes of reply per 8 bytes sent; we never read
    try:
        async with asyncio.timeout(15):
            while True:
                await loop.sock_sendall(sock, payload)
                if not env.service._sessions:
                    break
    except (ConnectionError, OSError):
        pass  # the server aborted us: exactly what we wanted
    for _ in range(100):
        if not env.service._sessions:
            break
        await asyncio.sleep(0.05)
    assert not env.service._sessions
    sock.close()


async def test_proxy_header_from_untrusted_peer_is_just_a_bad_command(smtp: Env) -> None:
    c = smtp.raw()
    await c.connect()
    assert await c.cmd("PROXY TCP4 198.51.100.1 127.0.0.1 1234 25") == reply_line("UNKNOWN_COMMAND")
    c.writer.close()


def proxy_v2(src: str, dst: str = "127.0.0.1") -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", 40000, 25)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


async def test_proxy_protocol_from_trusted_proxy(smtp_factory) -> None:
    env = await smtp_factory(proxy=True, server={"proxy_protocol_from": ["127.0.0.0/8"]},
                             limits={"connections_per_ip": 1})
    # v2 header: the session is keyed on (and records) the announced client address.
    c = env.raw()
    c.reader, c.writer = await asyncio.open_connection("127.0.0.1", env.port)
    await c.send(proxy_v2("192.0.2.44"))
    assert (await c.reply()).startswith("220 ")
    await c.login(env.token)
    for line in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@dest.test>", "DATA"):
        await c.cmd(line)
    await c.send(b"From: <" + SENDER.encode() + b">\r\n\r\nx\r\n.\r\n")
    assert (await c.reply()).startswith("250 ")
    assert str(await env.pool.fetchval("SELECT client_ip FROM messages")) == "192.0.2.44"
    # Per-IP cap applies to the real client behind the proxy, not to the proxy itself.
    d = env.raw()
    d.reader, d.writer = await asyncio.open_connection("127.0.0.1", env.port)
    await d.send(b"PROXY TCP4 192.0.2.45 127.0.0.1 40001 25\r\n")
    assert (await d.reply()).startswith("220 ")
    e = env.raw()
    e.reader, e.writer = await asyncio.open_connection("127.0.0.1", env.port)
    await e.send(b"PROXY TCP4 192.0.2.45 127.0.0.1 40002 25\r\n")
    assert await e.reply() == reply_line("TOO_MANY_CONNECTIONS_IP")
    # A trusted peer without a valid header is dropped without a word.
    f = env.raw()
    f.reader, f.writer = await asyncio.open_connection("127.0.0.1", env.port)
    await f.send(b"EHLO x\r\n\r\n\r\n")
    assert await f.reader.read() == b""
    for x in (c, d, e, f):
        x.writer.close()


async def test_proxy_header_then_client_hello_in_one_segment_on_implicit_listener(smtp_factory) -> None:
    env = await smtp_factory(proxy=True, server={"proxy_protocol_from": ["127.0.0.1"]})

    def client() -> tuple[str, str]:
        import ssl

        s = socket.create_connection(("127.0.0.1", env.implicit_port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)  # hold everything back...
        s.sendall(b"PROXY TCP4 192.0.2.9 127.0.0.1 40000 465\r\n")
        tls = env.ssl_context.wrap_socket(s, server_hostname="localhost", do_handshake_on_connect=False)
        tls.setblocking(False)
        try:
            tls.do_handshake()  # writes the ClientHello, then wants to read
        except ssl.SSLWantReadError:
            pass
        tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)  # ...and send header + ClientHello at once
        tls.setblocking(True)
        tls.settimeout(5)
        tls.do_handshake()
        f = tls.makefile("rb")
        greeting = f.readline().decode()
        tls.sendall(b"NOOP\r\n")
        noop = f.readline().decode()
        tls.close()
        return greeting.strip(), noop.strip()

    greeting, noop = await asyncio.to_thread(client)
    assert greeting.startswith("220 ") and noop == reply_line("NOOP_OK")


def _send_then_half_close(port: int, ctx, token: str, *, implicit: bool, tail: bytes,
                          proxy_header: bytes = b"") -> list[str]:
    """A blocking client: the whole transaction, then a TCP FIN right after the final dot (and
    `tail`); returns every reply line it then reads until the server closes."""
    import base64
    import ssl

    from tests.smtp_util import message

    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(proxy_header)
    if implicit:
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
    else:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"EHLO client.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        raw.sendall(b"STARTTLS\r\n")
        f.readline()
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
    g = tls.makefile("rb")
    if implicit:
        g.readline()
    lines = []
    for cmd in (b"EHLO client.test", b"AUTH PLAIN " + base64.b64encode(f"\0api\0{token}".encode()),
                f"MAIL FROM:<{SENDER}>".encode(), b"RCPT TO:<a@dest.test>", b"DATA"):
        tls.sendall(cmd + b"\r\n")
        while (line := g.readline())[3:4] == b"-":
            pass
        lines.append(line.decode().strip())
    assert lines[-1].startswith("354 "), lines
    tls.sendall(message() + b".\r\n" + tail)
    socket.socket.shutdown(tls, socket.SHUT_WR)  # TCP half-close under TLS: no close_notify, just FIN
    got = []
    try:
        while line := g.readline():
            got.append(line.decode().strip())
    except (ssl.SSLError, OSError):
        pass
    tls.close()
    return got


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
@pytest.mark.parametrize("tail", [b"", b"QUIT\r\n"], ids=["fin-after-dot", "fin-after-quit"])
async def test_client_half_closing_after_the_final_dot_gets_its_250(smtp: Env, implicit: bool, tail: bytes) -> None:
    port = smtp.implicit_port if implicit else smtp.port
    got = await asyncio.to_thread(_send_then_half_close, port, smtp.ssl_context, smtp.token, implicit=implicit,
                                  tail=tail)
    assert len(got) == (2 if tail else 1) and got[0].startswith("250 2.0.0 Ok: queued as "), got
    if tail:
        assert got[1] == reply_line("BYE")
    assert await smtp.counts() == {"messages": 1, "recipients": 1, "used": 1, "events": 1}


async def test_half_close_on_a_proxied_implicit_listener(smtp_factory) -> None:
    env = await smtp_factory(proxy=True, server={"proxy_protocol_from": ["127.0.0.1"]})
    got = await asyncio.to_thread(_send_then_half_close, env.implicit_port, env.ssl_context, env.token,
                                  implicit=True, tail=b"", proxy_header=b"PROXY TCP4 192.0.2.8 127.0.0.1 4000 465\r\n")
    assert len(got) == 1 and got[0].startswith("250 2.0.0 Ok: queued as "), got
    assert str(await env.pool.fetchval("SELECT client_ip FROM messages")) == "192.0.2.8"
