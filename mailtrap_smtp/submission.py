"""The single "accept one message" use case, shared by SMTP DATA and (later) the HTTP API.

Given an authenticated principal, an envelope whose sender domain the caller already checked with
`sender_domain()`, and the message bytes, `Submission.submit()`:

1. checks the content: line endings, line length, size;
2. finds exactly one `From:` header whose domain is a sending domain of the same account;
3. reads and strips `X-MT-Category` / `X-MT-Custom-Variables` (JSON object of at most 1000 bytes,
   otherwise ignored, as Mailtrap documents);
4. adds `Date` and `Message-ID` when missing and prepends the caller's trace header (`Received`);
5. DKIM-signs LAST (nothing touches the bytes after the signature is made);
6. stores it through `store.messages.AcceptBatcher` (group commit: ONE statement, its own
   transaction, for every message waiting): message + recipients + quota charge + Reception event.
   The message is accepted only once COMMIT returned; delivery workers are woken after it
   (coalesced NOTIFY).

Line-ending policy (DESIGN §3, SMTP smuggling): a message containing a bare CR, a bare LF or a NUL
anywhere is REJECTED (`BARE_LINE_ENDING`), never normalised. Normalising would turn a smuggled
`\\n.\\n` into a line break the sender's MTA never meant, and storing it would relay it; rejecting
is unambiguous, costs three C-level scans, and conforming clients (which must send CRLF, RFC 5321
§2.3.8) are unaffected. Lines longer than 998 characters (RFC 5322 §2.1.1) are rejected too.

Failures are `Rejected(reply_name)` where the name is a key of `replies.REPLIES`; protocol
adapters map names to their own wire form. Nothing here knows about SMTP sessions or sockets.
"""

from __future__ import annotations

import datetime as dt
import email.header
import email.utils
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import quota
from .auth import Principal, SenderPolicy
from .store import domains as domains_store
from .store import messages as messages_store
from .store import usage as usage_store

MAX_LINE = 998  # characters per line, CRLF excluded (RFC 5322 §2.1.1, RFC 5321 §4.5.3.1.6)
CUSTOM_VARIABLES_MAX = 1000
CATEGORY_MAX = 255

_STRIPPED = {b"x-mt-category", b"x-mt-custom-variables"}


class Rejected(Exception):
    """The message (or envelope) is refused; `reply` names an entry of `replies.REPLIES`."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class Signer:
    """What submission needs from DKIM signing (`signing.KeyStore` satisfies it)."""

    async def sign(self, message: bytes, domain: str) -> bytes:  # pragma: no cover - protocol
        raise NotImplementedError


DomainCheck = Callable[[str], Awaitable[int | None]]


_date_cache: tuple[int, str] = (-1, "")


def rfc5322_now() -> str:
    """The current time as an RFC 5322 date-time in UTC, formatted at most once per second."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, email.utils.format_datetime(dt.datetime.fromtimestamp(second, dt.UTC)))
    return _date_cache[1]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def check_line_endings(raw: bytes) -> None:
    """Reject bare CR, bare LF and NUL (see the module docstring)."""
    if b"\0" in raw:
        raise Rejected("BARE_LINE_ENDING")
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
        raise Rejected("BARE_LINE_ENDING")


def check_line_length(raw: bytes) -> None:
    """Reject any line over 998 characters; call after `check_line_endings` (all ends are CRLF).

    Strides a window of 1000 bytes (998 characters + CRLF) from one line start to the last LF in
    the window: a window without LF means the line that starts there is too long. About one C-level
    `rfind` per kilobyte, instead of one Python step per line.
    """
    n = len(raw)
    pos = 0
    window = MAX_LINE + 2
    rfind = raw.rfind
    while n - pos > MAX_LINE:  # a remainder this short cannot hold a too-long line
        last = rfind(b"\n", pos, pos + window)
        if last < 0:
            raise Rejected("TEXT_LINE_TOO_LONG")
        pos = last + 1


@dataclass
class ParsedHeader:
    fields: list[tuple[bytes, bytes]]  # (lower-case name, the whole raw field incl. folds and CRLF)
    rest: bytes  # everything after the header fields: b"" or the blank line and the body


def parse_header(raw: bytes) -> ParsedHeader:
    """Split the header section into raw fields without decoding the body (RFC 5322 §2.2)."""
    fields: list[tuple[bytes, bytes]] = []
    pos = 0
    n = len(raw)
    while pos < n:
        end = raw.find(b"\r\n", pos)
        end = n if end < 0 else end + 2
        line = raw[pos:end]
        if line in (b"\r\n", b""):
            break  # the blank line that ends the header section
        if line[:1] in (b" ", b"\t") and fields:
            name, whole = fields[-1]
            fields[-1] = (name, whole + line)
        else:
            colon = line.find(b":")
            name = line[:colon].rstrip(b" \t") if colon > 0 else b""
            if not name or any(c < 33 or c > 126 for c in name):
                break  # not a header field: the body starts here
            fields.append((name.lower(), line))
        pos = end
    rest = raw[pos:]
    if rest and not rest.startswith(b"\r\n"):
        rest = b"\r\n" + rest  # a malformed line ended the header: keep it, but in the body
    return ParsedHeader(fields, rest)


def field_value(whole: bytes) -> str:
    value = whole.partition(b":")[2]
    return value.replace(b"\r\n", b"").strip().decode("utf-8", "replace")


# The usual From: forms, "Name <local@domain>" and "local@domain", with nothing that RFC 5322
# parsing could read differently (quotes, comments, groups, lists, escapes): answered without the
# email package's full address parser, which costs more than the rest of the From: check.
_ATOMS = r"[^\s<>()\[\]\\,;:@\"]+"
_SIMPLE_FROM = re.compile(rf"[^<>()\[\]\\,;:@\"]*<({_ATOMS}@{_ATOMS})>\s*|\s*({_ATOMS}@{_ATOMS})\s*")


def _single_address(value: str) -> str | None:
    simple = _SIMPLE_FROM.fullmatch(value)
    if simple is not None:
        return simple.group(1) or simple.group(2)
    pairs = email.utils.getaddresses([value])
    if len(pairs) != 1:
        return None
    addr = pairs[0][1]
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c in domain for c in " <>()[],;:\\\""):
        return None
    return addr


def _decoded(value: str, limit: int = 998) -> str:
    if "=?" not in value:  # no RFC 2047 encoded word: nothing to decode
        return value.replace("\0", "")[:limit]
    try:
        text = str(email.header.make_header(email.header.decode_header(value)))
    except Exception:  # malformed encoded words: keep the raw text
        text = value
    return text.replace("\0", "")[:limit]


def _custom_variables(value: str) -> dict[str, Any] | None:
    if len(value.encode("utf-8")) > CUSTOM_VARIABLES_MAX:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


@dataclass(frozen=True)
class Accepted:
    message_id: uuid.UUID
    size: int
    recipients: int


class Submission:
    def __init__(self, pool: Any, signer: Any, *, hostname: str, require_approval: bool,
                 grace_seconds: float | None = None, statement_timeout: float = 0.0) -> None:
        self._pool = pool
        self._notifier = messages_store.QueueNotifier(pool)
        # A message never waits in the group commit's queue longer than the statement bound.
        self._batcher = messages_store.AcceptBatcher(pool, max_wait=statement_timeout)
        self._signer = signer
        self._hostname = hostname
        self._require_approval = require_approval
        self._grace_seconds = grace_seconds
        # Handed to `Authenticator.authenticate` so the AUTH query preloads the allowed domains.
        self.sender_policy = SenderPolicy(require_approval=require_approval, grace_seconds=grace_seconds)

    async def close(self) -> None:
        await self._batcher.close()
        await self._notifier.close()

    async def sender_domain(self, principal: Principal, domain: str) -> int | None:
        """The sending-domain id if this account may send from `domain` now (callers cache per session).

        Answered from `principal.sending_domains` when AUTH preloaded them (same rules, evaluated at
        AUTH for this session), else looked up.
        """
        if principal.sending_domains is not None:
            return principal.sending_domains.get(domain.lower())
        row = await domains_store.sending_domain(
            self._pool, principal.account_id, domain.lower(), require_approval=self._require_approval,
            grace_seconds=self._grace_seconds,
        )
        return None if row is None else int(row["id"])

    def expect(self) -> None:
        """A message is on its way to `submit(expected=True)` (lets the group commit wait for it)."""
        self._batcher.expect()

    def not_coming(self) -> None:
        """An expected message will not be submitted after all."""
        self._batcher.arrived()

    async def quota_remaining(self, principal: Principal) -> int:
        """Advisory: recipients the account may still send this period (the commit re-checks)."""
        period = quota.current_period(principal.billing_anchor_day)
        return principal.monthly_limit - await usage_store.used(self._pool, principal.account_id, period)

    async def submit(
        self,
        principal: Principal,
        *,
        mail_from: str,
        sender_domain_id: int | None,
        recipients: Sequence[str],
        raw: bytes,
        domain_check: DomainCheck,
        trace: bytes = b"",
        client_ip: str | None = None,
        expected: bool = False,
    ) -> Accepted:
        """Accept one message. With `expected`, the caller announced it with `expect()` and this call
        settles that announcement, whatever the outcome."""
        settled = not expected

        def settle() -> None:
            nonlocal settled
            if not settled:
                settled = True
                self._batcher.arrived()

        try:
            if len(raw) > principal.max_message_size:
                raise Rejected("SIZE_EXCEEDED")
            check_line_endings(raw)
            check_line_length(raw)
            parsed = parse_header(raw)

            froms = [whole for name, whole in parsed.fields if name == b"from"]
            if len(froms) != 1:
                raise Rejected("FROM_HEADER_MISMATCH")
            header_from = _single_address(field_value(froms[0]))
            if header_from is None:
                raise Rejected("FROM_HEADER_MISMATCH")
            from_domain = domain_of(header_from)
            if await domain_check(from_domain) is None:
                raise Rejected("FROM_HEADER_MISMATCH")

            category: str | None = None
            custom_variables: dict[str, Any] | None = None
            subject: str | None = None
            message_id_header: str | None = None
            has_date = False
            kept: list[bytes] = []
            for name, whole in parsed.fields:
                if name in _STRIPPED:
                    value = field_value(whole)
                    if name == b"x-mt-category":
                        category = _decoded(value, CATEGORY_MAX) or None
                    else:
                        custom_variables = _custom_variables(value)
                    continue
                if name == b"subject" and subject is None:
                    subject = _decoded(field_value(whole))
                elif name == b"message-id" and message_id_header is None:
                    message_id_header = field_value(whole)[:998] or None
                elif name == b"date":
                    has_date = True
                kept.append(whole)

            msg_id = uuid.uuid4()
            added: list[bytes] = []
            if not has_date:
                added.append(f"Date: {rfc5322_now()}\r\n".encode("ascii"))
            if message_id_header is None:
                message_id_header = f"<{msg_id}@{self._hostname}>"
                added.append(f"Message-ID: {message_id_header}\r\n".encode("ascii"))
            message = b"".join([trace, *kept, *added, parsed.rest])

            # DKIM last: after this line the bytes are final (DESIGN §2 step 6).
            signed = await self._signer.sign(message, from_domain)

            new = messages_store.NewMessage(
                id=msg_id, account_id=principal.account_id, credential_id=principal.credential_id,
                domain_id=sender_domain_id, stream=principal.stream, mail_from=mail_from,
                header_from=header_from, subject=subject, message_id_header=message_id_header,
                category=category, custom_variables=custom_variables, client_ip=client_ip,
                raw=signed, recipients=list(recipients),
            )
            period = quota.current_period(principal.billing_anchor_day)
            settle()  # handed over now: the group commit stops waiting for it as "on its way"
            try:
                # Group commit: one statement and one commit for every message waiting; returns once
                # this message is committed (synchronous_commit=on).
                await self._batcher.accept(new, period)
            except messages_store.QuotaExceeded:
                raise Rejected("QUOTA_EXCEEDED") from None
            self._notifier.poke()
            return Accepted(message_id=msg_id, size=len(signed), recipients=len(recipients))
        finally:
            settle()
