"""The single "accept one message" use case, shared by SMTP DATA and (later) the HTTP API.

Given an authenticated principal, an envelope whose sender domain the caller already checked with
`sender_domain()`, and the message bytes, `Submission.submit()`:

1. checks the content: line endings, line length, size, and that the header of internationalised
   mail is UTF-8 (`check_header_utf8`, RFC 6532 §3);
2. finds exactly one `From:` header whose domain is a sending domain of the same account;
3. reads and strips `X-MT-Category` / `X-MT-Custom-Variables` (JSON object of at most 1000 bytes,
   otherwise ignored, as Mailtrap documents);
4. adds `Date` and `Message-ID` when missing and prepends the caller's trace header (`Received`);
   adds the one-click `List-Unsubscribe` headers to bulk messages of accounts that enabled them
   (`list_unsubscribe.py`: why a single recipient only);
5. DKIM-signs LAST (nothing touches the bytes after the signature is made);
6. stores it through `store.messages.AcceptBatcher` (group commit: ONE statement, its own
   transaction, for every message waiting): message + recipients + quota charge + Reception event.
   The message is accepted only once COMMIT returned; delivery workers are woken after it
   (coalesced NOTIFY).

Line-ending policy (DESIGN §3, SMTP smuggling): a message containing a bare CR, a bare LF or a NUL
anywhere is REJECTED (`BARE_LINE_ENDING`), never normalised here. The SMTP DATA reader
(`smtp/datareader.py`) has already turned bare-LF lines into CRLF lines when configured to
(`smtp.bare_newline`), after finding the one true terminator; this check is the safety net on what
any adapter hands in, so stray line endings are never stored nor relayed. Lines longer than 998
characters (RFC 5322 §2.1.1) are rejected too.

Failures are `Rejected(Outcome.X)` (`outcomes.py`); each adapter maps outcomes to its own wire
form. A database that does not answer becomes `Outcome.TEMPORARILY_UNAVAILABLE`, never an asyncpg
exception in an adapter. An adapter makes one call per message: `receive()` when the bytes are still
arriving (SMTP DATA: the group commit may wait for them), `submit()` when they are in hand (HTTP).
Nothing here knows about SMTP sessions or sockets.
"""

from __future__ import annotations

import datetime as dt
import email.header
import email.utils
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import idempotency, mailbox, permissions, quota
from .auth import DB_ERRORS, Principal, SenderPolicy
from .headers import ParsedHeader, field_value, parse_header
from .list_unsubscribe import ListUnsubscribe
from .list_unsubscribe import wanted as unsubscribe_wanted
from .outcomes import Outcome, Rejected
from .store import domains as domains_store
from .store import messages as messages_store
from .store import usage as usage_store

MAX_LINE = 998  # characters per line, CRLF excluded (RFC 5322 §2.1.1, RFC 5321 §4.5.3.1.6)
CUSTOM_VARIABLES_MAX = 1000
CATEGORY_MAX = 255

_STRIPPED = {b"x-mt-category", b"x-mt-custom-variables"}

log = logging.getLogger(__name__)

__all__ = ["Accepted", "Envelope", "Outcome", "Rejected", "Submission"]


_date_cache: tuple[int, str] = (-1, "")


def rfc5322_now() -> str:
    """The current time as an RFC 5322 date-time in UTC, formatted at most once per second."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, email.utils.format_datetime(dt.datetime.fromtimestamp(second, dt.UTC)))
    return _date_cache[1]


def domain_of(address: str) -> str:
    """The address's domain in lower-case A-labels: how sending domains are stored, DKIM's `d=`
    is written (RFC 8616 §4) and DNS is asked (`mailbox.a_label`)."""
    return mailbox.a_label(address.rpartition("@")[2])


def needs_smtputf8(envelope: Envelope, fields: Iterable[bytes]) -> bool:
    """Whether the message itself needs SMTPUTF8 at its next hop, whatever the recipient (RFC 6531).

    A sender with a non-ASCII local part has no ASCII form (§3.2: only domains can be converted).
    UTF-8 header fields (RFC 6532) need it when the client declared internationalised mail; from a
    client that did not, 8-bit header bytes are its own doing and are relayed as before (as
    Postfix relays mail that was not received with SMTPUTF8). Recipients are judged one by one at
    delivery (`delivery/client.py`), so an ASCII recipient is not bounced for another's address.
    """
    if not mailbox.local_part_is_ascii(envelope.mail_from):
        return True
    return envelope.smtputf8 and not all(whole.isascii() for whole in fields)


def check_header_utf8(envelope: Envelope, fields: Iterable[tuple[bytes, bytes]]) -> None:
    """Reject internationalised mail whose header fields are not valid UTF-8 (RFC 6532 §3: they
    are UTF-8, RFC 3629, strictly: no stray bytes, overlong forms, surrogates or code points past
    U+10FFFF). Mail that did not declare SMTPUTF8 keeps its 8-bit header bytes as before (see
    `needs_smtputf8`); the body is MIME's business, not this check's."""
    if not envelope.smtputf8:
        return
    for _, whole in fields:
        if not whole.isascii():
            try:
                whole.decode("utf-8")
            except UnicodeDecodeError:
                raise Rejected(Outcome.HEADER_NOT_UTF8) from None


_CR_MARKS = bytes(1 if b == 0x0D else 0 for b in range(256))
_LF_MARKS = bytes(1 if b == 0x0A else 0 for b in range(256))


def check_line_endings(raw: bytes) -> None:
    """Reject bare CR, bare LF and NUL (see the module docstring).

    Every CR is followed by an LF and every LF preceded by a CR exactly when the map of CR
    positions, moved one byte on, is the map of LF positions: two `translate`s and one comparison
    in C, half the time of counting CRLF pairs (a two-byte search) beside CRs and LFs.
    """
    if b"\0" in raw:
        raise Rejected(Outcome.BARE_LINE_ENDING)
    if not raw:
        return
    cr, lf = raw.translate(_CR_MARKS), raw.translate(_LF_MARKS)
    if lf[0] or cr[-1] or cr[:-1] != lf[1:]:
        raise Rejected(Outcome.BARE_LINE_ENDING)


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
            raise Rejected(Outcome.TEXT_LINE_TOO_LONG)
        pos = last + 1


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


class Signer(Protocol):
    """What submission needs from DKIM signing (`signing.KeyStore` satisfies it)."""

    async def sign(self, message: bytes, domain: str) -> bytes: ...


@dataclass(frozen=True)
class Envelope:
    """Who the message is from and to, as the adapter received it (SMTP MAIL/RCPT, or the JSON)."""

    mail_from: str
    sender_domain_id: int | None  # from `Submission.sender_domain(principal, domain of mail_from)`
    recipients: Sequence[str]
    client_ip: str | None = None
    trace: bytes = b""  # the adapter's trace header (`Received:`), prepended before signing
    smtputf8: bool = False  # internationalised mail declared (SMTP's SMTPUTF8, RFC 6531 §3.4; the API)
    requiretls: bool = False  # the client asked for REQUIRETLS (RFC 8689 §4.3: SMTP `MAIL ... REQUIRETLS`)


@dataclass(frozen=True)
class _Built:
    """The final (signed) bytes and the facts stored beside them."""

    id: uuid.UUID
    raw: bytes
    subject: str | None
    message_id_header: str | None
    category: str | None
    custom_variables: dict[str, Any] | None
    smtputf8: bool  # `needs_smtputf8` of the final header fields


def idempotency_key(parsed: ParsedHeader) -> str | None:
    """The message's `X-Idempotency-Key`, None without one; Rejected if it is not a valid key."""
    values = [field_value(whole) for name, whole in parsed.fields if name == b"x-idempotency-key"]
    if not values:
        return None
    if len(values) != 1 or not idempotency.valid_key(values[0]):
        raise Rejected(Outcome.IDEMPOTENCY_KEY_INVALID)
    return values[0]


def tls_required(principal: Principal, envelope: Envelope, parsed: ParsedHeader) -> bool | None:
    """What the sender asked of every hop's TLS (stored as `messages.tls_required`).

    True: REQUIRETLS, asked by the client (RFC 8689 §4.3) or by the account's `require_tls` option.
    False: the header field `TLS-Required: No` (RFC 8689 §3, §4.2.2: deliver even where the
    recipient's MTA-STS or DANE policy cannot be met); it never weakens a REQUIRETLS request: with
    REQUIRETLS the header is ignored (RFC 8689 §3). None: neither. The header stays in the message:
    later hops read it too.
    """
    if envelope.requiretls or principal.require_tls:
        return True
    values = [field_value(whole).strip().lower() for name, whole in parsed.fields if name == b"tls-required"]
    return False if "no" in values else None


async def _forget(pool: Any, credential_id: int, key: str) -> None:
    try:
        await idempotency.release(pool, credential_id, key)
    except DB_ERRORS:
        log.warning("idempotency key not released", exc_info=True)


@dataclass(frozen=True)
class Accepted:
    message_id: uuid.UUID
    size: int
    recipients: int
    # One public id per envelope recipient, in the order given (the send API's `message_ids`).
    recipient_ids: tuple[uuid.UUID, ...] = ()


class Submission:
    def __init__(self, pool: Any, signer: Signer, *, hostname: str, require_approval: bool,
                 grace_seconds: float | None = None, statement_timeout: float = 0.0,
                 list_unsubscribe: ListUnsubscribe | None = None) -> None:
        self._pool = pool
        self.list_unsubscribe = list_unsubscribe  # None: no List-Unsubscribe headers are added
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
        """The sending-domain id if this token may send from `domain` now, else None: a domain of
        its account that may send, in the token's scope (`permissions.in_scope`).

        The one home of the rule for the envelope sender and the `From:` header alike. Answered
        from `principal.sending_domains` when AUTH preloaded them (same rules, evaluated at AUTH),
        else looked up.
        """
        domain = mailbox.a_label(domain)  # `bücher.example` is the stored `xn--bcher-kva.example`
        if principal.sending_domains is not None:
            return principal.sending_domains.get(domain)
        try:
            row = await domains_store.sending_domain(
                self._pool, principal.account_id, domain, require_approval=self._require_approval,
                grace_seconds=self._grace_seconds,
            )
        except DB_ERRORS:
            log.warning("sender domain check failed", exc_info=True)
            raise Rejected(Outcome.TEMPORARILY_UNAVAILABLE) from None
        if row is None or not permissions.in_scope(principal, int(row["id"])):
            return None
        return int(row["id"])

    async def quota_remaining(self, principal: Principal) -> int:
        """Advisory: recipients the account may still send this period (the commit re-checks)."""
        period = quota.current_period(principal.billing_anchor_day)
        try:
            used = await usage_store.used(self._pool, principal.account_id, period)
        except DB_ERRORS:
            log.warning("quota check failed", exc_info=True)
            raise Rejected(Outcome.TEMPORARILY_UNAVAILABLE) from None
        return principal.monthly_limit - used

    async def receive(self, principal: Principal, envelope: Envelope,
                      read: Callable[[], Awaitable[bytes]]) -> Accepted:
        """Accept one message whose bytes are still arriving (`read` returns them or raises).

        Announced to the group commit while it is read, so that a commit about to start waits a
        moment for it instead of committing without it (store/messages.py `AcceptBatcher`).
        """
        self._batcher.expect()
        settled = False

        def settle() -> None:
            nonlocal settled
            if not settled:
                settled = True
                self._batcher.stop_expecting()

        try:
            raw = await read()
            return await self._accept(principal, envelope, raw, settle)
        finally:
            settle()

    async def submit(self, principal: Principal, envelope: Envelope, raw: bytes) -> Accepted:
        """Accept one message whose bytes are all in hand."""
        return await self._accept(principal, envelope, raw, lambda: None)

    async def _accept(self, principal: Principal, envelope: Envelope, raw: bytes,
                      handed_over: Callable[[], None]) -> Accepted:
        # AUTH for sending already refused such a token; this holds for every adapter regardless.
        if not permissions.may_send(principal, principal.stream):
            raise Rejected(Outcome.NOT_PERMITTED)
        if len(raw) > principal.max_message_size:
            raise Rejected(Outcome.SIZE_EXCEEDED)
        check_line_endings(raw)
        check_line_length(raw)
        parsed = parse_header(raw)
        check_header_utf8(envelope, parsed.fields)
        header_from, from_domain = await self._header_from(principal, parsed)
        key = idempotency_key(parsed)
        if key is None:
            return await self._sign_and_store(principal, envelope, parsed, header_from, from_domain, handed_over)
        # X-Idempotency-Key: the first message with the key is accepted, a repeat within 24 h gets its
        # answer again and nothing is stored or charged (`idempotency.py`). SMTP keys are apart from
        # the API's `Idempotency-Key` (whose kept answer is an HTTP response).
        scoped = "smtp:" + key
        claimed = await idempotency.claim(self._pool, principal.credential_id, scoped)
        if claimed.claim is idempotency.Claim.REPLAY:
            first = claimed.response
            ids = tuple(uuid.UUID(i) for i in first["recipient_ids"])
            return Accepted(message_id=uuid.UUID(first["message_id"]), size=int(first["size"]),
                            recipients=len(ids), recipient_ids=ids)
        if claimed.claim is idempotency.Claim.IN_FLIGHT:
            raise Rejected(Outcome.IDEMPOTENCY_IN_FLIGHT)
        try:
            accepted = await self._sign_and_store(principal, envelope, parsed, header_from, from_domain, handed_over)
        except BaseException:
            # Refusals and failures are not kept: the same message, fixed (or once the quota
            # allows), may be sent with the same key.
            await _forget(self._pool, principal.credential_id, scoped)
            raise
        try:
            await idempotency.finish(self._pool, principal.credential_id, scoped, 250, {
                "message_id": str(accepted.message_id), "size": accepted.size,
                "recipient_ids": [str(i) for i in accepted.recipient_ids]})
        except DB_ERRORS:  # the key stays in flight: a repeat is refused (451), never stored twice
            log.warning("idempotency key not recorded", exc_info=True)
        return accepted

    async def _sign_and_store(self, principal: Principal, envelope: Envelope, parsed: ParsedHeader,
                              header_from: str, from_domain: str, handed_over: Callable[[], None]) -> Accepted:
        """Sign the message and store it with its recipients, quota charge and event (one statement)."""
        msg_id = uuid.uuid4()
        recipient_ids = [uuid.uuid4() for _ in envelope.recipients]
        extra: list[bytes] = []
        if self.list_unsubscribe is not None and unsubscribe_wanted(
                principal.stream, principal.list_unsubscribe, len(recipient_ids)):
            extra = self.list_unsubscribe.headers(msg_id, recipient_ids[0])
        built = await self._finish(parsed, from_domain, envelope, msg_id, extra)
        new = messages_store.NewMessage(
            id=built.id, account_id=principal.account_id, credential_id=principal.credential_id,
            domain_id=envelope.sender_domain_id, stream=principal.stream, mail_from=envelope.mail_from,
            header_from=header_from, subject=built.subject, message_id_header=built.message_id_header,
            category=built.category, custom_variables=built.custom_variables,
            client_ip=envelope.client_ip, raw=built.raw, recipients=list(envelope.recipients),
            recipient_ids=recipient_ids, smtputf8=built.smtputf8,
            tls_required=tls_required(principal, envelope, parsed),
        )
        period = quota.current_period(principal.billing_anchor_day)
        handed_over()  # the group commit stops waiting for it as "on its way"
        try:
            # Group commit: one statement and one commit for every message waiting; returns once
            # this message is committed (synchronous_commit=on).
            await self._batcher.accept(new, period)
        except messages_store.QuotaExceeded:
            raise Rejected(Outcome.QUOTA_EXCEEDED) from None
        except DB_ERRORS:
            log.warning("storing a message failed", exc_info=True)
            raise Rejected(Outcome.TEMPORARILY_UNAVAILABLE) from None
        self._notifier.poke()
        return Accepted(message_id=built.id, size=len(built.raw), recipients=len(envelope.recipients),
                        recipient_ids=tuple(new.recipient_ids))

    async def _header_from(self, principal: Principal, parsed: ParsedHeader) -> tuple[str, str]:
        """The one `From:` address and its domain, which must be a sending domain of the account."""
        froms = [whole for name, whole in parsed.fields if name == b"from"]
        if len(froms) != 1:
            raise Rejected(Outcome.FROM_HEADER_COUNT)
        header_from = _single_address(field_value(froms[0]))
        if header_from is None:
            raise Rejected(Outcome.FROM_HEADER_MISMATCH)
        from_domain = domain_of(header_from)
        if await self.sender_domain(principal, from_domain) is None:
            raise Rejected(Outcome.FROM_HEADER_MISMATCH)
        return header_from, from_domain

    async def _finish(self, parsed: ParsedHeader, from_domain: str, envelope: Envelope, msg_id: uuid.UUID,
                      unsubscribe: list[bytes]) -> _Built:
        """Strip our X-MT-* headers, add Date/Message-ID when missing and the `unsubscribe` headers
        unless the message has its own List-Unsubscribe, DKIM-sign last."""
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
            elif name in (b"list-unsubscribe", b"list-unsubscribe-post"):
                unsubscribe = []
            kept.append(whole)

        added: list[bytes] = list(unsubscribe)
        if not has_date:
            added.append(f"Date: {rfc5322_now()}\r\n".encode("ascii"))
        if message_id_header is None:
            message_id_header = f"<{msg_id}@{self._hostname}>"
            added.append(f"Message-ID: {message_id_header}\r\n".encode("ascii"))
        message = b"".join([envelope.trace, *kept, *added, parsed.rest])

        # DKIM last: after this line the bytes are final (DESIGN §2 step 6).
        signed = await self._signer.sign(message, from_domain)
        utf8 = needs_smtputf8(envelope, kept)  # what we add is ASCII
        return _Built(msg_id, signed, subject, message_id_header, category, custom_variables, utf8)
