"""Dashboard sessions (migration 0014): one row per login, named by the SHA-256 of the random id
its cookie carries. Every statement takes the clock as `now` (`COALESCE(now, now())`), so tests
move time without sleeping."""

from __future__ import annotations

import datetime as dt

from .types import Conn

# last_seen_at is written at most this often per session: a page view within it costs no write,
# and the idle timeout is exact to within it.
TOUCH_SECONDS = 30.0


async def create(conn: Conn, digest: bytes, account_id: int | None, max_seconds: float,
                 now: dt.datetime | None = None) -> None:
    """A new session; the ones whose absolute time is over are removed on the way (index on expires_at)."""
    await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at <= COALESCE($1::timestamptz, now())", now)
    await conn.execute(
        """INSERT INTO dashboard_sessions (id_digest, account_id, created_at, last_seen_at, expires_at)
           VALUES ($1, $2, COALESCE($4::timestamptz, now()), COALESCE($4::timestamptz, now()),
                   COALESCE($4::timestamptz, now()) + make_interval(secs => $3))""",
        digest, account_id, float(max_seconds), now,
    )


async def alive(conn: Conn, digest: bytes, account_id: int | None, idle_seconds: float,
                now: dt.datetime | None = None) -> bool:
    """Whether the session exists, is of `account_id` (None: the operator's), is within its absolute
    time and was used within the idle time; if so its use is noted (at most every TOUCH_SECONDS)."""
    return bool(await conn.fetchval(
        """WITH s AS (
               SELECT id_digest, last_seen_at FROM dashboard_sessions
                WHERE id_digest = $1 AND account_id IS NOT DISTINCT FROM $2
                  AND expires_at > COALESCE($4::timestamptz, now())
                  AND last_seen_at + make_interval(secs => $3) > COALESCE($4::timestamptz, now())
           ), touched AS (
               UPDATE dashboard_sessions d SET last_seen_at = COALESCE($4::timestamptz, now())
                 FROM s WHERE d.id_digest = s.id_digest
                  AND s.last_seen_at + make_interval(secs => $5) <= COALESCE($4::timestamptz, now())
           )
           SELECT EXISTS (SELECT 1 FROM s)""",
        digest, account_id, float(idle_seconds), now, TOUCH_SECONDS,
    ))


async def delete(conn: Conn, digest: bytes) -> None:
    await conn.execute("DELETE FROM dashboard_sessions WHERE id_digest = $1", digest)
