"""Requests per token per window (MAILTRAP_COMPAT.md §8, §9 item 9): the counter itself, shared by
processes, and the API's 429 with Retry-After."""

from __future__ import annotations

import multiprocessing
from typing import Any

from mailtrap_smtp.http.ratelimit import RateLimiter, shared
from tests.http_util import ApiEnv, minimal


def test_window_counts_and_resets() -> None:
    lim = RateLimiter(3, 10.0)
    decisions = [lim.hit(7, now=100.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].reset_seconds == 10
    assert lim.hit(7, now=104.5).reset_seconds == 6
    assert lim.hit(8, now=104.5).allowed  # another token has its own budget
    assert lim.hit(7, now=110.0).allowed  # a new window


def _hit_many(memory: Any, n: int, out: Any) -> None:
    lim = RateLimiter(150, 3600.0, memory)
    out.put(sum(lim.hit(42).allowed for _ in range(n)))


def test_budget_is_shared_by_processes() -> None:
    memory = shared()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hit_many, args=(memory, 100, out)) for _ in range(2)]
    for p in procs:
        p.start()
    allowed = out.get(timeout=60) + out.get(timeout=60)
    for p in procs:
        p.join(timeout=60)
    assert allowed == 150


async def test_api_answers_429_with_retry_after(api_factory: Any) -> None:
    env: ApiEnv = await api_factory(http={"rate_limit_requests": 2})
    async with env.client() as c:
        ok = [await c.post("/api/send", json=minimal(), headers=env.auth()) for _ in range(2)]
        refused = await c.post("/api/send", json=minimal(), headers=env.auth())
    assert [r.status_code for r in ok] == [200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in ok] == ["1", "0"]
    assert refused.status_code == 429
    assert refused.json() == {"success": False, "errors": ["Rate limit exceeded"]}
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    assert await env.counts() == {"messages": 2, "recipients": 2, "used": 2}


async def test_management_paths_answer_429_in_their_shape(api_factory: Any) -> None:  # §9 item 9
    env: ApiEnv = await api_factory(http={"rate_limit_requests": 1})
    async with env.client() as c:
        first = await c.get("/api/accounts", headers=env.auth())
        refused = await c.get("/api/accounts", headers=env.auth())
    assert first.status_code == 200
    assert (refused.status_code, refused.json()) == (429, {"errors": "Rate limit exceeded"})
    assert int(refused.headers["Retry-After"]) >= 1
