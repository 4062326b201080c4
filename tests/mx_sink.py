"""A scriptable SMTP server on loopback playing a recipient's MX, for delivery tests.

The one job of this module: give delivery tests a real remote end (aiosmtpd in its own thread,
speaking real SMTP, optionally STARTTLS with the test certificate) whose answers the test scripts
per recipient, and which records every received envelope with the exact bytes of DATA (after the
server's dot-unstuffing, RFC 5321 §4.5.2), so tests can compare them with `messages.raw`.

Scripting (all optional, changeable while running):
* `rcpt_replies[address]`: the RCPT reply for that recipient ("550 5.1.1 No such user"), or "drop"
  (close the connection instead of answering);
* `data_replies[address]`: the DATA reply for a transaction that includes that recipient, or "drop";
  `data_reply`: the default DATA reply;
* `mail_reply`: a reply for every MAIL FROM instead of 250;
* `drop_connections`: close this many next connections right after EHLO;
* `one_message_per_connection`: "421" (refuse a second MAIL and hang up) or "eof" (just hang up);
* `stall`: a threading.Event; while it is set, DATA waits before answering (to kill a worker mid-way).

`MxSink(requiretls=True)` offers REQUIRETLS (RFC 8689) in the EHLO after STARTTLS and accepts the
`REQUIRETLS` MAIL parameter there (aiosmtpd knows neither: `_RequireTlsSMTP`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    data: bytes
    tls: bool
    mail_options: list[str]
    helo: str | None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: MxSink) -> None:
        self.sink = sink

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.sink.requiretls and session.ssl is not None:
            responses.insert(len(responses) - 1, "250-REQUIRETLS")  # RFC 8689 §2: after STARTTLS only
        with self.sink.lock:
            self.sink.ehlos.append(hostname)
            drop = self.sink.drop_connections > 0
            if drop:
                self.sink.drop_connections -= 1
        if drop:
            server.transport.close()
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        mode = self.sink.one_message_per_connection
        if mode and getattr(session, "transactions", 0):
            # A server with a one-message-per-connection limit: "421" refuses the next MAIL and hangs
            # up, "eof" hangs up without a word (as if it had closed the idle connection).
            server.transport.close()
            return "421 4.7.0 one message per connection" if mode == "421" else "250 (never seen)"
        session.transactions = getattr(session, "transactions", 0) + 1  # type: ignore[attr-defined]
        if self.sink.mail_reply:
            return self.sink.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.sink.rcpt_replies.get(address)
        if reply == "drop":
            server.transport.close()
            return "421 4.4.2 closing"
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        return reply or "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sink = self.sink
        data = envelope.original_content or b""
        tls = session.ssl is not None
        item = Received(envelope.mail_from or "", list(envelope.rcpt_tos), bytes(data), tls,
                        list(envelope.mail_options), session.host_name)
        with sink.lock:
            sink.data_started.append(item)
        while sink.stall.is_set():
            await asyncio.sleep(0.02)
        reply = sink.data_reply
        for r in envelope.rcpt_tos:
            if r in sink.data_replies:
                reply = sink.data_replies[r]
        if reply == "drop":
            server.transport.close()
            return "421 4.4.2 closing"
        if reply.startswith("2"):
            with sink.lock:
                sink.received.append(item)
        return reply


class _RequireTlsSMTP(SMTP):
    """aiosmtpd refuses a MAIL parameter it does not know (555): REQUIRETLS is taken over TLS here."""

    def _getparams(self, params: Any) -> dict[str, Any] | None:
        got: dict[str, Any] | None = super()._getparams(params)
        if got is not None and self._tls_protocol is not None and got.get("REQUIRETLS") is True:
            del got["REQUIRETLS"]  # still in the options handle_MAIL records
        return got


class _Controller(Controller):
    def __init__(self, *args: Any, requiretls: bool, **kwargs: Any) -> None:
        self._requiretls = requiretls
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        if not self._requiretls:
            return super().factory()
        return _RequireTlsSMTP(self.handler, **self.SMTP_kwargs)


class MxSink:
    """Start with `start()` (or as a context manager); `port` is where it listens."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None,
                 tls_cert: tuple[Path, Path] | None = None, tls_context: ssl.SSLContext | None = None,
                 smtputf8: bool = True, requiretls: bool = False) -> None:
        self.host = host
        self.requiretls = requiretls
        self.port = port or free_port(host)
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.data_started: list[Received] = []
        self.ehlos: list[str] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: dict[str, str] = {}
        self.data_reply = "250 2.0.0 OK queued"
        self.mail_reply: str | None = None
        self.drop_connections = 0
        self.one_message_per_connection: str | None = None  # "421" | "eof"
        self.stall = threading.Event()
        # smtputf8=False: an MX that does not offer SMTPUTF8 (RFC 6531), for the 5.6.7 bounces.
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8, "decode_data": False}
        if tls_cert is not None and tls_context is None:
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(str(tls_cert[0]), str(tls_cert[1]))
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = False
        self._controller = _Controller(_Handler(self), hostname=host, port=self.port, requiretls=requiretls,
                                       server_hostname="sink.test", ready_timeout=5, **kwargs)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> MxSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self.stall.clear()
        self._controller.stop()

    def __enter__(self) -> MxSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def by_rcpt(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        with self.lock:
            for item in self.received:
                for r in item.rcpts:
                    out.setdefault(r, []).append(item)
        return out

