"""Slow and resource-hungry clients: a dripped command line, PROXY header abuse, connection floods.
Each case asserts the exact reply (or the silent close) and that nothing was stored."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct

import pytest

from mailtrap_smtp.config import ConfigError
from tests.serve_util import free_port, one_listener, serve, wait_listening, wait_port
from tests.smtp_util import Env, RawClient, reply_line

PROXIED = {"proxy": True, "server": {"proxy_protocol_from": ["127.0.0.1"], "proxy_header_timeout_seconds": 1.0}}


async def raw_connection(env: Env, port: int | None = None) -> RawClient:
    c = env.raw()
    c.reader, c.writer = await asyncio.open_connection("127.0.0.1", port or env.port)
    return c


async def test_a_dripped_command_line_is_cut_at_the_command_timeout(smtp_factory) -> None:
    # One byte every 0.3 s never leaves the connection idle for the 1 s command timeout, but the
    # whole line must arrive within it: the reply is the timeout, never the command's.
    env = await smtp_factory(smtp={"command_timeout_seconds": 1.0})
    c = env.raw()
    await c.connect()

    async def drip() -> None:
        for byte in b"NOOP " + b"x" * 40 + b"\r\n":
            await c.send(bytes([byte]))
            await asyncio.sleep(0.3)

    task = asyncio.create_task(drip())
    try:
        assert await c.reply(timeout=10) == reply_line("IDLE_TIMEOUT")
        assert not task.done()  # cut while the line was still being dripped
    finally:
        task.cancel()
    assert await c.closed()


async def test_proxy_header_has_its_own_short_timeout(smtp_factory) -> None:
    env = await smtp_factory(**PROXIED, smtp={"command_timeout_seconds": 30.0})
    c = await raw_connection(env)
    await c.send(b"PROXY TCP4 192.0.2.1")  # and then nothing: closed without a word
    async with asyncio.timeout(10):  # well before the 30 s command timeout
        assert await c.reader.read() == b""


@pytest.mark.parametrize("length", [513, 65535])
async def test_proxy_v2_header_announcing_too_much_is_refused_at_once(smtp_factory, length: int) -> None:
    env = await smtp_factory(**PROXIED)
    c = await raw_connection(env)
    await c.send(b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", length))
    async with asyncio.timeout(10):
        assert await c.reader.read() == b""  # closed without waiting for the announced bytes


async def test_proxy_v2_header_of_a_sane_length_with_tlvs_is_read(smtp_factory) -> None:
    env = await smtp_factory(**PROXIED)
    body = socket.inet_aton("192.0.2.7") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, 25)
    body += b"\x04" + struct.pack("!H", 100) + b"t" * 100  # a NOOP TLV
    c = await raw_connection(env)
    await c.send(b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body)
    assert (await c.reply()).startswith("220 ")
    c.writer.close()


async def test_second_proxy_line_inside_a_proxied_session_closes_it(smtp_factory) -> None:
    env = await smtp_factory(**PROXIED)
    c = await raw_connection(env)
    await c.send(b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 25\r\n")
    assert (await c.reply()).startswith("220 ")
    assert await c.cmd("EHLO client.test")
    assert await c.cmd("PROXY TCP4 192.0.2.99 127.0.0.1 40000 25") == reply_line("PROXY_IN_SESSION") == (
        "421 4.7.0 PROXY header inside the session: closing connection")
    assert await c.closed()


async def test_proxy_protocol_is_per_listener(smtp_factory, make_config) -> None:
    # The STARTTLS listener is fronted by a proxy; the implicit-TLS one takes direct clients.
    env = await smtp_factory(smtp={"listeners": [
        {"address": "127.0.0.1", "port": 1, "mode": "starttls", "proxy_protocol": True},
        {"address": "127.0.0.1", "port": 2, "mode": "implicit"},
    ]}, server={"proxy_protocol_from": ["127.0.0.1"]})
    c = await raw_connection(env)
    await c.send(b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 25\r\n")
    assert (await c.reply()).startswith("220 ")
    c.writer.close()
    direct = env.raw(implicit=True)  # no header: TLS from the first byte, as a direct client
    assert (await direct.connect() or "").startswith("220 ")
    assert await direct.cmd("NOOP") == reply_line("NOOP_OK")
    direct.writer.close()


@pytest.mark.parametrize(("listener_proxy", "sources", "error"), [
    (True, [], "smtp.listeners: proxy_protocol = true needs server.proxy_protocol_from (trusted proxies)"),
    (False, ["10.0.0.1"], "server.proxy_protocol_from: no listener has proxy_protocol = true"),
])
def test_proxy_configuration_must_be_consistent(make_config, listener_proxy: bool, sources: list[str],
                                                error: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(smtp={"listeners": [{"address": "127.0.0.1", "port": 1, "mode": "starttls",
                                         "proxy_protocol": listener_proxy}]},
                    server={"proxy_protocol_from": sources})
    assert str(info.value) == error


async def test_new_connection_rate_per_ip(smtp_factory) -> None:
    env = await smtp_factory(limits={"connection_rate_per_ip": 3})
    for _ in range(3):
        c = env.raw()
        assert (await c.connect() or "").startswith("220 ")
        await c.cmd("QUIT")
        assert await c.closed()
    over = env.raw()
    assert await over.connect() == reply_line("CONNECTION_RATE_IP") == (
        "421 4.7.0 Too many new connections from your IP address: try again later")
    assert await over.closed()
    await env.assert_nothing_stored()


async def test_new_connection_rate_is_shared_by_the_processes_of_a_node(make_config, tmp_path) -> None:
    # `serve --processes 2` on one port: the kernel spreads a client's connections over both
    # processes, and the rate still counts them together (per-process counts would let all in).
    port = free_port()
    one_listener(make_config, port, limits={"connection_rate_per_ip": 7})
    proc = await serve(tmp_path, 2)
    greetings = []
    try:
        await wait_port(port, proc)  # one connection of the 7
        await wait_listening(proc, 2)
        for _ in range(12):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(10):
                greetings.append((await reader.readline()).decode().rstrip("\r\n"))
            writer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await proc.communicate()
    admitted = sum(g.startswith("220 ") for g in greetings)
    assert admitted in (6, 7), greetings  # 6 when _wait_port's probe was counted, as it should be
    assert greetings[admitted:] == [reply_line("CONNECTION_RATE_IP")] * (12 - admitted)
