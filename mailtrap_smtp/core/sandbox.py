"""Sandbox inboxes (Mailtrap's testing inboxes): create and list an account's inboxes, keep a message
sent to one, list an inbox's messages and give one back as it was sent (`.eml`).

A kept message is never delivered, signed or charged: it only waits to be looked at. Shared by the
CLI and the HTTP API (`POST /api/send/{inbox_id}` keeps one message per request and answers with its
one id, whatever the number of recipients).
"""

from __future__ import annotations

import datetime as dt
import logging
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


@dataclass(frozen=True)
class SandboxMessage:
    id: uuid.UUID
    mail_from: str
    recipients: list[str]
    header_from: str | None
    subject: str | None  # as it stands in the header (RFC 2047 words not decoded)
    size: int
    created_at: dt.datetime


def _inbox(row: Record) -> Inbox:
    return Inbox(id=int(row["id"]), name=row["name"], messages=int(row["messages"]), created_at=row["created_at"])


async def create_inbox(conn: Conn, account_id: int, name: str) -> Inbox:
    name = name.strip()
    if not name or len(name) > INBOX_NAME_MAX or not name.isprintable():
        raise Refused(f"an inbox name is 1 to {INBOX_NAME_MAX} printable characters")
    try:
        return _inbox(await sandbox_store.create_inbox(conn, account_id, name))
    except sandbox_store.InboxExists:
        raise Refused(f"the account already has an inbox named {name!r}", kind=Kind.CONFLICT) from None


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
    message_id = uuid.uuid4()
    try:
        stored = await sandbox_store.store_message(
            conn, principal.account_id, inbox_id, message_id, credential_id=principal.credential_id,
            mail_from=mail_from, recipients=recipients, header_from=_first(parsed, b"from"),
            subject=_first(parsed, b"subject"), raw=raw)
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
    return [SandboxMessage(id=r["id"], mail_from=r["mail_from"], recipients=list(r["recipients"]),
                           header_from=r["header_from"], subject=r["subject"], size=int(r["size"]),
                           created_at=r["created_at"]) for r in rows]


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
