"""Requests per token per window (Mailtrap: 150 per 10 s per API token, MAILTRAP_COMPAT.md §8),
counted across the processes of one node.

The counts live in shared memory that the parent of `serve --processes N` creates and hands to
every process (as `smtp/peers.py` does for per-IP counts), guarded by one inter-process lock: the
kernel spreads a client's connections over the processes, and per-process counts would let a
token make N times its budget. Across nodes the limit is per node (like SMTP's per-IP limits).

Fixed windows per credential: a window starts with the first request after the previous one ended
(CLOCK_MONOTONIC, the same clock in every process). Layout: `BUCKETS` x `WAYS` entries of
(credential id, window start, count); a full bucket lets a stranger's token in uncounted rather
than refusing it.
"""

from __future__ import annotations

import math
import multiprocessing
import struct
import time
from dataclasses import dataclass
from typing import Any

BUCKETS = 1024
WAYS = 8
_ENTRY = struct.Struct("=qdi")  # credential id (0: free), window start, requests in the window


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the window ends (the Retry-After when refused)


def shared() -> tuple[Any, Any]:
    """Memory and lock for the processes of one `serve` (pass to each, like `peers.shared_state`)."""
    ctx = multiprocessing.get_context("spawn")
    return ctx.RawArray("B", BUCKETS * WAYS * _ENTRY.size), ctx.Lock()


class RateLimiter:
    def __init__(self, limit: int, window_seconds: float, memory: tuple[Any, Any] | None = None) -> None:
        raw, lock = memory if memory is not None else shared()
        self._memory = memoryview(raw).cast("B")
        self._lock = lock
        self.limit = limit
        self.window = window_seconds

    def hit(self, credential_id: int, now: float | None = None) -> Decision:
        """Count one request of `credential_id`; refused ones are counted too (a client hammering
        while refused stays refused until its window ends)."""
        now = time.monotonic() if now is None else now
        base = (credential_id % BUCKETS) * WAYS * _ENTRY.size
        with self._lock:
            free = stale = -1
            for way in range(WAYS):
                off = base + way * _ENTRY.size
                key, start, count = _ENTRY.unpack_from(self._memory, off)
                if key == credential_id:
                    if now - start >= self.window:
                        start, count = now, 0
                    count += 1
                    _ENTRY.pack_into(self._memory, off, key, start, count)
                    return self._decision(start, count, now)
                if key == 0 and free < 0:
                    free = way
                elif key != 0 and now - start >= self.window and stale < 0:
                    stale = way
            way = free if free >= 0 else stale
            if way < 0:
                return Decision(True, self.limit, self.limit, math.ceil(self.window))
            _ENTRY.pack_into(self._memory, base + way * _ENTRY.size, credential_id, now, 1)
            return self._decision(now, 1, now)

    def _decision(self, start: float, count: int, now: float) -> Decision:
        reset = max(1, math.ceil(start + self.window - now))
        return Decision(count <= self.limit, self.limit, max(0, self.limit - count), reset)
