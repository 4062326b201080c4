"""One SMTP session of the inbound listener: reports to VERP return paths, nothing else.

A publicly referenced MX (RFC 3207 §4) that only ever receives bounces and complaints: STARTTLS is
offered but not required (an MX that required it would lose the reports of MTAs without TLS), AUTH
is not offered, the size cap is small (`inbound.max_message_size`), and a recipient is accepted only
if it is a return path whose MAC verifies (delivery/verp.py); everything else is `550 5.1.1`, at
RCPT, before any data is read.

The same hostile-input discipline as submission (smtp/session.py), reusing its address grammar,
reply table and TLS contexts: command lines of at most 512 octets (RFC 5321 §4.5.3.1.4), CR / NUL /
control characters refused, every read under the command timeout capped by the session deadline,
`smtp.max_errors` errors and the session ends, plaintext pipelined behind STARTTLS discarded (RFC
3207 §4.2), DATA ended only by the exact CRLF "." CRLF and bounded in memory past the cap. Bare
line endings inside DATA are kept (not refused as at submission): a report is parsed, never relayed,
so there is no one downstream to smuggle a message to.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from .. import metrics, replies
from ..config import Config
from ..delivery import verp
from ..replies import Reply
from ..smtp import address
from ..smtp.tls import TlsContexts
from . import feedback, reports

log = logging.getLogger(__name__)

COMMAND_LINE_MAX = 512
READ_SIZE = 65536
_TERMINATOR = b"\r\n.\r\n"
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f]")
_HELO_SAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


class _Close(Exception):
    """End the session (the reply, if any, has been sent)."""


@dataclass(frozen=True)
class InboundParts:
    """What an inbound session uses of its service (handed in, so the session imports no server)."""

    cfg: Config
    pool: Any
    tls: TlsContexts
    key: bytes  # the VERP key
    feedback_addresses: frozenset[str]


class InboundSession:
    def __init__(self, service: InboundParts, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 client_ip: str) -> None:
        self.service = service
        self.cfg = service.cfg
        self.reader = reader
        self.writer = writer
        self.client_ip = client_ip
        self.tls = False
        self.buf = bytearray()
        self.deadline = time.monotonic() + self.cfg.smtp.session_deadline_seconds
        self.errors = 0
        self.helo: str | None = None
        self.mail_from: str | None = None
        self.tags: list[verp.Tag | None] = []  # None: a feedback address (the report names whom)

    # --- plumbing

    async def send(self, reply: Reply) -> None:
        self.writer.write(reply.wire())
        async with asyncio.timeout(self.cfg.smtp.command_timeout_seconds):
            await self.writer.drain()

    async def _send_lines(self, code: int, lines: list[str]) -> None:
        """A multi-line reply of server-made lines (EHLO's host name and extensions)."""
        out = [f"{code}-{x}\r\n" for x in lines[:-1]] + [f"{code} {lines[-1]}\r\n"]
        self.writer.write("".join(out).encode("ascii"))
        async with asyncio.timeout(self.cfg.smtp.command_timeout_seconds):
            await self.writer.drain()

    async def close_with(self, reply: Reply, reason: str) -> NoReturn:
        metrics.SMTP_SESSIONS_CLOSED.labels(f"inbound_{reason}").inc()
        try:
            await self.send(reply)
        finally:
            self.writer.close()
        raise _Close

    async def error(self, reply: Reply) -> None:
        self.errors += 1
        if self.errors > self.cfg.smtp.max_errors:
            await self.close_with(replies.TOO_MANY_ERRORS, "too_many_errors")
        await self.send(reply)

    async def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        timeout = min(self.cfg.smtp.command_timeout_seconds, max(left, 0.0))
        reply = replies.SESSION_DEADLINE if left <= self.cfg.smtp.command_timeout_seconds else replies.IDLE_TIMEOUT
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            await self.close_with(reply, "timeout")
        if not data:
            raise _Close
        self.buf += data

    async def read_line(self) -> bytes | None:
        """One command line with its LF, or None for an over-long one (consumed to its end)."""
        too_long = False
        while True:
            idx = self.buf.find(b"\n")
            if idx >= 0:
                line = bytes(self.buf[: idx + 1])
                del self.buf[: idx + 1]
                return None if too_long or len(line) > COMMAND_LINE_MAX else line
            if len(self.buf) > COMMAND_LINE_MAX:
                too_long = True
                self.buf.clear()  # never buffer an over-long line
            await self._fill()

    # --- main loop

    async def run(self) -> None:
        try:
            await self.send(replies.GREETING.format(hostname=self.cfg.server.hostname))
            while True:
                await self._dispatch(await self.read_line())
        except (_Close, ConnectionError, OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            if not self.writer.is_closing():
                self.writer.close()

    async def _dispatch(self, line: bytes | None) -> None:
        if line is None:
            await self.error(replies.LINE_TOO_LONG)
            return
        text = line.rstrip(b"\n")
        if text.endswith(b"\r"):
            text = text[:-1]
        if _CONTROL.search(text):
            await self.error(replies.BAD_CHARACTERS)
            return
        verb, _, arg = text.partition(b" ")
        handler = _HANDLERS.get(verb.upper().decode("latin-1"))
        if handler is None:
            await self.error(replies.UNKNOWN_COMMAND)
            return
        try:
            await handler(self, arg)
        except (_Close, ConnectionError, OSError):
            raise
        except Exception:
            log.exception("inbound SMTP command failed")
            await self.error(replies.TEMPORARY_FAILURE)

    # --- commands

    async def cmd_ehlo(self, arg: bytes) -> None:
        name = arg.strip().decode("latin-1")
        if not name or " " in name:
            await self.error(replies.HELO_SYNTAX)
            return
        self.helo = _HELO_SAFE.sub("", name)[:255] or "unknown"
        self._reset()
        ext = ["PIPELINING", f"SIZE {self.cfg.inbound.max_message_size}", "ENHANCEDSTATUSCODES", "8BITMIME"]
        if not self.tls:
            ext.append("STARTTLS")
        else:
            # RFC 8689 §5: the bounce of a REQUIRETLS message comes back with REQUIRETLS, which only a
            # TLS-protected session can carry (§2).
            ext.append("REQUIRETLS")
        await self._send_lines(250, [self.cfg.server.hostname, *ext])

    async def cmd_helo(self, arg: bytes) -> None:
        name = arg.strip().decode("latin-1")
        if not name or " " in name:
            await self.error(replies.HELO_SYNTAX)
            return
        self.helo = _HELO_SAFE.sub("", name)[:255] or "unknown"
        self._reset()
        await self._send_lines(250, [self.cfg.server.hostname])

    async def cmd_noop(self, _arg: bytes) -> None:
        await self.send(replies.NOOP_OK)

    async def cmd_rset(self, arg: bytes) -> None:
        if arg.strip():
            await self.error(replies.SYNTAX)
            return
        self._reset()
        await self.send(replies.RESET_OK)

    async def cmd_quit(self, _arg: bytes) -> None:
        await self.send(replies.BYE)
        self.writer.close()
        raise _Close

    async def cmd_help(self, _arg: bytes) -> None:
        await self.send(replies.HELP)

    async def cmd_vrfy(self, _arg: bytes) -> None:
        await self.send(replies.VRFY)

    async def cmd_not_implemented(self, _arg: bytes) -> None:
        await self.error(replies.NOT_IMPLEMENTED)

    async def cmd_auth(self, _arg: bytes) -> None:
        await self.error(replies.INBOUND_NO_AUTH)

    async def cmd_bdat(self, _arg: bytes) -> None:
        # CHUNKING is not offered; the chunk that follows is data, never commands: hang up.
        await self.close_with(replies.BDAT_NOT_SUPPORTED, "bdat")

    async def cmd_starttls(self, arg: bytes) -> None:
        if self.tls:
            await self.error(replies.TLS_ALREADY_ACTIVE)
            return
        if arg.strip():
            await self.error(replies.SYNTAX)
            return
        transport: Any = self.writer.transport
        transport.pause_reading()
        # RFC 3207 §4.2 / CVE-2011-0411: plaintext pipelined after STARTTLS is discarded.
        discarded = len(self.buf) + len(getattr(self.reader, "_buffer", b""))
        self.buf.clear()
        stream_buffer = getattr(self.reader, "_buffer", None)
        if stream_buffer is not None:
            stream_buffer.clear()
        if discarded:
            metrics.SMTP_PIPELINED_DISCARDED.inc(discarded)
        await self.send(replies.STARTTLS_READY)
        try:
            await self.writer.start_tls(self.service.tls.current,
                                        ssl_handshake_timeout=self.cfg.smtp.tls_handshake_timeout_seconds)
        except (TimeoutError, ConnectionError, OSError) as e:
            metrics.TLS_HANDSHAKES.labels("timeout" if isinstance(e, TimeoutError) else "failure").inc()
            self.writer.transport.abort()
            raise _Close from None
        metrics.TLS_HANDSHAKES.labels("success").inc()
        self.tls = True
        self.helo = None  # RFC 3207 §4.2: the client starts over with EHLO
        self._reset()

    def _reset(self) -> None:
        self.mail_from = None
        self.tags = []

    async def cmd_mail(self, arg: bytes) -> None:
        if self.helo is None:
            await self.error(replies.EHLO_FIRST)
            return
        if self.mail_from is not None:
            await self.error(replies.NESTED_MAIL)
            return
        parsed = address.parse_command_path(arg, b"FROM:")
        if isinstance(parsed, Reply):
            await self.error(replies.SENDER_SYNTAX if parsed is replies.RECIPIENT_SYNTAX else parsed)
            return
        path, params = parsed
        for key, value in params:
            if key == "SIZE":
                if not value or not value.isdigit() or len(value) > 15:
                    await self.error(replies.SYNTAX)
                    return
                if int(value) > self.cfg.inbound.max_message_size:
                    await self.error(replies.SIZE_EXCEEDED)
                    return
            elif key == "REQUIRETLS":
                refused = self._requiretls_param(value)
                if refused is not None:
                    await self.error(refused)
                    return
            elif key != "BODY" or (value or "").upper() not in ("7BIT", "8BITMIME"):
                await self.error(replies.UNSUPPORTED_PARAMETER)
                return
        self.mail_from = path  # "" for the null reverse path every DSN uses (RFC 3464 §2)
        await self.send(replies.SENDER_OK)

    def _requiretls_param(self, value: str | None) -> Reply | None:
        """RFC 8689 §2: no value, and only over TLS (this listener takes MAIL before STARTTLS too)."""
        if value is not None:
            return replies.BAD_PARAMETER
        return None if self.tls else replies.REQUIRETLS_WITHOUT_TLS

    async def cmd_rcpt(self, arg: bytes) -> None:
        if self.mail_from is None:
            await self.error(replies.NEED_MAIL)
            return
        parsed = address.parse_command_path(arg, b"TO:")
        if isinstance(parsed, Reply):
            await self.error(parsed)
            return
        path, params = parsed
        if params:
            await self.error(replies.UNSUPPORTED_PARAMETER)
            return
        tag = verp.check(self.service.key, path) if path else None
        if tag is None and path.lower() in self.service.feedback_addresses:
            pass  # accepted: the message and recipient are read from the report at DATA
        elif tag is None:
            metrics.INBOUND_REPORTS.labels("refused_recipient").inc()
            await self.error(replies.INBOUND_NO_SUCH_USER)
            return
        if len(self.tags) >= self.cfg.inbound.max_recipients:
            await self.error(replies.TOO_MANY_RECIPIENTS)
            return
        self.tags.append(tag)
        await self.send(replies.RECIPIENT_OK)

    async def cmd_data(self, arg: bytes) -> None:
        if arg.strip():
            await self.error(replies.SYNTAX)
            return
        if self.mail_from is None:
            await self.error(replies.NEED_MAIL)
            return
        if not self.tags:
            await self.error(replies.NEED_RCPT)
            return
        await self.send(replies.START_DATA)
        content = await self._read_data(self.cfg.inbound.max_message_size)
        tags, self.tags, self.mail_from = self.tags, [], None
        if content is None:
            metrics.INBOUND_REPORTS.labels("too_large").inc()
            await self.error(replies.SIZE_EXCEEDED)
            return
        # Parsing is CPU work on untrusted input: off the event loop, so other sessions go on.
        report = await asyncio.to_thread(reports.parse, content)
        named = [t for t in tags if t is not None]
        if len(named) < len(tags):  # a feedback address among the recipients
            found = [t for t in feedback.tags_in(self.service.key, report) if t not in named]
            if not found:
                metrics.INBOUND_REPORTS.labels("no_return_path_in_report").inc()
            named += found
        for tag in named:
            result = await feedback.record(self.service.pool, tag, report, reporter=self.client_ip)
            metrics.INBOUND_REPORTS.labels(str(result)).inc()
            log.info("report from [%s] for %s/%s: %s (%s%s)", self.client_ip, tag.message_id, tag.recipient_id,
                     result, report.kind, f": {report.reason}" if report.reason else "")
        # Accepted even when it reported nothing usable: a refusal would only make the remote MTA
        # send a bounce of the bounce to its postmaster (RFC 3464 §2, reports about reports).
        await self.send(replies.INBOUND_ACCEPTED)

    async def _read_data(self, limit: int) -> bytes | None:
        """The unstuffed message, or None if it exceeded `limit` (then all of it is consumed)."""
        work = bytearray(b"\r\n") + self.buf  # the DATA line's CRLF starts the first line
        self.buf.clear()
        dropped = False
        scan = 0
        while True:
            idx = work.find(_TERMINATOR, scan)
            if idx >= 0:
                self.buf += work[idx + 5:]
                if dropped:
                    return None
                content = bytes(work[2: idx + 2])
                break
            scan = max(0, len(work) - 4)
            if dropped or len(work) - 6 > limit:
                dropped = True
                del work[:-4]  # past the cap keep only what could start the terminator
                scan = 0
            await self._fill()
            work += self.buf
            self.buf.clear()
        if len(content) > limit:
            return None
        if content.startswith(b"."):
            content = content[1:]
        return content.replace(b"\r\n.", b"\r\n")  # RFC 5321 §4.5.2 transparency


_HANDLERS: dict[str, Any] = {
    "EHLO": InboundSession.cmd_ehlo,
    "HELO": InboundSession.cmd_helo,
    "NOOP": InboundSession.cmd_noop,
    "RSET": InboundSession.cmd_rset,
    "QUIT": InboundSession.cmd_quit,
    "HELP": InboundSession.cmd_help,
    "VRFY": InboundSession.cmd_vrfy,
    "EXPN": InboundSession.cmd_not_implemented,
    "TURN": InboundSession.cmd_not_implemented,
    "ETRN": InboundSession.cmd_not_implemented,
    "STARTTLS": InboundSession.cmd_starttls,
    "AUTH": InboundSession.cmd_auth,
    "BDAT": InboundSession.cmd_bdat,
    "MAIL": InboundSession.cmd_mail,
    "RCPT": InboundSession.cmd_rcpt,
    "DATA": InboundSession.cmd_data,
}
