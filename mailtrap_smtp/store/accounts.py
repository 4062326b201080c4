"""Accounts and their plans."""

from __future__ import annotations

from collections.abc import Sequence

from .types import Conn, Record


async def create(conn: Conn, name: str, *, monthly_limit: int, max_message_size: int,
                 billing_anchor_day: int = 1, alert_email: str | None = None, plan: str | None = None,
                 alert_thresholds: Sequence[int] = (80, 90, 100)) -> Record:
    row = await conn.fetchrow(
        """INSERT INTO accounts (name, monthly_limit, max_message_size, billing_anchor_day, alert_email,
                                 plan, alert_thresholds)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (name) DO NOTHING
           RETURNING *""",
        name, monthly_limit, max_message_size, billing_anchor_day, alert_email, plan, list(alert_thresholds),
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


async def set_list_unsubscribe(conn: Conn, account_id: int, enabled: bool) -> Record | None:
    return await conn.fetchrow("UPDATE accounts SET list_unsubscribe = $2 WHERE id = $1 RETURNING *",
                               account_id, enabled)


async def set_require_tls(conn: Conn, account_id: int, enabled: bool) -> Record | None:
    return await conn.fetchrow("UPDATE accounts SET require_tls = $2 WHERE id = $1 RETURNING *",
                               account_id, enabled)


async def set_plan(conn: Conn, account_id: int, *, plan: str, monthly_limit: int, max_message_size: int,
                   alert_thresholds: Sequence[int]) -> Record | None:
    """Apply a plan's values; every node sees them at its next AUTH or API request (nothing is cached)."""
    return await conn.fetchrow(
        """UPDATE accounts SET plan = $2, monthly_limit = $3, max_message_size = $4, alert_thresholds = $5
            WHERE id = $1 RETURNING *""",
        account_id, plan, monthly_limit, max_message_size, list(alert_thresholds),
    )
