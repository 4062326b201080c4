"""The bare aiosmtpd sink for bench/smtp_frontend.py: STARTTLS + AUTH required, accepts and discards.

Run by the benchmark as a subprocess (pinned with taskset):
    python bench/_sink.py --port P --cert CERT --key KEY --password PW
Prints "ready <port>" on stdout once listening; stops on SIGTERM/SIGINT.

Same TLS settings as the service's listener (mailtrap_smtp/smtp/tls.py: TLS 1.2+, ECDHE+AEAD
suites, same certificate), same listener mode (STARTTLS required before AUTH, AUTH required before
MAIL), same size limit as the service's default (10 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!PSK:!SRP"


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.load_cert_chain(cert, key)
    return ctx


class Discard:
    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        return "250 OK"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--password", required=True)
    a = p.parse_args()
    password = a.password.encode()
    ctx = tls_context(a.cert, a.key)

    def authenticator(server: SMTP, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
        ok = getattr(data, "password", None) == password
        return AuthResult(success=ok, handled=False)

    def factory() -> SMTP:
        return SMTP(
            Discard(), hostname="localhost", tls_context=ctx, require_starttls=True,
            auth_required=True, auth_require_tls=True, authenticator=authenticator,
            data_size_limit=10 * 1024 * 1024,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host=a.host, port=a.port)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print(f"ready {a.port}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # aiosmtpd logs every session at INFO on "mail.log"; keep it quiet so logging costs nothing.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(main())
