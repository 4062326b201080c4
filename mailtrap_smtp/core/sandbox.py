"""Sandbox inboxes (Mailtrap's testing inboxes): create, list, rename and delete an account's inboxes,
empty one or mark all its messages read, keep a message sent to one, list an inbox's messages and
give one back as it was sent (`.eml`).

A kept message is never delivered, signed or charged: it only waits to be looked at. Shared by the
CLI and the HTTP API (`POST /api/send/{inbox_id}` keeps one message per request and answers with its
one id, whatever the number of recipients). Besides that uuid a message has a number (the id of
Mailtrap's testing API), and what the SDK's `EmailMessage` shows (the To header, the sizes of the
text and HTML bodies) is read once, when it is kept; it can be marked read and deleted.
"""

from __future__ import annotations

import datetime as dt
import email
import email.errors
import email.header
import email.message
import email.policy
import email.utils
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .. import headers, permissions
from ..auth import DB_ERRORS, Principal
from ..outcomes import Outcome, Rejected
from ..store import sandbox as sandbox_store
from ..store.types import Conn, Record
from ..submission import check_line_endings, check_line_length
from .refusal import Kind, Refused

log = logging.getLogger(__name__)

INBOX_NAME_MAX = 255
LIST_LIMIT_MAX = 1000
PAGE_SIZE = 30  # messages per page of Mailtrap's testing API


class InboxNotFound(Refused):
    kind = Kind.NOT_FOUND

    def __init__(self, inbox_id: object) -> None:
        super().__init__(f"no sandbox inbox {inbox_id} in this account")


class SandboxMessageNotFound(Refused):
    kind = Kind.NOT_FOUND

    def __init__(self, message_id: object) -> None:
        super().__init__(f"no sandbox message {message_id} in this account")


@dataclass(frozen=True)
class Inbox:
    id: int
    name: str
    messages: int
    created_at: dt.datetime
    unread: int = 0  # kept messages not marked read
    last_message_at: dt.datetime | None = None  # when the newest kept message came (None: none kept)


@dataclass(frozen=True)
class SandboxMessage:
    id: uuid.UUID
    mail_from: str
    recipients: list[str]
    header_from: str | None
    subject: str | None  # as it stands in the header (RFC 2047 words not decoded)
    size: int
    created_at: dt.datetime
    number: int = 0
    inbox_id: int = 0
    header_to: str | None = None
    text_size: int = 0  # characters of the decoded text/plain body (0: none)
    html_size: int = 0  # characters of the decoded text/html body (0: none)
    is_read: bool = False
    updated_at: dt.datetime | None = None


def _message(r: Record) -> SandboxMessage:
    return SandboxMessage(id=r["id"], mail_from=r["mail_from"], recipients=list(r["recipients"]),
                          header_from=r["header_from"], subject=r["subject"], size=int(r["size"]),
                          created_at=r["created_at"], number=int(r["number"]), inbox_id=int(r["inbox_id"]),
                          header_to=r["header_to"], text_size=int(r["text_size"]), html_size=int(r["html_size"]),
                          is_read=bool(r["is_read"]), updated_at=r["updated_at"])


def _content(part: email.message.EmailMessage | None) -> str | None:
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError, ValueError):  # an unknown or lying charset: show what is there
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None


def bodies(raw: bytes) -> tuple[str | None, str | None]:
    """The message's text and HTML bodies, decoded (RFC 2045 transfer encodings, charsets), as a mail
    reader would pick them from a multipart/alternative (`get_body`)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    return (_content(text if isinstance(text, email.message.EmailMessage) else None),
            _content(html if isinstance(html, email.message.EmailMessage) else None))


def decoded(value: str | None) -> str:
    """A header value as people read it: RFC 2047 encoded words decoded ('' for none)."""
    if not value:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return value


def first_address(value: str | None) -> tuple[str, str]:
    """(address, display name) of the first mailbox in an address header, ('', '') for none."""
    found = email.utils.getaddresses([decoded(value)]) if value else []
    return (found[0][1], found[0][0]) if found else ("", "")


def addresses(value: str | None) -> tuple[str, str]:
    """Every mailbox of an address header: (the addresses, the display names), each ", "-joined."""
    found = [(n, a) for n, a in email.utils.getaddresses([decoded(value)]) if a] if value else []
    return ", ".join(a for _, a in found), ", ".join(n for n, _ in found if n)


def human_size(size: int) -> str:
    """A size as people read it, in Mailtrap's (Rails') style: "523 Bytes", "1.21 KB", "10 MB"."""
    if size < 1024:
        return "1 Byte" if size == 1 else f"{size} Bytes"
    value, units = float(size) / 1024, ["KB", "MB", "GB", "TB"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    unit = units[0]
    decimals = max(0, 2 - math.floor(math.log10(value)))  # three significant digits
    text = f"{value:.{decimals}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + f" {unit}"


def _inbox(row: Record) -> Inbox:
    return Inbox(id=int(row["id"]), name=row["name"], messages=int(row["messages"]), created_at=row["created_at"],
                 unread=int(row["unread"]), last_message_at=row["last_message_at"])


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > INBOX_NAME_MAX or not name.isprintable():
        raise Refused(f"an inbox name is 1 to {INBOX_NAME_MAX} printable characters")
    return name


def _taken(name: str) -> Refused:
    return Refused(f"the account already has an inbox named {name!r}", kind=Kind.CONFLICT)


async def create_inbox(conn: Conn, account_id: int, name: str) -> Inbox:
    name = _checked_name(name)
    try:
        return _inbox(await sandbox_store.create_inbox(conn, account_id, name))
    except sandbox_store.InboxExists:
        raise _taken(name) from None


async def rename_inbox(conn: Conn, account_id: int, inbox_id: int, name: str) -> Inbox:
    """Give the inbox a new name (the same rules as at creation); the inbox as it is now."""
    name = _checked_name(name)
    try:
        if not await sandbox_store.rename_inbox(conn, account_id, inbox_id, name):
            raise InboxNotFound(inbox_id)
    except sandbox_store.InboxExists:
        raise _taken(name) from None
    return await get_inbox(conn, account_id, inbox_id)


async def delete_inbox(conn: Conn, account_id: int, inbox_id: int) -> Inbox:
    """Delete the inbox with all its messages; what it was."""
    inbox = await get_inbox(conn, account_id, inbox_id)
    if not await sandbox_store.delete_inbox(conn, account_id, inbox_id):
        raise InboxNotFound(inbox_id)
    return inbox


async def clean_inbox(conn: Conn, account_id: int, inbox_id: int) -> Inbox:
    """Delete every message of the inbox, keeping the inbox; the inbox as it is now (empty)."""
    await get_inbox(conn, account_id, inbox_id)
    await sandbox_store.clean_inbox(conn, account_id, inbox_id)
    return await get_inbox(conn, account_id, inbox_id)


async def mark_all_read(conn: Conn, account_id: int, inbox_id: int) -> Inbox:
    """Mark every message of the inbox read; the inbox as it is now."""
    await get_inbox(conn, account_id, inbox_id)
    await sandbox_store.mark_all_read(conn, account_id, inbox_id)
    return await get_inbox(conn, account_id, inbox_id)


async def list_inboxes(conn: Conn, account_id: int) -> list[Inbox]:
    return [_inbox(r) for r in await sandbox_store.list_inboxes(conn, account_id)]


async def get_inbox(conn: Conn, account_id: int, inbox_id: int) -> Inbox:
    row = await sandbox_store.get_inbox(conn, account_id, inbox_id)
    if row is None:
        raise InboxNotFound(inbox_id)
    return _inbox(row)


def _first(parsed: headers.ParsedHeader, name: bytes) -> str | None:
    value = next((headers.field_value(whole) for n, whole in parsed.fields if n == name), None)
    return value[:998] if value else None


async def keep(conn: Conn, principal: Principal, inbox_id: int, *, mail_from: str, recipients: Sequence[str],
               raw: bytes) -> uuid.UUID:
    """Keep the message in an inbox of the principal's account; its id. Refusals: Rejected with the
    submission's outcomes (NOT_PERMITTED, SIZE_EXCEEDED, BARE_LINE_ENDING, TEXT_LINE_TOO_LONG,
    TEMPORARILY_UNAVAILABLE), InboxNotFound."""
    if not permissions.may_send(principal, principal.stream):
        raise Rejected(Outcome.NOT_PERMITTED)
    if len(raw) > principal.max_message_size:
        raise Rejected(Outcome.SIZE_EXCEEDED)
    check_line_endings(raw)
    check_line_length(raw)
    parsed = headers.parse_header(raw)
    text, html = bodies(raw)
    message_id = uuid.uuid4()
    try:
        stored = await sandbox_store.store_message(
            conn, principal.account_id, inbox_id, message_id, credential_id=principal.credential_id,
            mail_from=mail_from, recipients=recipients, header_from=_first(parsed, b"from"),
            header_to=_first(parsed, b"to"), subject=_first(parsed, b"subject"),
            text_size=len(text or ""), html_size=len(html or ""), raw=raw)
    except DB_ERRORS:
        log.warning("keeping a sandbox message failed", exc_info=True)
        raise Rejected(Outcome.TEMPORARILY_UNAVAILABLE) from None
    if not stored:
        raise InboxNotFound(inbox_id)
    return message_id


async def list_messages(conn: Conn, account_id: int, inbox_id: int, limit: int = 100) -> list[SandboxMessage]:
    """The inbox's messages, newest first (at most `limit`, capped at LIST_LIMIT_MAX)."""
    await get_inbox(conn, account_id, inbox_id)
    rows = await sandbox_store.list_messages(conn, account_id, inbox_id, max(1, min(limit, LIST_LIMIT_MAX)))
    return [_message(r) for r in rows]


async def messages_page(conn: Conn, account_id: int, inbox_id: int, *, search: str | None = None,
                        last_id: int | None = None, page: int = 1) -> list[SandboxMessage]:
    """Up to PAGE_SIZE of the inbox's messages, newest first, as Mailtrap's testing API pages them:
    those numbered below `last_id` (which wins over `page`), else page `page` (from 1); `search`
    matches the subject, the To header or a recipient, case-insensitively."""
    await get_inbox(conn, account_id, inbox_id)
    pattern = None
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    offset = 0 if last_id is not None else (max(page, 1) - 1) * PAGE_SIZE
    rows = await sandbox_store.page_messages(conn, account_id, inbox_id, before=last_id, pattern=pattern,
                                             offset=offset, limit=PAGE_SIZE)
    return [_message(r) for r in rows]


async def numbered(conn: Conn, account_id: int, inbox_id: int, number: int) -> tuple[SandboxMessage, bytes]:
    """One message of the inbox by its number, and its bytes."""
    await get_inbox(conn, account_id, inbox_id)
    row = await sandbox_store.numbered_message(conn, account_id, inbox_id, number)
    if row is None:
        raise SandboxMessageNotFound(number)
    return _message(row), bytes(row["raw"])


async def mark_read(conn: Conn, account_id: int, inbox_id: int, number: int, is_read: bool) -> SandboxMessage:
    if not await sandbox_store.mark_read(conn, account_id, inbox_id, number, is_read):
        await get_inbox(conn, account_id, inbox_id)
        raise SandboxMessageNotFound(number)
    return (await numbered(conn, account_id, inbox_id, number))[0]


async def delete_message(conn: Conn, account_id: int, inbox_id: int, number: int) -> SandboxMessage:
    """Delete the message; what it was."""
    message, _ = await numbered(conn, account_id, inbox_id, number)
    if not await sandbox_store.delete_message(conn, account_id, inbox_id, number):
        raise SandboxMessageNotFound(number)
    return message


async def message_eml(conn: Conn, account_id: int, message_id: uuid.UUID | str) -> bytes:
    """The message exactly as it was sent (an `.eml` file)."""
    try:
        key = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(str(message_id))
    except ValueError:
        raise SandboxMessageNotFound(message_id) from None
    row = await sandbox_store.get_message(conn, account_id, key)
    if row is None:
        raise SandboxMessageNotFound(message_id)
    return bytes(row["raw"])
