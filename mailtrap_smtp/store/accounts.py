"""Accounts and their plans."""

from __future__ import annotations

from .types import Conn, Record


async def create(conn: Conn, name: str, *, monthly_limit: int, max_message_size: int,
                 billing_anchor_day: int = 1, alert_email: str | None = None) -> Record:
    row = await conn.fetchrow(
        """INSERT INTO accounts (name, monthly_limit, max_message_size, billing_anchor_day, alert_email)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (name) DO NOTHING
           RETURNING *""",
        name, monthly_limit, max_message_size, billing_anchor_day, alert_email,
    )
    if row is None:
        raise KeyError(name)
    return row


async def get_by_name(conn: Conn, name: str) -> Record | None:
    return await conn.fetchrow("SELECT * FROM accounts WHERE name = $1", name)


async def get(conn: Conn, account_id: int) -> Record | None:
    return await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id)


async def list_all(conn: Conn) -> list[Record]:
    return list(await conn.fetch("SELECT * FROM accounts ORDER BY name"))
