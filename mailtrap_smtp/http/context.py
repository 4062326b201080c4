"""What every route needs, built once per process by `server.HttpService` and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..auth import Authenticator
from ..config import Config
from ..submission import Submission
from .ratelimit import RateLimiter


@dataclass
class ApiContext:
    cfg: Config
    pool: Any
    submission: Submission
    authenticator: Authenticator
    limiter: RateLimiter
    kek: bytes = b""  # encrypts the DKIM keys of domains created through the API
    resolver: Any = None  # for re-checks on demand (dnsresolve.make_resolver)
    budgets: dict[int, RateLimiter] = field(default_factory=dict)  # per-account budgets (http/scope.py)
