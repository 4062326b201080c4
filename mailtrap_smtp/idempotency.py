"""Idempotency of submissions (no Mailtrap, Postal or Postfix has it): a client-chosen key, at most
256 characters, per token, remembered 24 h in PostgreSQL. The first request with a key runs; its
answer is kept; a repeat gets that answer again (same status, body and ids) and sends and charges
nothing; a repeat that arrives while the first is still running is refused (`IN_FLIGHT`).

An answer that says "try again" (the database was unavailable) is not kept: the key is released, so
the retry runs. If the process dies while a request is in flight, its key stays claimed until the
24 hours are over (refusing the repeat is the safe side: the message may have been committed).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from .auth import DB_ERRORS
from .outcomes import Outcome, Rejected
from .store import idempotency as store

MAX_KEY = 256
TTL_SECONDS = 24 * 3600.0


class Claim(enum.Enum):
    NEW = "new"              # run the request, then `finish` (or `release`)
    REPLAY = "replay"        # answer `Claimed.status` / `Claimed.response` again
    IN_FLIGHT = "in_flight"  # the first request with this key has not finished


@dataclass(frozen=True)
class Claimed:
    claim: Claim
    status: int | None = None
    response: Any = None


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY and key.isascii() and key.isprintable()


async def claim(pool: Any, credential_id: int, key: str) -> Claimed:
    try:
        row = await store.claim(pool, credential_id, key, TTL_SECONDS)
    except DB_ERRORS:
        raise Rejected(Outcome.TEMPORARILY_UNAVAILABLE) from None
    if row["claimed"]:
        return Claimed(Claim.NEW)
    if row["state"] == "done":
        response = row["response"]
        body = json.loads(response) if isinstance(response, str) else response
        return Claimed(Claim.REPLAY, int(row["status"]), body)
    return Claimed(Claim.IN_FLIGHT)


async def finish(pool: Any, credential_id: int, key: str, status: int, response: Any) -> None:
    """Keep the answer of the request that claimed `key`."""
    await store.finish(pool, credential_id, key, status, response)


async def release(pool: Any, credential_id: int, key: str) -> None:
    """Forget an in-flight key (its request ended without an answer worth keeping)."""
    await store.release(pool, credential_id, key)
