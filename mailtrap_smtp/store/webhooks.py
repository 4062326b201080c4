"""Webhooks, their outbox cursors and their delivery log.

A webhook's cursor (`webhook:<id>` in outbox_cursors) is created, paused and deleted in the same
transaction as the webhook row, so a webhook can never exist without its position in the log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from . import outbox
from .types import Conn, Record

KIND = "webhook"

_COLS = ("id, account_id, url, webhook_type, active, payload_format, sending_stream, event_types, domain_id, "
         "signing_secret, deactivated_at, created_at, updated_at")


def cursor_name(webhook_id: int) -> str:
    return f"{KIND}:{webhook_id}"


@contextlib.asynccontextmanager
async def _transaction(conn: Conn) -> AsyncIterator[Conn]:
    """A transaction on a connection, or on one acquired from a pool."""
    if hasattr(conn, "acquire"):
        async with conn.acquire() as c, c.transaction():
            yield c
    else:
        async with conn.transaction():
            yield conn


async def create(conn: Conn, account_id: int, *, url: str, webhook_type: str, active: bool, payload_format: str,
                 sending_stream: str | None, event_types: Sequence[str], domain_id: int | None,
                 signing_secret: str) -> Record:
    """Insert the webhook and its cursor, positioned at the log's present horizon."""
    async with _transaction(conn) as tx:
        row = await tx.fetchrow(
            f"""INSERT INTO webhooks (account_id, url, webhook_type, active, payload_format, sending_stream,
                                      event_types, domain_id, signing_secret)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_COLS}""",
            account_id, url, webhook_type, active, payload_format, sending_stream, list(event_types), domain_id,
            signing_secret,
        )
        await outbox.ensure(tx, cursor_name(row["id"]), KIND, from_beginning=False)
        if not active:
            await outbox.set_paused(tx, cursor_name(row["id"]), True)
    return row


async def list_for(conn: Conn, account_id: int | None) -> list[Record]:
    return list(await conn.fetch(
        f"SELECT {_COLS} FROM webhooks WHERE $1::bigint IS NULL OR account_id = $1 ORDER BY id", account_id))


async def get(conn: Conn, webhook_id: int, account_id: int | None = None) -> Record | None:
    return await conn.fetchrow(
        f"SELECT {_COLS} FROM webhooks WHERE id = $1 AND ($2::bigint IS NULL OR account_id = $2)",
        webhook_id, account_id)


async def update(conn: Conn, webhook_id: int, account_id: int | None, changes: dict[str, Any]) -> Record | None:
    """Apply `changes` (column → value); turning `active` on or off resumes or pauses the cursor."""
    allowed = {"url", "active", "payload_format", "event_types", "sending_stream", "domain_id"}
    if not set(changes) <= allowed:
        raise ValueError(f"not updatable: {sorted(set(changes) - allowed)}")
    sets = [f"{col} = ${i}" for i, col in enumerate(changes, start=3)]
    if "active" in changes:
        sets.append(f"deactivated_at = CASE WHEN ${3 + list(changes).index('active')} THEN NULL "
                    "ELSE deactivated_at END")
    async with _transaction(conn) as tx:
        row = await tx.fetchrow(
            f"""UPDATE webhooks SET {", ".join([*sets, "updated_at = now()"])}
                 WHERE id = $1 AND ($2::bigint IS NULL OR account_id = $2) RETURNING {_COLS}""",
            webhook_id, account_id, *changes.values())
        if row is not None and "active" in changes:
            await outbox.set_paused(tx, cursor_name(webhook_id), not changes["active"])
        if row is not None and "url" in changes:
            await outbox.clear_retry(tx, cursor_name(webhook_id))  # a fixed URL is tried at once
    return row


async def delete(conn: Conn, webhook_id: int, account_id: int | None) -> Record | None:
    async with _transaction(conn) as tx:
        row = await tx.fetchrow(
            f"""DELETE FROM webhooks WHERE id = $1 AND ($2::bigint IS NULL OR account_id = $2)
                RETURNING {_COLS}""", webhook_id, account_id)
        if row is not None:
            await outbox.delete(tx, cursor_name(webhook_id))
    return row


async def orphaned(conn: Conn, webhook_id: int, *, gone: bool) -> None:
    """Delete the cursor of a webhook that is `gone`, or pause the cursor of an inactive one."""
    if gone:
        await outbox.delete(conn, cursor_name(webhook_id))
    else:
        await outbox.set_paused(conn, cursor_name(webhook_id), True)


async def deactivate(conn: Conn, webhook_id: int, now: dt.datetime | None = None) -> bool:
    """Set active = false and pause the cursor (in the caller's transaction); False if already off."""
    status = await conn.execute(
        """UPDATE webhooks SET active = false, deactivated_at = COALESCE($2::timestamptz, now()),
                  updated_at = COALESCE($2::timestamptz, now())
            WHERE id = $1 AND active""", webhook_id, now)
    await outbox.set_paused(conn, cursor_name(webhook_id), True)
    return bool(status == "UPDATE 1")


async def record_attempt(conn: Conn, webhook_id: int, *, at: dt.datetime, events: int,
                         first_event_id: uuid.UUID | None, last_event_id: uuid.UUID | None, status: int | None,
                         latency_ms: int | None, error: str | None, acknowledged: bool) -> None:
    await conn.execute(
        """INSERT INTO webhook_attempts (webhook_id, attempted_at, events, first_event_id, last_event_id, status,
                                         latency_ms, error, acknowledged)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        webhook_id, at, events, first_event_id, last_event_id, status, latency_ms, error, acknowledged)


async def attempts(conn: Conn, webhook_id: int, limit: int = 50) -> list[Record]:
    """The delivery log, newest first."""
    return list(await conn.fetch(
        """SELECT attempted_at, events, first_event_id, last_event_id, status, latency_ms, error, acknowledged
             FROM webhook_attempts WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2""", webhook_id, limit))


async def cursor_state(conn: Conn, webhook_id: int) -> Record | None:
    """Retry state of the webhook's cursor: consecutive failures, next attempt, last error."""
    return await conn.fetchrow(
        "SELECT failures, not_before, last_error, paused FROM outbox_cursors WHERE name = $1",
        cursor_name(webhook_id))
