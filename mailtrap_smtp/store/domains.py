"""Sending domains and their DKIM keys."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .types import Conn, Record

# States in which a domain may send (the grace period keeps a 'failing' domain sending).
SENDING_STATES = ("verified", "failing")

# THE rule for "this domain may send now", shared by every query that asks it. A constant SQL
# fragment (no values are formatted into it); its parameters are $3 = SENDING_STATES, $4 =
# require_approval, $5 = grace seconds or NULL.
MAY_SEND = """state = ANY($3::text[])
    AND (NOT $4 OR approved_at IS NOT NULL OR dns_skipped)
    AND ($5::float8 IS NULL OR state <> 'failing' OR failing_since > now() - make_interval(secs => $5::float8))"""


async def create(conn: Conn, account_id: int, name: str, *, verification_token: str,
                 dns_skipped: bool = False) -> Record:
    row = await conn.fetchrow(
        """INSERT INTO sending_domains (account_id, name, verification_token, dns_skipped, state, verified_at)
           VALUES ($1, $2, $3, $4,
                   CASE WHEN $4 THEN 'verified' ELSE 'unverified' END,
                   CASE WHEN $4 THEN now() END)
           ON CONFLICT (name) DO NOTHING RETURNING *""",
        account_id, name, verification_token, dns_skipped,
    )
    if row is None:
        raise KeyError(name)
    return row


async def get_by_name(conn: Conn, name: str) -> Record | None:
    return await conn.fetchrow(
        """SELECT d.*, a.name AS account FROM sending_domains d JOIN accounts a ON a.id = d.account_id
            WHERE d.name = $1""",
        name,
    )


async def list_all(conn: Conn, account_id: int | None = None) -> list[Record]:
    return list(await conn.fetch(
        """SELECT d.*, a.name AS account FROM sending_domains d JOIN accounts a ON a.id = d.account_id
            WHERE $1::bigint IS NULL OR d.account_id = $1 ORDER BY a.name, d.name""",
        account_id,
    ))


async def sending_domain(conn: Conn, account_id: int, name: str, *, require_approval: bool,
                         grace_seconds: float | None = None) -> Record | None:
    """The domain if this account may send from it right now, else None.

    With `grace_seconds`, a 'failing' domain stops sending when its grace period is over by the
    database's clock, even before a re-check has moved it to 'suspended' (no delivery node running).
    """
    return await conn.fetchrow(
        "SELECT id, name FROM sending_domains WHERE account_id = $1 AND name = $2 AND " + MAY_SEND,
        account_id, name, list(SENDING_STATES), require_approval, grace_seconds,
    )


async def set_check_result(conn: Conn, domain_id: int, *, state: str, checked_at: dt.datetime,
                           result: list[dict[str, Any]], verified_at: dt.datetime | None,
                           failing_since: dt.datetime | None) -> None:
    await conn.execute(
        """UPDATE sending_domains SET state = $2, last_checked_at = $3, last_check = $4::jsonb,
                  verified_at = $5, failing_since = $6
            WHERE id = $1""",
        domain_id, state, checked_at, json.dumps(result), verified_at, failing_since,
    )


async def approve(conn: Conn, domain_id: int) -> None:
    await conn.execute(
        "UPDATE sending_domains SET approved_at = coalesce(approved_at, now()) WHERE id = $1", domain_id
    )


async def add_key(conn: Conn, domain_id: int, *, selector: str, algorithm: str, private_key_enc: bytes,
                  public_key: str, state: str) -> Record:
    row = await conn.fetchrow(
        """INSERT INTO dkim_keys (domain_id, selector, algorithm, private_key_enc, public_key, state,
                                  activated_at)
           VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 = 'active' THEN now() END) RETURNING *""",
        domain_id, selector, algorithm, private_key_enc, public_key, state,
    )
    assert row is not None
    return row


async def keys(conn: Conn, domain_id: int, states: tuple[str, ...] = ("active", "pending")) -> list[Record]:
    return list(await conn.fetch(
        """SELECT * FROM dkim_keys WHERE domain_id = $1 AND state = ANY($2::text[])
            ORDER BY algorithm DESC, id""",
        domain_id, list(states),
    ))


async def slot_keys(conn: Conn, domain_id: int) -> list[Record]:
    """The key each selector's DNS record carries now: the newest key on that selector, whatever its
    state (a new key on a selector replaces the previous one's record). RSA first, then by selector."""
    return list(await conn.fetch(
        """SELECT * FROM (SELECT DISTINCT ON (selector) * FROM dkim_keys WHERE domain_id = $1
                           ORDER BY selector, id DESC) newest
            ORDER BY algorithm DESC, selector""",
        domain_id,
    ))


async def set_key_state(conn: Conn, key_ids: list[int], state: str) -> None:
    await conn.execute("UPDATE dkim_keys SET state = $2 WHERE id = ANY($1::bigint[])", key_ids, state)


async def active_keys_by_domain_name(conn: Conn, name: str) -> list[Record]:
    return list(await conn.fetch(
        """SELECT d.name AS domain, k.id, k.selector, k.algorithm, k.private_key_enc
             FROM dkim_keys k JOIN sending_domains d ON d.id = k.domain_id
            WHERE d.name = $1 AND k.state = 'active' ORDER BY k.algorithm DESC""",
        name,
    ))


async def activate_key(conn: Conn, key_id: int) -> None:
    """Make a pending key the signing key of its algorithm, retiring the previous one."""
    await conn.execute(
        """UPDATE dkim_keys SET state = 'retired', retired_at = now()
            WHERE state = 'active' AND (domain_id, algorithm) =
                  (SELECT domain_id, algorithm FROM dkim_keys WHERE id = $1)""",
        key_id,
    )
    await conn.execute(
        "UPDATE dkim_keys SET state = 'active', activated_at = now() WHERE id = $1", key_id
    )


async def clear_dns_skipped(conn: Conn, domain_id: int) -> None:
    await conn.execute("UPDATE sending_domains SET dns_skipped = false WHERE id = $1", domain_id)


async def count_in_state(conn: Conn, state: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM sending_domains WHERE state = $1", state))


async def lock(conn: Conn, domain_id: int) -> Record | None:
    """The domain row, locked until the end of the caller's transaction (one state transition at a time)."""
    return await conn.fetchrow("SELECT * FROM sending_domains WHERE id = $1 FOR UPDATE", domain_id)


async def claim_due_for_check(conn: Conn, *, now: dt.datetime, checked_before: dt.datetime,
                              failing_since_before: dt.datetime, limit: int = 1000) -> list[Record]:
    """Claim DNS-managed domains due for a re-check, so that nodes sharing the database split them.

    Due: never checked, last checked at or before `checked_before`, or 'failing' since at or before
    `failing_since_before` (the grace period is over: check now, don't wait for the hourly round).
    Claiming stamps last_checked_at with `now`; rows another node is claiming are skipped.
    """
    return list(await conn.fetch(
        """UPDATE sending_domains SET last_checked_at = $1
            WHERE id IN (SELECT id FROM sending_domains
                          WHERE NOT dns_skipped
                            AND (last_checked_at IS NULL OR last_checked_at <= $2
                                 OR (state = 'failing' AND failing_since <= $3))
                          ORDER BY last_checked_at NULLS FIRST, id
                          LIMIT $4
                          FOR UPDATE SKIP LOCKED)
        RETURNING id, name""",
        now, checked_before, failing_since_before, limit,
    ))


async def get_for_account(conn: Conn, account_id: int, domain_id: int) -> Record | None:
    return await conn.fetchrow(
        """SELECT d.*, a.name AS account, a.alert_email FROM sending_domains d
             JOIN accounts a ON a.id = d.account_id WHERE d.id = $1 AND d.account_id = $2""",
        domain_id, account_id,
    )


async def delete(conn: Conn, account_id: int, domain_id: int) -> bool:
    """Remove the domain and its keys; messages sent from it keep their rows (domain_id NULL)."""
    async with conn.transaction():
        await conn.execute("UPDATE messages SET domain_id = NULL WHERE domain_id = $1 AND account_id = $2",
                           domain_id, account_id)
        status = await conn.execute("DELETE FROM sending_domains WHERE id = $1 AND account_id = $2",
                                    domain_id, account_id)
    return bool(status == "DELETE 1")
