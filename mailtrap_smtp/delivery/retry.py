"""The retry schedule: how long a recipient waits after its n-th failed attempt.

RFC 5321 §4.5.4.1 asks for a retry interval of at least 30 minutes and a give-up time of at least
4-5 days, and notes that a sender that retries a few times early catches most transient failures
(greylisting, a restarting server). The schedule therefore starts with the configured fixed steps
(`retry_schedule_seconds`, short and growing), then settles to a random interval between
`retry_interval_min_seconds` and `retry_interval_max_seconds`: the jitter keeps a queue that piled up
behind one outage from hammering the recovering server in lock-step.
"""

from __future__ import annotations

import random

from ..config import DeliveryConfig


def next_delay(attempts: int, cfg: DeliveryConfig, rng: random.Random | None = None) -> float:
    """Seconds to wait after `attempts` attempts (1 = the first attempt just failed)."""
    schedule = cfg.retry_schedule_seconds
    if attempts < 1:
        attempts = 1
    if attempts <= len(schedule):
        return float(schedule[attempts - 1])
    lo, hi = cfg.retry_interval_min_seconds, cfg.retry_interval_max_seconds
    return float((rng or random).uniform(lo, hi))
