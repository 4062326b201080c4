"""Credentials: per-stream tokens, stored as digests."""

from __future__ import annotations

from .types import Conn, Record


async def create(conn: Conn, account_id: int, *, public_id: str, digest: bytes, stream: str,
                 name: str | None = None) -> Record:
    row = await conn.fetchrow(
        """INSERT INTO credentials (account_id, public_id, digest, stream, name)
           VALUES ($1, $2, $3, $4, $5) RETURNING *""",
        account_id, public_id, digest, stream, name,
    )
    assert row is not None
    return row


async def find_active(conn: Conn, public_id: str) -> Record | None:
    """The live credential with this public id, with what AUTH needs to decide."""
    return await conn.fetchrow(
        """SELECT c.id, c.account_id, c.stream, c.digest, a.name AS account_name,
                  a.monthly_limit, a.max_message_size, a.billing_anchor_day
             FROM credentials c JOIN accounts a ON a.id = c.account_id
            WHERE c.public_id = $1 AND c.revoked_at IS NULL""",
        public_id,
    )


async def touch(conn: Conn, credential_id: int) -> None:
    # Coarse on purpose: one write per credential per minute, not one per AUTH.
    await conn.execute(
        """UPDATE credentials SET last_used_at = now()
            WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        credential_id,
    )


async def revoke(conn: Conn, public_id: str) -> Record | None:
    return await conn.fetchrow(
        """UPDATE credentials SET revoked_at = coalesce(revoked_at, now())
            WHERE public_id = $1 RETURNING *""",
        public_id,
    )


async def list_all(conn: Conn, account_id: int | None = None) -> list[Record]:
    return list(await conn.fetch(
        """SELECT c.public_id, a.name AS account, c.stream, c.name, c.created_at, c.last_used_at,
                  c.revoked_at
             FROM credentials c JOIN accounts a ON a.id = c.account_id
            WHERE $1::bigint IS NULL OR c.account_id = $1
            ORDER BY a.name, c.created_at""",
        account_id,
    ))
