"""Cluster-wide concurrent-session slots per account, held as PostgreSQL advisory locks.

Owned by the SMTP front end. Each authenticated SMTP session of an account holds one of the
account's `limit` slots; a slot is a session-level advisory lock (bigint key built from a namespace,
the account id and the slot number) taken on ONE dedicated connection per process. Advisory locks
are visible to every process and node on the same PostgreSQL, so the count holds cluster-wide, and
they vanish with the connection, so a crashed process (kill -9) leaks no slot: no table, no
heartbeat, no clean-up job.

One connection holds the locks of every session of its process, and session-level advisory locks
are re-entrant per connection, so the caller must pass the slots its own process already holds
(`exclude`); they are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import Conn

# "MTSL" in the top 16 bits keeps these keys apart from every other advisory lock (the migrator
# uses a small bigint key).
_NAMESPACE = 0x4D54 << 48


def slot_key(account_id: int, slot: int) -> int:
    return _NAMESPACE | ((account_id & 0xFFFFFFFF) << 16) | (slot & 0xFFFF)


async def try_acquire_slot(conn: Conn, account_id: int, limit: int, exclude: Sequence[int]) -> int | None:
    """Take the first free slot of the account (not in `exclude`); None when all are taken."""
    # The filter runs lazily under LIMIT 1: locks are tried one by one until one is granted, so
    # at most one lock is ever taken by this statement. CASE fixes the evaluation order: an excluded
    # slot must never reach pg_try_advisory_lock (it would succeed re-entrantly and leak a count).
    value = await conn.fetchval(
        """SELECT s FROM generate_series(0, $2::int - 1) AS s
            WHERE CASE WHEN s = ANY($3::int[]) THEN false
                       ELSE pg_try_advisory_lock($4::bigint | ($1::bigint << 16) | s) END
            LIMIT 1""",
        account_id & 0xFFFFFFFF, limit, list(exclude), _NAMESPACE,
    )
    return None if value is None else int(value)


async def release_slot(conn: Conn, account_id: int, slot: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1::bigint)", slot_key(account_id, slot))
