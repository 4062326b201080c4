"""DKIM signing at acceptance: the domain's active keys, decrypted once and cached, applied last."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import dkim
from .store import domains as domains_store
from .store.types import Conn

# A rotation activates a new key in the database; other processes and nodes pick it up within this
# many seconds. Old and new keys are both published during a rotation, so either signature verifies.
CACHE_SECONDS = 60.0
OFFLOAD_BYTES = 256 * 1024


class KeyStore:
    """Loads each domain's active keys from the database, keeps the parsed keys in memory."""

    def __init__(self, pool: Conn, kek: bytes, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self._pool = pool
        self._kek = kek
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, list[dkim.SigningKey]]] = {}

    async def keys_for(self, domain: str) -> list[dkim.SigningKey]:
        now = time.monotonic()
        hit = self._cache.get(domain)
        if hit is not None and hit[0] > now:
            return hit[1]
        rows = await domains_store.active_keys_by_domain_name(self._pool, domain)
        keys = [
            dkim.SigningKey.from_pem(row["domain"], row["selector"], row["algorithm"], self._decrypt(row))
            for row in rows
        ]
        self._cache[domain] = (now + self._cache_seconds, keys)
        return keys

    def forget(self, domain: str) -> None:
        self._cache.pop(domain, None)

    async def sign(self, message: bytes, domain: str) -> bytes:
        """The message with its DKIM-Signature header(s) prepended (unchanged if the domain has no key)."""
        keys = await self.keys_for(domain)
        if not keys:
            return message
        if len(message) > OFFLOAD_BYTES:
            # ~4 ms per MB of canonicalisation and hashing: off the event loop, so other sessions
            # are not stalled behind a large message.
            return await asyncio.to_thread(dkim.sign, message, keys) + message
        return dkim.sign(message, keys) + message

    def _decrypt(self, row: Any) -> bytes:
        aad = key_aad(row["domain"], row["selector"])
        return dkim.decrypt_private_key(self._kek, bytes(row["private_key_enc"]), aad)


def key_aad(domain: str, selector: str) -> bytes:
    """Binds an encrypted key to its row, so a blob copied to another domain will not decrypt."""
    return f"{domain}:{selector}".encode()
