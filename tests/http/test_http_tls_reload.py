"""SIGHUP reloads the HTTPS API's certificate in the real `serve --role http` processes, as it does for
the SMTP listeners (`smtp/tls.py`: new handshakes get the new certificate; connections already
established keep theirs): a keep-alive connection opened before the reload still answers after it."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509

from tests.serve_util import free_port, serve, wait_listening_http, wait_port

REQUEST = b"GET /api/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"


class Conn:
    """One TLS connection speaking HTTP/1.1 by hand, so that it is kept open across the reload."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @property
    def serial(self) -> int:
        der = self.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return int(x509.load_der_x509_certificate(der).serial_number)

    async def ask(self) -> tuple[int, dict[str, Any], bytes]:
        self.writer.write(REQUEST)
        async with asyncio.timeout(10):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await self.reader.readexactly(int(fields["content-length"]))
        return int(lines[0].split()[1]), json.loads(body), fields.get("connection", "").encode()

    def close(self) -> None:
        self.writer.close()


async def connect(port: int, ctx: ssl.SSLContext) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    return Conn(reader, writer)


@pytest.mark.parametrize("processes", [1, 2])
async def test_sighup_reloads_the_api_certificate(make_config: Any, tmp_path: Path, ca: trustme.CA,
                                                  client_ssl_context: ssl.SSLContext, processes: int) -> None:
    def issue(stem: str) -> tuple[Path, Path]:
        cert = ca.issue_cert("localhost", "127.0.0.1")
        c, k = tmp_path / f"{stem}.pem", tmp_path / f"{stem}.key"
        cert.cert_chain_pems[0].write_to_path(str(c))
        cert.private_key_pem.write_to_path(str(k))
        return c, k

    cert, key = issue("live")
    port = free_port()
    make_config(tls={"cert_file": str(cert), "key_file": str(key)},
                http={"listeners": [{"address": "127.0.0.1", "port": port, "stream": "host"}]})
    proc = await serve(tmp_path, processes, role="http")
    try:
        await wait_port(port, proc)
        await wait_listening_http(proc, processes)
        old = await connect(port, client_ssl_context)
        first = old.serial
        assert (await old.ask())[:2] == (401, {"error": "Incorrect API token"})

        new_cert, new_key = issue("next")
        shutil.copy(new_key, key)
        shutil.copy(new_cert, cert)
        proc.send_signal(signal.SIGHUP)
        # With several processes the kernel spreads new connections over them: every one must
        # have reloaded, so each of several fresh connections must show the new certificate.
        seen: list[int] = []
        for _ in range(100):
            fresh = await connect(port, client_ssl_context)
            seen.append(fresh.serial)
            assert (await fresh.ask())[:2] == (401, {"error": "Incorrect API token"})
            fresh.close()
            if seen[-8:] == [seen[-1]] * 8 and seen[-1] != first:
                break
            await asyncio.sleep(0.05)
        assert seen[-8:] == [seen[-1]] * 8 and seen[-1] != first, f"{len(seen)} connections, none reloaded"
        # The keep-alive connection from before the reload still has its certificate and answers.
        assert old.serial == first
        status, body, connection = await old.ask()
        assert (status, body) == (401, {"error": "Incorrect API token"}) and connection != b"close"
        old.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    log = err.decode(errors="replace")
    assert proc.returncode == 0, log[-2000:]
    assert log.count("TLS certificates reloaded") == processes, log[-2000:]
