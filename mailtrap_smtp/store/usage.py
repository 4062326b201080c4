"""Monthly usage per account and billing period; the quota is enforced here, atomically."""

from __future__ import annotations

import datetime as dt

from .types import Conn


async def used(conn: Conn, account_id: int, period_start: dt.date) -> int:
    value = await conn.fetchval(
        "SELECT used FROM usage WHERE account_id = $1 AND period_start = $2", account_id, period_start
    )
    return int(value or 0)


async def reserve(conn: Conn, account_id: int, period_start: dt.date, n: int) -> bool:
    """Charge n recipients if, and only if, the account stays within its monthly limit.

    One conditional UPDATE: PostgreSQL's row lock serialises concurrent reservations from any
    number of sessions, processes or nodes, and the condition is re-checked on the locked row,
    so the sum can never pass the limit (DESIGN §3).
    """
    await conn.execute(
        """INSERT INTO usage (account_id, period_start) VALUES ($1, $2)
           ON CONFLICT (account_id, period_start) DO NOTHING""",
        account_id, period_start,
    )
    row = await conn.fetchrow(
        """UPDATE usage u SET used = u.used + $3
             FROM accounts a
            WHERE u.account_id = $1 AND u.period_start = $2 AND a.id = u.account_id
              AND u.used + $3 <= a.monthly_limit
        RETURNING u.used""",
        account_id, period_start, n,
    )
    return row is not None
