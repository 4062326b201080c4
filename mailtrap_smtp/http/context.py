"""What every route needs, built once per process by `server.HttpService` and kept on `app.state`;
and the per-process cache of token look-ups it holds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..auth import Authenticator, Principal
from ..config import Config
from ..core.templates import Templates
from ..submission import Submission
from .ratelimit import RateLimiter


class TokenCache:
    """Successful token look-ups of this process, reused for `ttl` seconds (`http.token_cache_seconds`).

    Keyed by the token's digest and what was asked (stream, sending); only OK outcomes are kept, so a
    new token works at once and a refusal is never remembered. The quota and sender domains a cached
    principal carries are advisory anyway: the commit re-checks the quota atomically.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[bytes, str, bool], tuple[float, Principal]] = {}

    def get(self, key: tuple[bytes, str, bool]) -> Principal | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: tuple[bytes, str, bool], principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, principal)


@dataclass
class ApiContext:
    cfg: Config
    pool: Any
    submission: Submission
    authenticator: Authenticator
    limiter: RateLimiter
    templates: Templates
    kek: bytes = b""  # encrypts the DKIM keys of domains created through the API
    resolver: Any = None  # for re-checks on demand (dnsresolve.make_resolver)
    token_cache: TokenCache = field(default_factory=lambda: TokenCache(0.0))
    budgets: dict[int, RateLimiter] = field(default_factory=dict)  # per-account budgets (http/scope.py)
