"""Monthly usage per account and billing period (charged atomically by `messages.accept`)."""

from __future__ import annotations

import datetime as dt

from .types import Conn


async def used(conn: Conn, account_id: int, period_start: dt.date) -> int:
    value = await conn.fetchval(
        "SELECT used FROM usage WHERE account_id = $1 AND period_start = $2", account_id, period_start
    )
    return int(value or 0)
