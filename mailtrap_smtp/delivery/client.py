"""The outbound SMTP client: one connection to one remote MX, several transactions on it.

Built on aiosmtplib (>= 5.1.2, which refuses control characters in command arguments and fixed the
STARTTLS response-injection bug), driven command by command so that every recipient gets its own
outcome (RFC 5321 §3.3: RCPT replies are per recipient, the DATA reply covers the accepted ones).

TLS policy:
* STARTTLS is used whenever the server offers it (RFC 3207). Without a TLS requirement the
  certificate is NOT verified: this is opportunistic security (RFC 7435 §1.3, and RFC 3207 §4.1 /
  RFC 7672 §1.3 for SMTP): MX certificates are very often self-signed or for another name, the MX
  host name comes from unauthenticated DNS anyway, and refusing an unverifiable certificate would
  only push the mail to cleartext, which protects nothing. Encrypting without authenticating still
  defeats passive eavesdropping. If the TLS handshake itself fails, the address is retried once in
  cleartext, again per RFC 7435 ("fall back to cleartext"), unless TLS is required.
* When TLS is required (`require_tls` / `require_tls_domains`), a server that does not offer
  STARTTLS gets nothing, and the certificate is verified against the MX host name (or the route's
  host), because an unauthenticated channel is exactly what a requirement is meant to exclude.

The message goes with one `BDAT <size> LAST` when the server offers CHUNKING (RFC 3030): the stored
bytes as they are, no dot-stuffing and no scan for a terminator; otherwise with DATA, dot-stuffed.
Both carry the same octets to the remote store, so the DKIM signature made at acceptance verifies
either way.

The envelope is validated before any byte goes out: an address carrying a control character (CR,
LF, NUL...) can only be an attempt at command injection and fails permanently without a connection.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import dns.exception
import dns.name

from ..headers import header_bytes, parse_header
from . import bounces

log = logging.getLogger(__name__)

# RFC 5321 §4.1.2 / RFC 6531 §3.3: no control characters anywhere in a path; the characters that
# would end the path or start a parameter on the command line are refused as well.
_BAD_ADDRESS_CHARS = re.compile(r"[\x00-\x20\x7f<>]")
_MAX_PATH = 256  # RFC 5321 §4.5.3.1.3


def envelope_problem(address: str, *, sender: bool = False) -> str | None:
    """Why this address cannot be put on a MAIL/RCPT line, or None when it can."""
    if sender and address == "":
        return None  # the null reverse-path <> (RFC 5321 §4.5.5)
    if _BAD_ADDRESS_CHARS.search(address):
        return "address contains a control character, space or angle bracket"
    if len(address.encode("utf-8")) > _MAX_PATH:
        return "address too long"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "address is not local@domain"
    return None


# RFC 6531 §3.2: what cannot be sent without SMTPUTF8 is not sent; the recipient bounces with X.6.7
# (RFC 5248 "Non-ASCII addresses not permitted for that sender/recipient"). Our own words, recorded
# as the bounce's reply; `{mx}` is the host name from DNS or the route, `{why}` one of _UTF8_WHY.
SMTPUTF8_NOT_OFFERED = "553 5.6.7 SMTPUTF8 required but not offered by {mx}: {why} (RFC 6531)"
_UTF8_WHY_RECIPIENT = "the recipient address has a non-ASCII local part"
_UTF8_WHY_SENDER = "the sender address has a non-ASCII local part"
_UTF8_WHY_HEADERS = "the message has UTF-8 header fields (RFC 6532)"


def wire_address(address: str) -> str:
    """The address as sent: an internationalised domain with an ASCII local part goes as its A-label.

    That needs no SMTPUTF8 (RFC 5890 §2.3.2.1: A-labels are plain ASCII); only a non-ASCII local part
    does (RFC 6531).
    """
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii() or not local.isascii():
        return address
    try:
        ace = dns.name.from_text(domain.rstrip(".") + ".").to_text(omit_final_dot=True)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return address
    return f"{local}@{ace}"


@dataclass(frozen=True)
class Utf8Plan:
    """How one transaction treats SMTPUTF8 (RFC 6531): MAIL options, the command encoding, and the
    recipients that cannot be sent to this server (recipient → the bounce's reply)."""

    options: list[str]
    encoding: str
    refused: dict[str, str]


def utf8_plan(mail_from: str, wire: dict[str, str], *, message_needs: bool, offered: bool,
              utf8_headers: Callable[[], bool], mx: str) -> Utf8Plan:
    """`wire`: recipient → address as sent. `message_needs`: the stored verdict of acceptance
    (`messages.smtputf8`); a non-ASCII sender or recipient local part needs it regardless.
    ASCII-only transactions are unchanged: SMTPUTF8 is then asked for only when offered and the
    header fields are 8-bit (`utf8_headers`, RFC 6531 §3.4), as before."""
    sender_needs = not wire_address(mail_from).rpartition("@")[0].isascii()
    whole = message_needs or sender_needs
    needing = [r for r, w in wire.items() if whole or not w.rpartition("@")[0].isascii()]
    if needing and offered:
        return Utf8Plan(["SMTPUTF8"], "utf-8", {})
    if needing:
        def why(r: str) -> str:
            if not wire[r].rpartition("@")[0].isascii():
                return _UTF8_WHY_RECIPIENT
            return _UTF8_WHY_SENDER if sender_needs else _UTF8_WHY_HEADERS
        return Utf8Plan([], "ascii", {r: SMTPUTF8_NOT_OFFERED.format(mx=mx, why=why(r)) for r in needing})
    if offered and utf8_headers():
        return Utf8Plan(["SMTPUTF8"], "ascii", {})
    return Utf8Plan([], "ascii", {})


@dataclass(frozen=True)
class Target:
    """One address to connect to: `name` is the MX (or route) host name, used for SNI and verification."""

    name: str
    address: str
    port: int


@dataclass
class RcptResult:
    rcpt: str
    code: int   # 2xx accepted, 4xx/5xx refused; 0 when the connection broke before a reply
    reply: str  # the full reply line(s), "code text", or a local description

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


class StaleConnection(Exception):
    """A reused connection turned out closed at MAIL: nothing was sent; open a new one and retry."""


class ConnectFailed(Exception):
    """No target could be used; `reply` is the last reason, `mx` the last host tried (None: none was)."""

    def __init__(self, reply: str, category: str, mx: str | None = None) -> None:
        super().__init__(reply)
        self.reply = reply
        self.category = category
        self.mx = mx
        self.tls_policy: dict[str, Any] = {}  # set by delivery/tlspolicy.py: what was required and why
        self.bounce = ""  # set by delivery/tlspolicy.py: REQUIRETLS not met, return with this status (RFC 8689)


@functools.cache
def opportunistic_context() -> ssl.SSLContext:
    """TLS without authentication (RFC 7435); still TLS 1.2+ and the default cipher choice.

    Built once: loading the system trust store costs tens of milliseconds per context.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@functools.cache
def verifying_context(cafile: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _reply_text(code: int, message: str) -> str:
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    return f"{code} {text}".strip()


@dataclass
class RemoteSession:
    """An open, greeted (and, when offered, encrypted) SMTP connection to a remote MX.

    The outbound side; a client's session with us is `smtp.session.Session`.
    """

    smtp: aiosmtplib.SMTP
    target: Target
    tls_version: str | None
    transactions: int = 0
    broken: bool = field(default=False)
    tls_policy: dict[str, Any] = field(default_factory=dict)  # delivery/tlspolicy.py's outcome
    mail_options: list[str] = field(default_factory=list)  # delivery/tlspolicy.py's: REQUIRETLS (RFC 8689)
    _dirty: bool = field(default=False)  # a transaction was left open (needs RSET)

    @property
    def mx(self) -> str:
        return self.target.name

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes, *,
                   smtputf8: bool = False) -> list[RcptResult]:
        """One transaction: MAIL, RCPT per recipient, the message once (`_transfer`: BDAT or DATA);
        one result per recipient.

        `smtputf8`: the message needs SMTPUTF8 (`messages.smtputf8`); see `utf8_plan` for what
        happens when this server does not offer it.
        """
        smtp = self.smtp
        wire = {r: wire_address(r) for r in rcpts}
        utf8 = utf8_plan(mail_from, wire, message_needs=smtputf8, offered=smtp.supports_extension("smtputf8"),
                         utf8_headers=lambda: not header_bytes(parse_header(raw)).isascii(), mx=self.mx)
        refused = {r: RcptResult(r, 553, text) for r, text in utf8.refused.items()}
        sendable = [r for r in rcpts if r not in refused]
        if not sendable:
            return [refused[r] for r in rcpts]  # nothing sent: the connection stays as it was
        sent = await self._transaction(wire_address(mail_from), sendable, wire, raw, utf8)
        results = dict(zip(sendable, sent, strict=True))
        return [refused[r] if r in refused else results[r] for r in rcpts]

    async def _transaction(self, mail_from: str, rcpts: list[str], wire: dict[str, str], raw: bytes,
                           utf8: Utf8Plan) -> list[RcptResult]:
        smtp = self.smtp
        results: dict[str, RcptResult] = {}
        reused = self.transactions > 0
        self.transactions += 1
        self._dirty = True
        options = list(utf8.options)
        encoding = utf8.encoding
        if not raw.isascii() and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")  # RFC 6152
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(raw)}")  # RFC 1870: lets the server refuse before DATA
        options.extend(self.mail_options)
        try:
            try:
                await smtp.mail(mail_from, options=options, encoding=encoding)
            except aiosmtplib.SMTPResponseException as e:
                text = _reply_text(e.code, e.message)
                self.broken = self.broken or e.code == 421  # RFC 5321 §3.8: closing the channel
                if reused and e.code == 421:
                    raise StaleConnection(text) from e  # e.g. a messages-per-connection limit
                return [RcptResult(r, e.code, text) for r in rcpts]
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as e:
                if reused:
                    self.broken = True
                    raise StaleConnection(_describe(e)) from e  # hung up while idle between messages
                raise
            accepted: list[str] = []
            for r in rcpts:
                try:
                    resp = await smtp.rcpt(wire[r], encoding=encoding)
                    accepted.append(r)
                    results[r] = RcptResult(r, resp.code, _reply_text(resp.code, resp.message))
                except aiosmtplib.SMTPResponseException as e:
                    results[r] = RcptResult(r, e.code, _reply_text(e.code, e.message))
                    if e.code == 421:  # RFC 5321 §3.8: the server is closing the channel
                        raise
            if not accepted:
                return [results[r] for r in rcpts]
            try:
                resp = await self._transfer(raw)
                final = RcptResult("", resp.code, _reply_text(resp.code, resp.message))
                self._dirty = False
            except aiosmtplib.SMTPResponseException as e:
                final = RcptResult("", e.code, _reply_text(e.code, e.message))
                self.broken = self.broken or e.code == 421
                # Refused at DATA or after it: RSET before the next transaction, to be safe.
            for r in accepted:
                results[r] = RcptResult(r, final.code, final.reply)
            return [results[r] for r in rcpts]
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as e:
            self.broken = True
            why = _describe(e)
            out = []
            for r in rcpts:
                prior = results.get(r)
                if prior is not None and not prior.ok:
                    out.append(prior)  # a refusal already received stands
                else:
                    out.append(RcptResult(r, 0, f"connection lost: {why}"))
            return out

    async def _transfer(self, raw: bytes) -> aiosmtplib.SMTPResponse:
        """The message after the accepted RCPTs: BDAT when offered, else DATA.

        DATA: the server's dot-unstuffing (RFC 5321 §4.5.2) gives back exactly `raw`: aiosmtplib's
        `data()` doubles every leading dot, including that of a lone "." line a bare-LF client left
        inside a message (smtp/datareader.py), so stored text never ends the remote DATA early;
        `raw` has CRLF line ends only (submission refuses anything else), so the bytes DKIM signed
        are the bytes sent.
        """
        if self.smtp.supports_extension("chunking"):
            return await self._bdat(raw)
        return await self.smtp.data(raw)

    async def _bdat(self, raw: bytes) -> aiosmtplib.SMTPResponse:
        """The whole message as one `BDAT <n> LAST` chunk (RFC 3030 §2), then its one reply.

        aiosmtplib has no BDAT: the command line and the octets are written together (the server
        answers only after the chunk) through the protocol's own `write`, and the reply read with
        `read_response`, which arms the reply before any await, so nothing is read in between.
        One chunk: the message is in memory already, and each further chunk would cost a round trip
        unless pipelined; a refusal of a single chunk is the transaction's refusal.
        """
        smtp = self.smtp
        protocol = smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            protocol.write(b"BDAT %d LAST\r\n" % len(raw))
            protocol.write(raw)
            resp = await protocol.read_response(timeout=smtp.timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            smtp.close()  # as aiosmtplib does: a reply given up on would be paired with the next command
            raise
        if resp.code != 250:
            raise aiosmtplib.SMTPDataError(resp.code, resp.message)
        return resp

    async def reset(self) -> bool:
        """Ready the connection for the next transaction; False: unusable, open a new one.

        No RSET after a completed transaction: the DATA reply ends it (RFC 5321 §4.1.1.4), and a
        round trip per message is what a busy queue can least afford. RSET only after a transaction
        that stopped before DATA (RFC 5321 §4.1.1.5).
        """
        if self.broken or not self.smtp.is_connected:
            self.broken = True
            return False
        if not self._dirty:
            return True
        try:
            await self.smtp.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as e:
            log.debug("RSET to %s failed (%s); reconnecting", self.target.name, _describe(e))
            self.broken = True
            return False
        self._dirty = False
        return True

    async def close(self) -> None:
        try:
            if not self.broken and self.smtp.is_connected:
                await asyncio.wait_for(self.smtp.quit(), 5)
        except Exception as e:
            # Best effort: every transaction's outcome is already recorded.
            log.debug("QUIT to %s failed: %s", self.target.name, _describe(e))
        finally:
            self.smtp.close()


def _describe(e: BaseException) -> str:
    if isinstance(e, aiosmtplib.SMTPResponseException):
        return _reply_text(e.code, e.message)
    if isinstance(e, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timeout"
    text = str(e) or type(e).__name__
    return text.replace("\r", " ").replace("\n", " ")


async def open_session(targets: list[Target], *, helo: str, require_tls: bool,
                       verify_context: ssl.SSLContext | None, connect_timeout: float,
                       command_timeout: float, tls_context: ssl.SSLContext | None = None,
                       check_peer: Callable[[Target, Any], str | None] | None = None) -> RemoteSession:
    """Connect to the first target that works, in order (RFC 5321 §5.1: MX order, then addresses).

    `tls_context` replaces the context the rules above choose, and `check_peer(target, ssl_object)`
    judges the handshake (a reason string refuses it): DANE (delivery/dane.py) needs both.
    Raises ConnectFailed with the last reason when none does.
    """
    last = "no address to connect to"
    tried: str | None = None
    category = bounces.CONNECTION_FAILURE
    opportunistic = opportunistic_context()
    for t in targets:
        tried = t.name
        for use_tls in (True, False):
            if not use_tls and require_tls:
                break
            smtp = aiosmtplib.SMTP(hostname=t.address, port=t.port, local_hostname=helo,
                                   timeout=command_timeout, start_tls=False, use_tls=False)
            try:
                await smtp.connect(timeout=connect_timeout)
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()  # a pre-ESMTP server (RFC 5321 §3.2)
                tls_version = None
                if use_tls and smtp.supports_extension("starttls"):
                    ctx = tls_context or (verify_context if (require_tls and verify_context is not None) else (
                        verifying_context() if require_tls else opportunistic))
                    try:
                        await smtp.starttls(server_hostname=t.name, tls_context=ctx)
                    except (ssl.SSLError, ssl.CertificateError, aiosmtplib.SMTPResponseException,
                            aiosmtplib.SMTPServerDisconnected) as e:
                        raise _TlsFailed(_describe(e)) from e
                    problem = check_peer(t, smtp.get_transport_info("ssl_object")) if check_peer else None
                    if problem:
                        raise _TlsFailed(problem)
                    await smtp.ehlo()  # RFC 3207 §4.2: forget what was said before TLS
                    ssl_object = smtp.get_transport_info("ssl_object")
                    tls_version = ssl_object.version() if ssl_object is not None else "unknown"
                elif require_tls:
                    last = f"TLS required but not offered by {t.name} [{t.address}]"
                    category = bounces.TLS_REQUIRED
                    smtp.close()
                    break
                return RemoteSession(smtp, t, tls_version)
            except _TlsFailed as e:
                smtp.close()
                last = f"TLS handshake with {t.name} [{t.address}] failed: {e}"
                category = bounces.TLS_REQUIRED if require_tls else bounces.CONNECTION_FAILURE
                continue  # cleartext retry of the same address unless TLS is required
            except aiosmtplib.SMTPResponseException as e:
                smtp.close()
                last = f"{t.name} [{t.address}]: {_reply_text(e.code, e.message)}"
                category = bounces.CONNECTION_FAILURE
                break
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as e:
                smtp.close()
                last = f"cannot connect to {t.name} [{t.address}]:{t.port}: {_describe(e)}"
                category = bounces.CONNECTION_FAILURE
                break
    raise ConnectFailed(last, category, tried)


class _TlsFailed(Exception):
    pass
