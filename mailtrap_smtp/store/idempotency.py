"""Idempotency keys: claim one, record the answer, release it."""

from __future__ import annotations

import json
from typing import Any

from .types import Conn, Record

# Claim `key` for a credential: a new key, or one whose 24 hours are over, becomes this request's
# (state in_flight); otherwise the row as it is (done: the kept answer; in_flight: another request's).
# One statement, so two requests with the same key in any processes or nodes cannot both win. It
# also removes a few expired keys of the credential, so the table does not grow without bound.
_CLAIM = """
WITH purge AS (
    DELETE FROM idempotency_keys
     WHERE ctid IN (SELECT ctid FROM idempotency_keys
                     WHERE credential_id = $1 AND key <> $2
                       AND created_at < now() - make_interval(secs => $3) LIMIT 20)
), mine AS (
    INSERT INTO idempotency_keys AS k (credential_id, key, state) VALUES ($1, $2, 'in_flight')
    ON CONFLICT (credential_id, key) DO UPDATE
       SET state = 'in_flight', status = NULL, response = NULL, created_at = now()
     WHERE k.created_at < now() - make_interval(secs => $3)
    RETURNING true AS claimed, state, status, response
)
SELECT claimed, state, status, response FROM mine
UNION ALL
SELECT false, state, status, response FROM idempotency_keys
 WHERE credential_id = $1 AND key = $2 AND NOT EXISTS (SELECT 1 FROM mine)
"""


async def claim(conn: Conn, credential_id: int, key: str, ttl_seconds: float) -> Record:
    # A row inserted by a concurrent statement after this one's snapshot makes the INSERT yield to
    # it (ON CONFLICT waits for it) but is not visible to the SELECT: the statement then returns
    # nothing, and the next one, with a fresh snapshot, sees it.
    for _ in range(5):
        row = await conn.fetchrow(_CLAIM, credential_id, key, ttl_seconds)
        if row is not None:
            return row
    raise RuntimeError("idempotency key claim did not settle")


async def finish(conn: Conn, credential_id: int, key: str, status: int, response: Any) -> None:
    await conn.execute(
        """UPDATE idempotency_keys SET state = 'done', status = $3, response = $4::jsonb
            WHERE credential_id = $1 AND key = $2""",
        credential_id, key, status, json.dumps(response),
    )


async def release(conn: Conn, credential_id: int, key: str) -> None:
    await conn.execute("DELETE FROM idempotency_keys WHERE credential_id = $1 AND key = $2 AND state = 'in_flight'",
                       credential_id, key)
