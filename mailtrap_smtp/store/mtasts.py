"""The stored MTA-STS policies of recipient domains (delivery/mtasts.py keeps them in memory too)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .types import Conn, Record


async def get(conn: Conn, domain: str) -> Record | None:
    """The domain's policy if it has not expired."""
    return await conn.fetchrow(
        "SELECT * FROM mta_sts_policies WHERE domain = $1 AND expires_at > now()", domain,
    )


async def put(conn: Conn, domain: str, *, policy_id: str, mode: str, mx: Sequence[str], max_age: int,
              expires_at: dt.datetime) -> None:
    await conn.execute(
        """INSERT INTO mta_sts_policies (domain, policy_id, mode, mx, max_age, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (domain) DO UPDATE SET policy_id = EXCLUDED.policy_id, mode = EXCLUDED.mode,
                  mx = EXCLUDED.mx, max_age = EXCLUDED.max_age, fetched_at = now(),
                  expires_at = EXCLUDED.expires_at""",
        domain, policy_id, mode, list(mx), max_age, expires_at,
    )
    # Storing is rare (a fetch per policy change or max_age): the moment to forget expired ones.
    await conn.execute("DELETE FROM mta_sts_policies WHERE expires_at <= now()")
