"""Cluster-wide concurrent-session slots per account, held as PostgreSQL advisory locks.

Owned by the SMTP front end. Each authenticated SMTP session of an account holds one of the
account's `limit` slots; a slot is a session-level advisory lock (bigint key built from a namespace,
the account id and the slot number) taken on ONE dedicated connection per process. Advisory locks
are visible to every process and node on the same PostgreSQL, so the count holds cluster-wide, and
they vanish with the connection, so a crashed process (kill -9) leaks no slot: no table, no
heartbeat, no clean-up job.

One connection holds the locks of every session of its process, and session-level advisory locks
are re-entrant per connection, so a statement that takes a slot is told which keys the process's
live sessions hold (`held`); they are skipped. A key whose session ended but whose unlock is still
pending may be taken again: lock-then-unlock and unlock-then-lock both leave it held once.
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import Conn

# "MTSL" in the top 16 bits keeps these keys apart from every other advisory lock (the migrator
# uses a small bigint key).
NAMESPACE = 0x4D54 << 48


def slot_key(account_id: int, slot: int) -> int:
    return NAMESPACE | ((account_id & 0xFFFFFFFF) << 16) | (slot & 0xFFFF)


def take_slot_sql(account: str, limit: str, held: str) -> str:
    """A scalar subquery: the first slot of `account` (an SQL expression) that this connection could
    lock, now locked; NULL when all `limit` are taken. `held` is a bigint[] of keys to skip.

    The filter runs lazily under LIMIT 1: locks are tried one by one until one is granted, so at
    most one lock is ever taken. CASE fixes the evaluation order: a held key must never reach
    pg_try_advisory_lock (it would succeed re-entrantly and leak a count). PostgreSQL gives every
    bitwise operator the same precedence, hence the parentheses.
    """
    key = f"({NAMESPACE}::bigint | ((({account})::bigint & 4294967295) << 16) | s)"
    return (f"(SELECT s FROM generate_series(0, {limit}::int - 1) AS s"
            f" WHERE CASE WHEN {key} = ANY({held}::bigint[]) THEN false"
            f" ELSE pg_try_advisory_lock({key}) END LIMIT 1)")


async def unlock_all(conn: Conn) -> None:
    """Give up every session slot (advisory lock) this connection holds, before it goes back to the pool."""
    await conn.execute("SELECT pg_advisory_unlock_all()")


async def release_slots(conn: Conn, keys: Sequence[int]) -> None:
    await conn.execute("SELECT count(pg_advisory_unlock(k)) FROM unnest($1::bigint[]) AS k", list(keys))
