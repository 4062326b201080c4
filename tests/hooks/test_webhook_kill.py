"""kill -9 of `serve --role hooks` in the middle of a webhook POST: the next process delivers every
event at least once, skips none, keeps the order, and the same event keeps its `event_id`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg

from mailtrap_smtp.core import webhooks
from tests.paths import ROOT
from tests.webhook_receiver import Receiver
from tests.webhook_world import World


async def _serve_hooks(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtrap_smtp", "-c", str(config), "serve", "--role", "hooks", "--processes", "1",
        stderr=asyncio.subprocess.DEVNULL, cwd=ROOT)


async def test_kill_9_mid_batch_loses_and_skips_nothing(pool: asyncpg.Pool[Any], make_config: Any,
                                                        tmp_path: Path) -> None:
    make_config(webhooks={"allow_private_targets": True, "flush_seconds": 0.0, "timeout_seconds": 3.0},
                outbox={"lease_seconds": 4.0, "poll_seconds": 0.2})
    receiver = Receiver(statuses=["hang"])  # the first POST never gets an answer
    await receiver.start()
    procs: list[asyncio.subprocess.Process] = []
    try:
        world = await World.create(pool)
        await webhooks.create(pool, world.account_id, webhooks.WebhookSpec(url=receiver.url()), allow_private=True)
        rids = await world.send(1100)
        for i in range(0, 1100, 100):
            await world.finish(rids[i:i + 100])
        expected = await world.event_ids()

        procs.append(await _serve_hooks(tmp_path / "config.toml"))
        await receiver.wait_for(1, timeout=60)
        os.kill(procs[0].pid, signal.SIGKILL)  # in the middle of its first batch
        await procs[0].wait()
        receiver.statuses = ["hang", 200]
        procs.append(await _serve_hooks(tmp_path / "config.toml"))
        async with asyncio.timeout(60):
            while {e["event_id"] for r in receiver.requests[1:] for e in r.events()} != set(expected):
                await asyncio.sleep(0.1)
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
                await p.wait()
        await receiver.stop()
    batches = [r.events() for r in receiver.requests]
    assert [len(b) for b in batches] == [500, 500, 500, 100]
    # The batch the killed process was posting is posted again: the same events, the same ids and
    # bodies; after it, every event exactly once and in order.
    assert batches[1] == batches[0]
    assert [e["event_id"] for b in batches[1:] for e in b] == expected
