"""A recipient claimed again after a lease that ran out without an outcome: the event of the next
attempt says `possible_duplicate`, so logs and webhooks can tell (issue 9)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from mailtrap_smtp.store import queue
from tests import delivery_util
from tests.delivery_util import enqueue, event_list, service
from tests.mx_sink import MxSink

sink = delivery_util.sink  # fixture


async def test_attempt_after_a_lost_lease_is_marked_possible_duplicate(
        make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    lost = await enqueue(pool, ["lost@dest.test"])
    # A worker claimed it and vanished (killed, or the database went away before it could record
    # what the remote end said): its lease runs out with no outcome.
    assert len(await queue.claim(pool, "vanished-worker", 10, 0.05)) == 1
    fresh = await enqueue(pool, ["fresh@dest.test"])
    await asyncio.sleep(0.2)
    svc = service(make_config, pool, {"dest.test": sink.address})
    assert await svc.run_once() == 2
    (lost_event,) = [d for t, _, d in await event_list(pool, lost) if t == "delivery"]
    (fresh_event,) = [d for t, _, d in await event_list(pool, fresh) if t == "delivery"]
    assert lost_event["possible_duplicate"] is True
    assert "possible_duplicate" not in fresh_event
    # Recorded once: a later attempt of the same recipient is not marked again.
    assert not svc._possible_duplicates
