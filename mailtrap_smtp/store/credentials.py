"""Credentials: tokens stored as digests, with their grant (streams, level, domain scope)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from . import smtp_limits
from .domains import MAY_SEND, SENDING_STATES
from .types import Conn, Record


async def create(conn: Conn, account_id: int, *, public_id: str, digest: bytes,
                 stream: str | None = None, streams: Sequence[str] = (), level: str = "send",
                 domain_ids: Sequence[int] | None = None, name: str | None = None) -> Record:
    """Insert a credential and its domain scope in one statement.

    `streams` in canonical order (`permissions.Grant.stream_list`); `stream` is the shorthand for
    one. `domain_ids` None: every domain of the account; else those domains, which the caller has
    checked belong to the account.
    """
    all_streams = list(streams) if streams else [stream] if stream else []
    row = await conn.fetchrow(
        """WITH c AS (
               INSERT INTO credentials (account_id, public_id, digest, streams, level, all_domains, name)
               VALUES ($1, $2, $3, $4, $5, $6::bigint[] IS NULL, $7) RETURNING *),
           d AS (
               INSERT INTO credential_domains (credential_id, domain_id)
               SELECT c.id, x FROM c, unnest($6::bigint[]) AS x)
           SELECT * FROM c""",
        account_id, public_id, digest, all_streams, level,
        None if domain_ids is None else list(domain_ids), name,
    )
    assert row is not None
    return row


async def find_for_auth(conn: Conn, public_id: str, today: dt.date, *, domain_limit: int = 0,
                        require_approval: bool = False, grace_seconds: float | None = None,
                        slot_limit: int = 0, held_slots: Sequence[int] = (),
                        unlock_slots: Sequence[int] = ()) -> Record | None:
    """The live credential with this public id and its account, plus, in the same round trip, what
    the rest of the session would look up:

    * `streams`, `level`, `all_domains`, `scope_ids`: the token's grant (`scope_ids` the domain
      ids of a scoped token, NULL when unscoped or when it has no domain left);
    * `touch_due`: whether `touch` would write (last use over a minute ago or never);
    * `usage_period`, `usage_used`: the account's latest usage row with period_start <= `today`
      (NULL when none). The caller compares `usage_period` with the current period it computes;
    * `domain_ids`, `domain_names`: up to `domain_limit` sending domains the account may send from
      right now (`domains.MAY_SEND`) and the token is scoped to (NULL when none; `domain_limit`
      = 0 skips the look-up);
    * `slot`: with `slot_limit` > 0, a session slot of the account taken on this connection
      (`smtp_limits`, skipping the keys in `held_slots`), NULL when all are taken. The session
      slots in `unlock_slots` are released first, in the same statement.

    None when there is no such credential (the slots in `unlock_slots` are released all the same).
    """
    row = await conn.fetchrow(
        """WITH released AS (SELECT count(pg_advisory_unlock(k)) AS n FROM unnest($8::bigint[]) AS k)
           SELECT f.* FROM released LEFT JOIN LATERAL (
           SELECT c.id, c.account_id, c.streams, c.level, c.all_domains, sc.ids AS scope_ids,
                  c.digest, a.name AS account_name,
                  a.monthly_limit, a.max_message_size, a.billing_anchor_day, a.list_unsubscribe,
                  a.require_tls,
                  (c.last_used_at IS NULL OR c.last_used_at < now() - interval '1 minute') AS touch_due,
                  u.period_start AS usage_period, u.used AS usage_used,
                  d.ids AS domain_ids, d.names AS domain_names,
                  """ + smtp_limits.take_slot_sql("c.account_id", "$7", "$9") + """ AS slot
             FROM credentials c JOIN accounts a ON a.id = c.account_id
             LEFT JOIN LATERAL (
                  SELECT array_agg(domain_id) AS ids FROM credential_domains
                   WHERE credential_id = c.id AND NOT c.all_domains) sc ON true
             LEFT JOIN LATERAL (
                  SELECT period_start, used FROM usage
                   WHERE account_id = c.account_id AND period_start <= $2
                   ORDER BY period_start DESC LIMIT 1) u ON true
             LEFT JOIN LATERAL (
                  SELECT array_agg(s.id) AS ids, array_agg(s.name) AS names
                    FROM (SELECT id, name FROM sending_domains
                           WHERE account_id = c.account_id AND """ + MAY_SEND + """
                             AND (c.all_domains OR id = ANY(sc.ids))
                           ORDER BY id LIMIT $6) s) d ON true
            WHERE c.public_id = $1 AND c.revoked_at IS NULL) f ON true""",
        public_id, today, list(SENDING_STATES), require_approval, grace_seconds, domain_limit,
        slot_limit, list(unlock_slots), list(held_slots),
    )
    return None if row is None or row["id"] is None else row


async def touch(conn: Conn, credential_id: int) -> None:
    # Coarse on purpose: one write per credential per minute, not one per AUTH.
    await conn.execute(
        """UPDATE credentials SET last_used_at = now()
            WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        credential_id,
    )


async def revoke(conn: Conn, public_id: str, account_id: int | None = None) -> Record | None:
    """Revoke the credential (only if it is `account_id`'s, when given); None when there is none."""
    return await conn.fetchrow(
        """UPDATE credentials SET revoked_at = coalesce(revoked_at, now())
            WHERE public_id = $1 AND ($2::bigint IS NULL OR account_id = $2) RETURNING *""",
        public_id, account_id,
    )


async def list_all(conn: Conn, account_id: int | None = None) -> list[Record]:
    """Credentials with their grant; `domains` is NULL for every domain, else the names (maybe none)."""
    return list(await conn.fetch(
        """SELECT c.public_id, a.name AS account, c.streams, c.level,
                  CASE WHEN NOT c.all_domains THEN coalesce(
                      (SELECT array_agg(d.name ORDER BY d.name) FROM credential_domains cd
                         JOIN sending_domains d ON d.id = cd.domain_id
                        WHERE cd.credential_id = c.id), '{}') END AS domains,
                  c.name, c.created_at, c.last_used_at, c.revoked_at
             FROM credentials c JOIN accounts a ON a.id = c.account_id
            WHERE $1::bigint IS NULL OR c.account_id = $1
            ORDER BY a.name, c.created_at""",
        account_id,
    ))
