"""One SMTP submission session (RFC 5321, 3207 STARTTLS, 4954 AUTH, 1870 SIZE, 2920 PIPELINING,
3030 CHUNKING, 8689 REQUIRETLS).

A small asyncio state machine written for this service instead of an aiosmtpd handler: it owns
every byte it reads and writes, so that every reply comes from `replies.py`, pipelined plaintext
behind STARTTLS is provably discarded, and DATA is read in large chunks.

Reading. Commands are read from our own buffer filled with 64 KiB reads; a command line is at most
512 octets (RFC 5321 §4.5.3.1.4), an AUTH line at most 12288 (RFC 4954 §4); longer lines are
discarded up to their end and answered `LINE_TOO_LONG`. Command lines may end in CRLF, or in a bare
LF when `smtp.bare_newline = "normalize"` (Postfix 3.9's default; `BARE_NEWLINE` otherwise); a CR
or NUL inside one is refused (`BAD_CHARACTERS`). Every read has a timeout: the command timeout,
capped by the absolute session deadline, and during DATA by the minimum data rate.

DATA reader. DATA is read in chunks and handed to `datareader.DataReader`, which finds the one
terminator (CRLF "." CRLF), settles line endings per `smtp.bare_newline` and undoes dot-stuffing;
any other would-be terminator ("SMTP smuggling") stays inside the one message as text.

BDAT (RFC 3030). Offered after STARTTLS. Exactly the announced octets are read after the command
line, under the same rate floor and deadline as DATA, and always consumed, refused or not (RFC 3030
§2), so a chunk is never read as commands; a line whose chunk size cannot be trusted closes the
session (`chunking.py`). BDAT LAST hands the message to the same acceptance as DATA.

Writing. Each reply is written then drained under the command timeout with a 64 KiB transport
high-water mark, so a client that stops reading is cut off instead of growing our buffers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from .. import mailbox, maillog, metrics, replies, tokens
from ..auth import Authenticator, Principal, SessionSlots
from ..config import Config
from ..outcomes import Outcome, Rejected
from ..replies import Reply
from ..submission import Envelope, Submission, rfc5322_now
from . import address, chunking, halfclose, sasl
from .datareader import DataReader
from .listener import Listener
from .peers import WindowTable, brake_key
from .tls import TlsContexts

log = logging.getLogger(__name__)

COMMAND_LINE_MAX = 512  # octets incl. CRLF, RFC 5321 §4.5.3.1.4
AUTH_LINE_MAX = 12288  # RFC 4954 §4
READ_SIZE = 65536
DATA_READ_SIZE = 262144
WRITE_HIGH_WATER = 65536
DATA_RATE_GRACE_MAX = 5.0  # seconds before the minimum data rate applies (TCP slow start etc.)
_HELO_SAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f]")  # control characters but HTAB, in a command line
_PRE_TLS_ALLOWED = {"EHLO", "HELO", "NOOP", "STARTTLS", "QUIT", "RSET"}


class _Close(Exception):
    """End the session (the reply, if any, has been sent)."""


class _TooLong:
    def __init__(self, head: bytes = b"") -> None:
        self.head = head  # the line's first octets: an over-long BDAT line must still close (`_bdat_line`)


@dataclass(frozen=True)
class SessionParts:
    """What a session uses, handed in by the server: the config, the use cases, the shared brakes."""

    cfg: Config
    tls: TlsContexts  # current server contexts, for STARTTLS
    submission: Submission
    authenticator: Authenticator
    slots: SessionSlots  # per-account session cap (auth.py)
    auth_failures: WindowTable  # per-IP / per-brake AUTH failure window (peers.py)


class Session:
    def __init__(self, parts: SessionParts, listener: Listener, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, client_ip: str, *, tls: bool) -> None:
        self.parts = parts
        self.cfg = parts.cfg
        self.listener = listener
        self.reader = reader
        self.writer = writer
        self.client_ip = client_ip
        self.tls = tls
        self.buf = bytearray()
        self.pos = 0  # start of unread bytes in buf: lines are sliced, not deleted one by one
        self.started = time.monotonic()
        self.deadline = self.started + self.cfg.smtp.session_deadline_seconds
        self.idle = False
        self.closing = False
        self.errors = 0
        self.junk = 0  # NOOP, RSET, VRFY, HELP since the last accepted message
        self.close_reason = "client_closed"  # for the operator's log (maillog.connection_end)
        self.auth_failures = 0
        self.messages = 0
        self.helo: str | None = None
        self.esmtp = False
        self.principal: Principal | None = None
        self.slot: int | None = None
        self.quota_left: int | None = None
        self._tls_text: str | None = None
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[Any] | None = None
        # The read watchdog (see `_read`): the loop time the current read must end by, and one
        # timer moved lazily.
        self._read_until: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._timed_out = False
        self._reject_bare_lf = self.cfg.smtp.bare_newline == "reject"
        self._reset_transaction()
        self._set_write_limits()
        self._watch_half_close()

    # ------------------------------------------------------------------ plumbing

    def _watch_half_close(self) -> None:
        """A client's TCP half-close is held back by the TLS layer until we have answered (halfclose.py)."""
        layer = halfclose.layer_of(self.writer)
        if layer is not None:
            layer.wrapped = True
            layer.on_eof = self._on_peer_eof

    def _on_peer_eof(self) -> None:
        # Already waiting for input with nothing unread: the client is done, let the EOF through.
        if self._read_until is not None and not getattr(self.reader, "_buffer", b""):
            self._release_eof()

    def _stop_holding_eof(self) -> None:
        # The session is over: an EOF arriving from now on ends the TLS shutdown as usual.
        layer = halfclose.layer_of(self.writer)
        if layer is not None:
            layer.wrapped = False
            layer.on_eof = None

    def _release_eof(self) -> None:
        layer = halfclose.layer_of(self.writer)
        if layer is not None and layer.eof_pending:
            layer.release_eof()

    def _set_write_limits(self) -> None:
        transport = self.writer.transport
        try:
            transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        except (AttributeError, NotImplementedError):
            pass

    def _reset_transaction(self) -> None:
        self.mail_from: str | None = None
        self.sender_domain_id: int | None = None
        self.recipients: list[str] = []
        self.rcpt_keys: set[str] = set()
        self.chunks: bytearray | None = None  # the BDAT chunks of this transaction so far (RFC 3030)
        self.smtputf8 = False  # MAIL declared SMTPUTF8 (RFC 6531 §3.4)
        self.requiretls = False  # MAIL FROM ... REQUIRETLS (RFC 8689)

    async def send(self, reply: Reply) -> None:
        if reply.is_error:
            metrics.MESSAGES_REJECTED.labels(reply.name).inc()
        self.writer.write(reply.wire())
        await self._drain()

    async def _send_lines(self, code: int, lines: list[str]) -> None:
        out = [f"{code}-{line}\r\n" for line in lines[:-1]] + [f"{code} {lines[-1]}\r\n"]
        self.writer.write("".join(out).encode("ascii"))
        await self._drain()

    async def _drain(self) -> None:
        # StreamWriter.drain() returns at once unless the transport asked our protocol to pause
        # writing (FlowControlMixin._paused); only then is there something to wait for and bound.
        if not getattr(self.writer._protocol, "_paused", True):  # type: ignore[attr-defined]
            return
        try:
            async with asyncio.timeout(self.cfg.smtp.command_timeout_seconds):
                await self.writer.drain()
        except TimeoutError:
            # The client stopped reading: never buffer without bound (issue 3, hostile clients).
            metrics.SMTP_SESSIONS_CLOSED.labels("write_timeout").inc()
            self.close_reason = "write_timeout"
            self.writer.transport.abort()
            raise _Close from None

    async def error(self, reply: Reply) -> None:
        """Send an error reply; past `smtp.max_errors` errors, send 421 instead and close."""
        maillog.refused(reply=reply.name, code=reply.code, account=self._account(), peer=self.client_ip)
        self.errors += 1
        if self.errors > self.cfg.smtp.max_errors:
            await self.close_with(replies.TOO_MANY_ERRORS, "too_many_errors")
        await self.send(reply)

    async def close_with(self, reply: Reply, reason: str) -> NoReturn:
        metrics.SMTP_SESSIONS_CLOSED.labels(reason).inc()
        self.close_reason = reason
        try:
            await self.send(reply)
        finally:
            self.writer.close()
        raise _Close

    def _read_timeout(self, line_until: float | None = None) -> tuple[float, Reply, str]:
        """How long the next read may wait, and what to answer when it is over: the session
        deadline, or the command timeout counted from `line_until` (the end allowed for the whole
        command line, so a client dripping a byte at a time cannot hold the session) or from now."""
        now = time.monotonic()
        left = self.deadline - now
        command = self.cfg.smtp.command_timeout_seconds if line_until is None else line_until - now
        if left <= command:
            return max(left, 0.0), replies.SESSION_DEADLINE, "session_deadline"
        return max(command, 0.0), replies.IDLE_TIMEOUT, "idle_timeout"

    async def _read(self, size: int, within: float, reply: Reply, reason: str) -> bytes:
        """`reader.read(size)`, but after `within` seconds without data `reply` is sent and the
        session ends.

        One timer per session instead of an `asyncio.timeout` per read (which costs a timer, a
        task look-up and a cancellation every time, several times per message): each read only
        records its deadline; the timer, when it fires, cancels the session task if a read is
        past its deadline and otherwise moves itself to the current one. It is re-armed earlier
        only when a read has a nearer deadline than the timer (the DATA rate floor).
        """
        if not getattr(self.reader, "_buffer", b""):
            self._release_eof()  # everything read was answered: a held-back EOF may come through now
        until = self._loop.time() + within
        self._read_until = until
        if self._timer is None or self._timer_at > until:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = until
            self._timer = self._loop.call_at(until, self._on_timer)
        try:
            return await self.reader.read(size)
        except asyncio.CancelledError:
            if self._timed_out:
                self._timed_out = False
                if self._task is not None and self._task.uncancel() == 0:
                    await self.close_with(reply, reason)
            raise
        finally:
            self._read_until = None

    def _on_timer(self) -> None:
        self._timer = None
        until = self._read_until
        if until is None:
            return  # not reading now: the next read arms the timer again
        if self._loop.time() >= until:
            self._timed_out = True
            if self._task is not None:
                self._task.cancel()
        else:
            self._timer_at = until
            self._timer = self._loop.call_at(until, self._on_timer)

    async def _fill(self, line_until: float | None = None, size: int = READ_SIZE) -> None:
        timeout, reply, reason = self._read_timeout(line_until)
        data = await self._read(size, timeout, reply, reason)
        if not data:
            raise _Close
        if self.pos:
            # Compact only when refilling: deleting each consumed line from the front would cost
            # a memmove of the whole buffer per line (quadratic under a pipelined flood).
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    def pending(self) -> int:
        return len(self.buf) - self.pos

    def take_pending(self) -> bytes:
        data = bytes(self.buf[self.pos:])
        self.buf.clear()
        self.pos = 0
        return data

    async def read_line(self, limit: int) -> bytes | _TooLong:
        """One line including its LF, or a `_TooLong` (the whole over-long line is consumed); the whole
        line must arrive within the command timeout."""
        line_until = time.monotonic() + self.cfg.smtp.command_timeout_seconds
        while True:
            idx = self.buf.find(b"\n", self.pos)
            if idx >= 0:
                line = bytes(self.buf[self.pos: idx + 1])
                self.pos = idx + 1
                return _TooLong(line[:5]) if len(line) > limit else line
            if self.pending() > limit:
                head = bytes(self.buf[self.pos: self.pos + 5])
                self.take_pending()
                while True:  # discard up to the end of the line, without buffering it
                    await self._fill(line_until)
                    idx = self.buf.find(b"\n")
                    if idx >= 0:
                        self.pos = idx + 1
                        return _TooLong(head)
                    self.take_pending()
            self.idle = not self.pending()
            try:
                if self.closing and self.idle:
                    await self.close_with(replies.SHUTTING_DOWN, "shutdown")
                await self._fill(line_until)
            finally:
                self.idle = False

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        self._task = asyncio.current_task()
        try:
            await self.send(replies.GREETING.format(hostname=self.cfg.server.hostname))
            while True:
                line = await self.read_line(AUTH_LINE_MAX)
                await self._dispatch(line)
                if self.closing and not self.pending():
                    await self.close_with(replies.SHUTTING_DOWN, "shutdown")
        except _Close:
            pass
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            self.close_reason = "connection_lost"
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._release()
            self._release_eof()  # so the TLS shutdown does not wait for a close_notify that cannot come
            self._stop_holding_eof()
            if not self.writer.is_closing():
                self.writer.close()
            maillog.connection_end(peer=self.client_ip, tls=self._tls_version(), account=self._account(),
                                   messages=self.messages, duration=time.monotonic() - self.started,
                                   reason=self.close_reason)

    def _account(self) -> str | None:
        return self.principal.account_name if self.principal is not None else None

    def _tls_version(self) -> str | None:
        ssl_object = self.writer.get_extra_info("ssl_object") if self.tls else None
        return ssl_object.version() if ssl_object is not None else None

    def _release(self) -> None:
        if self.principal is not None and self.slot is not None:
            slot, self.slot = self.slot, None
            self.parts.slots.release(self.principal.account_id, slot)

    async def respond(self, reply: Reply | None) -> None:
        """The one place a verb's reply is written: an error counts toward `smtp.max_errors`."""
        if reply is None:
            return  # the verb wrote its own reply (EHLO's lines) or none is due
        if reply.is_error:
            await self.error(reply)
        else:
            await self.send(reply)

    async def _dispatch(self, line: bytes | _TooLong) -> None:
        try:
            await self.respond(await self._command(line))
        except (_Close, ConnectionError, OSError):
            raise
        except Exception:
            # An unexpected failure: internals go to the log, the client gets one fixed transient reply.
            log.exception("SMTP command failed")
            await self.error(replies.TEMPORARY_FAILURE)

    async def _command(self, line: bytes | _TooLong) -> Reply | None:
        """Parse one command line and run its verb; the reply is the verb's."""
        if isinstance(line, _TooLong):
            return await self._bdat_line(None) if _is_bdat(line.head) else replies.LINE_TOO_LONG
        if _is_bdat(line):
            return await self._bdat_line(line)
        if not line.endswith(b"\r\n") and self._reject_bare_lf:
            return replies.BARE_NEWLINE
        text = line.rstrip(b"\n")
        if text.endswith(b"\r"):
            text = text[:-1]
        verb_end = text.find(b" ")
        verb = (text if verb_end < 0 else text[:verb_end]).upper()
        if verb in _NON_SMTP and verb_end > 0:
            # An HTTP request or proxy CONNECT sent to the SMTP port (Postfix smtpd_forbidden_commands).
            await self.close_with(replies.NON_SMTP_COMMAND, "non_smtp_command")
        if verb == b"PROXY" and self.listener.proxy:
            # The proxy sent its header before the session; one inside it is forged (or a loop).
            await self.close_with(replies.PROXY_IN_SESSION, "proxy_in_session")
        if verb != b"AUTH" and len(line) > COMMAND_LINE_MAX:
            return replies.LINE_TOO_LONG
        if _CONTROL.search(text):
            return replies.BAD_CHARACTERS
        arg = b"" if verb_end < 0 else text[verb_end + 1:]
        name = verb.decode("latin-1")
        if name in _JUNK:
            self.junk += 1
            if self.junk > self.cfg.smtp.junk_command_limit:
                await self.close_with(replies.TOO_MANY_JUNK_COMMANDS, "junk_commands")
        if not self.tls and name not in _PRE_TLS_ALLOWED:
            return replies.STARTTLS_REQUIRED if name in _HANDLERS else replies.UNKNOWN_COMMAND
        handler = _HANDLERS.get(name)
        if handler is None:
            return replies.UNKNOWN_COMMAND
        reply: Reply | None = await handler(self, arg)
        return reply

    # ------------------------------------------------------------------ commands

    def _extensions(self) -> list[str]:
        size = self.principal.max_message_size if self.principal else self.cfg.limits.message_size
        ext = ["PIPELINING", f"SIZE {size}"]
        if self.tls:
            ext.append("AUTH PLAIN LOGIN")
        else:
            ext.append("STARTTLS")
        ext += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        ext.append("SMTPUTF8")  # RFC 6531 §3.1: internationalised addresses and UTF-8 headers
        if self.tls:
            # Not before TLS, where no transaction can start: CHUNKING (RFC 3030), and REQUIRETLS,
            # which only means something on a TLS-protected session (RFC 8689 §2; as Exim does).
            ext += ["CHUNKING", "REQUIRETLS"]
        return ext

    async def cmd_ehlo(self, arg: bytes, *, esmtp: bool = True) -> Reply | None:
        name = arg.strip().decode("latin-1")
        if not name or " " in name:
            return replies.HELO_SYNTAX
        # Only used in our Received header: keep host-name / address-literal characters (':' only
        # inside an IPv6 literal), so nothing a client says can start or shape a header line.
        safe = _HELO_SAFE.sub("", name)
        if not safe.startswith("["):
            safe = safe.replace(":", "")
        self.helo = safe[:255] or "unknown"
        self.esmtp = esmtp
        self._reset_transaction()
        host = self.cfg.server.hostname
        await self._send_lines(250, [host, *self._extensions()] if esmtp else [host])
        return None

    async def cmd_helo(self, arg: bytes) -> Reply | None:
        return await self.cmd_ehlo(arg, esmtp=False)

    async def cmd_noop(self, _arg: bytes) -> Reply:
        return replies.NOOP_OK

    async def cmd_rset(self, arg: bytes) -> Reply:
        if arg.strip():
            return replies.SYNTAX
        self._reset_transaction()
        return replies.RESET_OK

    async def cmd_quit(self, _arg: bytes) -> NoReturn:
        self.close_reason = "quit"
        await self.send(replies.BYE)
        self.writer.close()
        raise _Close

    async def cmd_help(self, _arg: bytes) -> Reply:
        return replies.HELP

    async def cmd_vrfy(self, _arg: bytes) -> Reply:
        return replies.VRFY

    async def cmd_expn(self, _arg: bytes) -> Reply:
        return replies.NOT_IMPLEMENTED

    async def cmd_starttls(self, arg: bytes) -> Reply | None:
        if self.tls:
            return replies.TLS_ALREADY_ACTIVE
        if arg.strip():
            return replies.SYNTAX
        transport: Any = self.writer.transport
        transport.pause_reading()
        # RFC 3207 §4.2 / CVE-2011-0411: whatever the client sent after STARTTLS in plaintext
        # must never be read as if it came over TLS. Our buffer and the stream's are dropped
        # while reading is paused; from here on only bytes from the TLS layer are read.
        pending = len(self.take_pending()) + len(getattr(self.reader, "_buffer", b""))
        stream_buffer = getattr(self.reader, "_buffer", None)
        if stream_buffer is not None:
            stream_buffer.clear()
        if pending:
            metrics.SMTP_PIPELINED_DISCARDED.inc(pending)
        await self.send(replies.STARTTLS_READY)
        try:
            await halfclose.start_tls(self.writer, self.parts.tls.current,
                                      handshake_timeout=self.cfg.smtp.tls_handshake_timeout_seconds)
        except (TimeoutError, ConnectionError, OSError) as e:
            metrics.TLS_HANDSHAKES.labels("timeout" if isinstance(e, TimeoutError) else "failure").inc()
            self.close_reason = "tls_failed"
            self.writer.transport.abort()
            raise _Close from None
        metrics.TLS_HANDSHAKES.labels("success").inc()
        self.tls = True
        self._watch_half_close()
        self._set_write_limits()
        # RFC 3207 §4.2: forget everything learned before TLS; the client must EHLO again.
        self.helo = None
        self.esmtp = False
        self._reset_transaction()
        return None

    # --- AUTH

    async def _sasl_response(self, initial: bytes | None, challenge: Reply) -> bytes | Reply:
        """One client response, base64-decoded (the step PLAIN and LOGIN share): the initial
        response, or the answer to `challenge`; or the reply that ends the exchange."""
        if initial is None:
            await self.send(challenge)
            line = await self.read_line(AUTH_LINE_MAX)
            if isinstance(line, _TooLong):
                return replies.LINE_TOO_LONG
            if not line.endswith(b"\r\n") and self._reject_bare_lf:
                return replies.BARE_NEWLINE
            initial = line.rstrip(b"\r\n").strip()
        if initial == b"*":
            return replies.AUTH_CANCELLED  # RFC 4954 §4
        decoded = sasl.decode(initial)
        if decoded is None:
            return await self._auth_failed(replies.AUTH_BAD_BASE64)
        return decoded

    async def _credentials(self, mech: bytes, initial: bytes | None) -> bytes | Reply:
        """The secret the client presents (PLAIN, RFC 4616; LOGIN), or the reply that ends AUTH."""
        if mech == b"PLAIN":
            decoded = await self._sasl_response(initial, replies.AUTH_CHALLENGE_EMPTY)
            if isinstance(decoded, Reply):
                return decoded
            plain = sasl.plain(decoded)
            if plain is sasl.BAD_IDENTITY:
                return await self._auth_failed(replies.AUTH_BAD_IDENTITY)
            return plain if isinstance(plain, bytes) else b""
        user = await self._sasl_response(initial, replies.AUTH_CHALLENGE_USERNAME)
        if isinstance(user, Reply):
            return user
        if not sasl.identity_ok(user):
            return await self._auth_failed(replies.AUTH_BAD_IDENTITY)
        return await self._sasl_response(None, replies.AUTH_CHALLENGE_PASSWORD)

    async def cmd_auth(self, arg: bytes) -> Reply | None:
        if not self.esmtp:
            return replies.EHLO_FIRST
        if self.principal is not None:
            return replies.AUTH_ALREADY
        if self.mail_from is not None:
            return replies.BAD_SEQUENCE
        parts = arg.split()
        if not parts or len(parts) > 2:
            return replies.SYNTAX
        mech = parts[0].upper()
        if mech not in (b"PLAIN", b"LOGIN"):
            return replies.AUTH_MECHANISM
        secret = await self._credentials(mech, parts[1] if len(parts) == 2 else None)
        if isinstance(secret, Reply):
            return secret
        try:
            token = secret.decode("ascii")
        except UnicodeDecodeError:
            token = ""
        # The brake (peers.brake_key): the token id with the IP, the IP alone for unknown ids.
        brake = brake_key(self.client_ip, tokens.public_id_of(token))
        await self._unless_blocked(brake)
        try:
            self.principal, self.slot = await self.parts.authenticator.authenticate(
                token, stream=self.listener.stream or None, sender_policy=self.parts.submission.sender_policy,
                slots=self.parts.slots)
        except Rejected as r:
            return await self._auth_refused(r.outcome, brake)
        self.quota_left = self.principal.quota_remaining_at_auth
        metrics.AUTH_ATTEMPTS.labels("success").inc()
        return replies.AUTH_OK

    async def _auth_refused(self, outcome: Outcome, brake: str) -> Reply:
        if outcome is Outcome.CREDENTIAL_UNKNOWN and brake != self.client_ip:
            brake = self.client_ip
            await self._unless_blocked(brake)
        metrics.AUTH_ATTEMPTS.labels(metrics.AUTH_ATTEMPT_LABELS.get(outcome, outcome.value)).inc()
        reply = replies.OUTCOME_REPLIES[outcome]
        if outcome in (Outcome.CREDENTIAL_INVALID, Outcome.CREDENTIAL_UNKNOWN):
            # A guess, counted by the brute-force brake. NOT_PERMITTED (a real token without
            # sending rights here) gets the same 535 but is no guess.
            return await self._auth_failed(reply, brake)
        return reply

    async def _unless_blocked(self, brake: str) -> None:
        if self.parts.auth_failures.blocked(brake):
            metrics.AUTH_ATTEMPTS.labels("ip_blocked").inc()
            maillog.blocked(peer=self.client_ip, why="auth_failures")
            await self.close_with(replies.AUTH_IP_BLOCKED, "auth_ip_blocked")

    async def _auth_failed(self, reply: Reply, brake: str | None = None) -> Reply:
        """Count a failed AUTH (under `brake`, by default the IP); the last one allowed in this
        session gets its own reply, then the 421 (the client sees why)."""
        self.auth_failures += 1
        self.parts.auth_failures.record(brake or self.client_ip)
        maillog.auth_failed(reply=reply.name, peer=self.client_ip)
        if self.auth_failures >= self.cfg.limits.auth_failures_per_connection:
            await self.error(reply)
            await self.close_with(replies.AUTH_TOO_MANY_FAILURES, "auth_failures")
        return reply

    # --- mail transaction

    def _not_ready_for_mail(self) -> Reply | None:
        if self.helo is None:
            return replies.EHLO_FIRST  # RFC 3207 §4.2: after STARTTLS, EHLO again first
        if self.principal is None:
            return replies.AUTH_REQUIRED
        return None

    def _not_in_transaction(self) -> Reply | None:
        """Why a verb that needs a started transaction (RCPT, BDAT) cannot run now, or None."""
        return self._not_ready_for_mail() or (replies.NEED_MAIL if self.mail_from is None else None)

    def _mail_params(self, params: list[tuple[str, str | None]]) -> Reply | None:
        """MAIL FROM parameters (RFC 1870 SIZE, RFC 6152 BODY); bad values are X.5.4 (RFC 3463)."""
        assert self.principal is not None
        seen: set[str] = set()
        for key, value in params:
            if key in seen:
                return replies.BAD_PARAMETER
            seen.add(key)
            if key == "SIZE":
                if not value or not value.isdigit() or len(value) > 20:
                    return replies.BAD_PARAMETER
                if int(value) > self.principal.max_message_size:
                    return replies.SIZE_EXCEEDED
            elif key == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    return replies.BAD_PARAMETER
            elif key in ("SMTPUTF8", "REQUIRETLS"):
                # Neither takes a value (RFC 6531 §3.4, RFC 8689 §2). REQUIRETLS also needs TLS,
                # which every MAIL has here: before TLS the gate answers STARTTLS_REQUIRED.
                if value is not None:
                    return replies.BAD_PARAMETER
            else:
                return replies.UNSUPPORTED_PARAMETER  # 555 5.5.4
        return None

    async def cmd_mail(self, arg: bytes) -> Reply | None:
        refused = self._not_ready_for_mail()
        if refused is not None:
            return refused
        assert self.principal is not None
        if self.messages >= self.cfg.limits.messages_per_connection:
            await self.close_with(replies.TOO_MANY_MESSAGES, "too_many_messages")
        if self.mail_from is not None:
            return replies.NESTED_MAIL
        parsed = self._sender_path(arg)
        if isinstance(parsed, Reply):
            return parsed
        path, params, smtputf8 = parsed
        refused = self._mail_params(params)
        if refused is not None:
            return refused
        if not path:
            return replies.SENDER_DOMAIN_NOT_ALLOWED  # null sender: no domain to send as
        try:
            domain_id = await self.parts.submission.sender_domain(self.principal, path.rpartition("@")[2])
        except Rejected as r:
            return replies.OUTCOME_REPLIES[r.outcome]
        if domain_id is None:
            return replies.SENDER_DOMAIN_NOT_ALLOWED
        self.mail_from = path
        self.sender_domain_id = domain_id
        self.smtputf8 = smtputf8
        self.requiretls = any(key == "REQUIRETLS" for key, _ in params)
        return replies.SENDER_OK

    @staticmethod
    def _sender_path(arg: bytes) -> tuple[str, address.Params, bool] | Reply:
        """MAIL's path and parameters, and whether the line declares SMTPUTF8, which decides
        whether its own path may be non-ASCII (RFC 6531 §3.4)."""
        split = address.split_command_path(arg, b"FROM:")
        if isinstance(split, Reply):
            return replies.SENDER_SYNTAX if split is replies.RECIPIENT_SYNTAX else split
        raw_path, params = split
        smtputf8 = any(key == "SMTPUTF8" for key, _ in params)
        path = address.parse_path(raw_path, utf8=smtputf8, sender=True)
        return path if isinstance(path, Reply) else (path, params, smtputf8)

    async def cmd_rcpt(self, arg: bytes) -> Reply:
        refused = self._not_in_transaction()
        if refused is not None:
            return refused
        assert self.principal is not None
        parsed = address.parse_command_path(arg, b"TO:", utf8=self.smtputf8)
        if isinstance(parsed, Reply):
            return parsed
        path, params = parsed
        if params:
            return replies.UNSUPPORTED_PARAMETER
        if not path:
            return replies.RECIPIENT_SYNTAX
        local, _, domain = path.rpartition("@")
        key = f"{local}@{mailbox.a_label(domain)}"  # one mailbox, however its domain is spelled
        if key in self.rcpt_keys:
            return replies.RECIPIENT_OK  # duplicates are delivered and charged once
        if len(self.recipients) >= self.cfg.limits.recipients_per_message:
            return replies.TOO_MANY_RECIPIENTS
        if self.quota_left is None:
            try:
                self.quota_left = await self.parts.submission.quota_remaining(self.principal)
            except Rejected as r:
                return replies.OUTCOME_REPLIES[r.outcome]
        if len(self.recipients) + 1 > self.quota_left:
            return replies.QUOTA_EXCEEDED
        self.recipients.append(path)
        self.rcpt_keys.add(key)
        return replies.RECIPIENT_OK

    def _pipelined_past_data(self) -> bool:
        """Bytes already here after DATA were sent before our 354 (RFC 2920 §3.1: DATA ends a group)."""
        return bool(self.pending() or getattr(self.reader, "_buffer", b""))

    async def cmd_data(self, arg: bytes) -> Reply:
        if self._pipelined_past_data():
            await self.close_with(replies.IMPROPER_PIPELINING, "improper_pipelining")
        refused = self._not_ready_for_mail()
        if refused is not None:
            return refused
        assert self.principal is not None
        if arg.strip():
            return replies.SYNTAX
        if self.mail_from is None:
            return replies.NEED_MAIL
        if not self.recipients:
            return replies.NEED_RCPT
        if self.chunks is not None:
            # RFC 3030 §2: DATA after BDAT in one transaction is a 503; the state is then
            # "indeterminate", so the transaction is dropped (the client starts again with MAIL).
            self._reset_transaction()
            return replies.DATA_AFTER_BDAT
        await self.send(replies.START_DATA)
        limit = self.principal.max_message_size
        return await self._accept_message(lambda: self._read_data(limit))

    async def _accept_message(self, read_message: Callable[[], Awaitable[bytes | None]]) -> Reply:
        """Hand the message `read_message` reads (None: over the size limit) to submission, one
        transaction, and give its reply: the one acceptance path of DATA and BDAT LAST."""
        assert self.principal is not None and self.mail_from is not None
        envelope = Envelope(mail_from=self.mail_from, sender_domain_id=self.sender_domain_id,
                            recipients=self.recipients, client_ip=self.client_ip, trace=self._received(),
                            smtputf8=self.smtputf8, requiretls=self.requiretls)
        recipients = self.recipients
        principal = self.principal
        started = 0.0

        async def read() -> bytes:
            nonlocal started
            raw = await read_message()
            started = time.monotonic()
            if raw is None:
                raise Rejected(Outcome.SIZE_EXCEEDED)
            return raw

        try:
            accepted = await self.parts.submission.receive(principal, envelope, read)
        except Rejected as r:
            return replies.OUTCOME_REPLIES[r.outcome]
        except (_Close, ConnectionError, OSError):
            raise  # the client went away (or was sent away) while the message was being read
        except Exception:
            log.exception("accepting a message failed")
            return replies.TEMPORARY_FAILURE
        finally:
            self._reset_transaction()
        self.messages += 1
        maillog.accepted(queue_id=accepted.message_id, account=principal.account_name, stream=principal.stream,
                         sender=envelope.mail_from, recipients=accepted.recipients, size=accepted.size,
                         peer=self.client_ip)
        self.junk = 0  # NOOP/RSET between messages are no junk (Postfix resets per transaction)
        if self.quota_left is not None:
            self.quota_left -= len(recipients)
        metrics.MESSAGES_ACCEPTED.labels(self.principal.stream).inc()
        metrics.RECIPIENTS_ACCEPTED.labels(self.principal.stream).inc(len(recipients))
        metrics.ACCEPT_LATENCY.observe(time.monotonic() - started)
        return replies.QUEUED.format(message_id=accepted.message_id)

    async def _read_data(self, limit: int) -> bytes | None:
        """The message (see `datareader`), or None if it was larger than `limit` (all of it consumed)."""
        reader = DataReader(limit, normalize=self.cfg.smtp.bare_newline == "normalize")
        started = time.monotonic()
        done = reader.feed(self.take_pending())
        while not done:
            timeout, reply, reason = self._data_timeout(started, reader.received)
            data = await self._read(DATA_READ_SIZE, timeout, reply, reason)
            if not data:
                raise _Close
            done = reader.feed(data)
        self.buf += reader.rest  # pipelined commands after the dot
        return reader.message()

    def _data_timeout(self, started: float, received: int) -> tuple[float, Reply, str]:
        """`_read_timeout`, tightened by the minimum data rate: message data that began arriving at
        `started` must keep `received` at that rate or more after a short grace (TCP slow start)."""
        timeout, reply, reason = self._read_timeout()
        rate = self.cfg.smtp.min_data_rate_bytes_per_second
        if rate > 0:
            grace = min(DATA_RATE_GRACE_MAX, self.cfg.smtp.command_timeout_seconds)
            rate_left = started + grace + received / rate - time.monotonic()
            if rate_left < timeout:
                return max(rate_left, 0.0), replies.DATA_TOO_SLOW, "data_too_slow"
        return timeout, reply, reason

    # --- BDAT (RFC 3030 CHUNKING)

    def _chunking_offered(self) -> bool:
        return self.esmtp and self.tls  # what the last EHLO listed (`_extensions`)

    async def _bdat_line(self, line: bytes | None) -> Reply | None:
        """A BDAT command line (None: one too long to keep). Its chunk follows at once, so a line
        that cannot be trusted to say how long the chunk is (CHUNKING not offered, an unreadable
        size, a line too long or with control characters, a bare LF in `reject` mode) ends the
        session: those octets can be neither skipped nor read as commands (RFC 3030 §2; SMTP
        smuggling)."""
        if not self._chunking_offered():
            await self.close_with(replies.BDAT_NOT_SUPPORTED, "bdat")
        text = (line or b"").rstrip(b"\n")
        crlf = text.endswith(b"\r")
        text = text[:-1] if crlf else text
        bad = (line is None or len(line) > COMMAND_LINE_MAX or _CONTROL.search(text)
               or (not crlf and self._reject_bare_lf))
        bdat = None if bad else chunking.parse(text[5:])
        if bdat is None:
            await self.close_with(replies.BDAT_BAD_SIZE, "bdat_bad_size")
        return await self.cmd_bdat(bdat)

    def _bdat_refusal(self, bdat: chunking.Bdat) -> Reply | None:
        refused = self._not_in_transaction()
        if refused is not None:
            return refused
        assert self.principal is not None
        if not self.recipients:
            return replies.NEED_RCPT
        if not bdat.well_formed:
            return replies.BDAT_SYNTAX
        held = len(self.chunks) if self.chunks is not None else 0
        if bdat.size > self.principal.max_message_size - held:
            return replies.SIZE_EXCEEDED  # the total of the transaction's chunks is what is limited
        return None

    async def cmd_bdat(self, bdat: chunking.Bdat) -> Reply | None:
        """One chunk (RFC 3030 §2): `250` after a chunk, the acceptance reply after LAST."""
        refused = self._bdat_refusal(bdat)
        if refused is not None:
            if self.principal is None and bdat.size > self.cfg.limits.message_size:
                # Before AUTH no message can be sent: a stranger's chunk larger than the SIZE
                # advertised to it is not worth reading through.
                await self.close_with(refused, "bdat_unauthenticated")
            # RFC 3030 §2: read and discard the chunk, then refuse; the transaction has failed, so
            # chunks pipelined after it (§4.2) are discarded too (they meet "Need MAIL").
            await self._read_chunk(bdat.size, None)
            self._reset_transaction()
            return refused
        chunks = self.chunks = bytearray() if self.chunks is None else self.chunks
        if not bdat.last:
            await self._read_chunk(bdat.size, chunks)
            return replies.BDAT_CHUNK_OK.format(size=bdat.size)
        normalize = self.cfg.smtp.bare_newline == "normalize"

        async def read() -> bytes:
            await self._read_chunk(bdat.size, chunks)
            return chunking.settle(bytes(chunks), normalize=normalize)

        return await self._accept_message(read)

    async def _read_chunk(self, size: int, keep: bytearray | None) -> None:
        """Exactly `size` octets, added to `keep`, or read and dropped when it is None (memory then
        stays at one read); each read under the minimum data rate and the session deadline."""
        take = min(self.pending(), size)
        if take:
            if keep is not None:
                keep += self.buf[self.pos: self.pos + take]
            self.pos += take
        received = take
        started = time.monotonic()
        while received < size:
            timeout, reply, reason = self._data_timeout(started, received)
            # Never more than the chunk: what follows it (pipelined commands) stays in the stream.
            data = await self._read(min(DATA_READ_SIZE, size - received), timeout, reply, reason)
            if not data:
                raise _Close
            if keep is not None:
                keep += data
            received += len(data)

    def _tls_comment(self) -> str:
        # Computed once per session: the cipher does not change after the handshake.
        if self._tls_text is None:
            ssl_object = self.writer.get_extra_info("ssl_object")
            cipher = ssl_object.cipher() if ssl_object is not None else None
            self._tls_text = (
                f"\r\n\t(using {_HELO_SAFE.sub('', str(cipher[1]))} with cipher {_HELO_SAFE.sub('', cipher[0])})"
                if cipher else ""
            )
        return self._tls_text

    def _protocol(self) -> str:
        # RFC 6531 §3.7.3: the "with" of an internationalised transaction is UTF8SMTPSA.
        return "UTF8SMTPSA" if self.smtputf8 else "ESMTPSA"

    def _received(self) -> bytes:
        """The trace header (RFC 5321 §4.4), built only from sanitised or server-made values."""
        date = rfc5322_now()
        return (
            f"Received: from {self.helo or 'unknown'} ([{self.client_ip}])\r\n"
            f"\tby {self.cfg.server.hostname} (mailtrap-smtp) with {self._protocol()}{self._tls_comment()};\r\n"
            f"\t{date}\r\n"
        ).encode("ascii", "replace")

    def shutdown(self) -> None:
        """Stop accepting commands: idle sessions are told now, busy ones after their command."""
        self.closing = True
        if self.idle and not self.writer.is_closing():
            metrics.SMTP_SESSIONS_CLOSED.labels("shutdown").inc()
            self.writer.write(replies.SHUTTING_DOWN.wire())
            self.writer.close()


_HANDLERS: dict[str, Any] = {
    "EHLO": Session.cmd_ehlo,
    "HELO": Session.cmd_helo,
    "NOOP": Session.cmd_noop,
    "RSET": Session.cmd_rset,
    "QUIT": Session.cmd_quit,
    "HELP": Session.cmd_help,
    "VRFY": Session.cmd_vrfy,
    "EXPN": Session.cmd_expn,
    "STARTTLS": Session.cmd_starttls,
    "AUTH": Session.cmd_auth,
    "MAIL": Session.cmd_mail,
    "RCPT": Session.cmd_rcpt,
    "DATA": Session.cmd_data,
}
_JUNK = {"NOOP", "RSET", "VRFY", "HELP"}


def _is_bdat(line: bytes) -> bool:
    return line[:4].upper() == b"BDAT" and line[4:5] in (b" ", b"\r", b"\n")
  # Postfix smtpd_junk_command_limit
_NON_SMTP = {b"GET", b"POST", b"HEAD", b"PUT", b"CONNECT"}
