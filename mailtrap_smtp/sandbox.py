"""Sandbox inboxes use case (Mailtrap's testing host): keep a message for an inbox of the account,
never deliver, queue or charge it; create and list inboxes; list and fetch their messages.

Shared by the HTTP API (`POST /api/send/{inbox_id}`) and the CLI (`inbox …`). A kept message gets
`Date` and `Message-ID` when missing, like a sent one, and must fit the account's size limit; it
is not DKIM-signed (it goes nowhere) and its From: domain is not checked (testing is what an
inbox is for).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .auth import DB_ERRORS
from .core import accounts as accounts_uc
from .core.refusal import Refused
from .headers import field_value, parse_header
from .outcomes import Outcome, Rejected
from .store import sandbox as sandbox_store
from .store.types import Record
from .submission import rfc5322_now

NAME_MAX = 255


class InboxNotFound(Refused):
    """No such inbox in the account."""


@dataclass(frozen=True)
class Kept:
    """One message for an inbox: envelope and bytes as the adapter built them."""

    mail_from: str
    recipients: Sequence[str]
    raw: bytes


def _completed(raw: bytes, hostname: str, message_id: uuid.UUID) -> tuple[bytes, str | None]:
    parsed = parse_header(raw)
    names = {name for name, _ in parsed.fields}
    subject = next((field_value(w) for n, w in parsed.fields if n == b"subject"), None)
    added = b""
    if b"date" not in names:
        added += f"Date: {rfc5322_now()}\r\n".encode("ascii")
    if b"message-id" not in names:
        added += f"Message-ID: <{message_id}@{hostname}>\r\n".encode("ascii")
    return added + raw, subject


async def keep(pool: Any, *, account_id: int, max_message_size: int, inbox_id: int, messages: Sequence[Kept],
               hostname: str) -> list[uuid.UUID]:
    """Store the messages in the inbox (one statement); their ids, in order. Raises InboxNotFound,
    Rejected(SIZE_EXCEEDED) for any message over the account's limit (then nothing is kept)."""
    try:
        if await sandbox_store.get_inbox(pool, account_id, inbox_id) is None:
            raise InboxNotFound(f"no inbox {inbox_id}")
        rows = []
        for m in messages:
            if len(m.raw) > max_message_size:
                raise Rejected(Outcome.SIZE_EXCEEDED)
            mid = uuid.uuid4()
            raw, subject = _completed(m.raw, hostname, mid)
            rows.append((mid, m.mail_from, list(m.recipients), subject, raw))
        await sandbox_store.add_messages(pool, inbox_id, rows)
    except DB_ERRORS:
        raise Rejected(Outcome.TEMPORARILY_UNAVAILABLE) from None
    return [r[0] for r in rows]


async def create_inbox(pool: Any, account_name: str, name: str) -> Record:
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise Refused(f"an inbox name is 1 to {NAME_MAX} characters")
    account = await accounts_uc.get(pool, account_name)
    row = await sandbox_store.create_inbox(pool, int(account["id"]), name)
    if row is None:
        raise Refused(f"account {account_name!r} already has an inbox named {name!r}")
    return row


async def list_inboxes(pool: Any, account_name: str | None = None) -> list[Record]:
    account_id = int((await accounts_uc.get(pool, account_name))["id"]) if account_name else None
    return await sandbox_store.list_inboxes(pool, account_id)


async def inbox_of(pool: Any, account_id: int, inbox_id: int) -> Record:
    row = await sandbox_store.get_inbox(pool, account_id, inbox_id)
    if row is None:
        raise InboxNotFound(f"no inbox {inbox_id}")
    return row


async def messages_of(pool: Any, inbox_id: int, limit: int = 100) -> list[Record]:
    return await sandbox_store.list_messages(pool, inbox_id, limit)


async def message(pool: Any, message_id: uuid.UUID, account_id: int | None = None) -> Record:
    """A kept message (with its raw bytes); of that account when `account_id` is given."""
    row = await sandbox_store.get_message(pool, message_id)
    if row is None or (account_id is not None and int(row["account_id"]) != account_id):
        raise Refused(f"no sandbox message {message_id}")
    return row
