"""Several workers on one queue: exactly-once claims, and a kill -9 mid-delivery loses nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg

from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import db as store_db
from mailtrap_smtp.store import queue
from tests.delivery_util import FAST, enqueue, event_list, rows, state_counts, states, wait_for
from tests.mx_sink import MxSink
from tests.paths import ROOT


async def test_two_services_deliver_each_recipient_exactly_once(make_config: Any, db_dsn: str,
                                                                pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    routes = {d: sink.address for d in ("a.test", "b.test", "c.test")}
    cfg = make_config(delivery={**FAST, "routes": routes, "batch_size": 7, "concurrency": 4,
                                "per_destination_concurrency": 2})
    ids = []
    for i in range(40):
        ids.append(await enqueue(pool, [f"u{i}@a.test", f"v{i}@b.test", f"w{i}@c.test", f"x{i}@a.test"]))
    pools = [await store_db.create_pool(db_dsn, min_size=1, max_size=4) for _ in range(2)]
    services = [DeliveryService(cfg, p, make_resolver(["127.0.0.1:9"], 0.5), worker_id=f"w{n}")
                for n, p in enumerate(pools)]
    try:
        for s in services:
            await s.start()

        async def done() -> bool:
            return (await state_counts(pool)).get("queued", 0) == 0

        await wait_for(done, timeout=30)
    finally:
        for s in services:
            await s.stop(5)
        for p in pools:
            await p.close()
    got = sink.by_rcpt()
    assert len(got) == 160 and all(len(v) == 1 for v in got.values())
    assert await pool.fetchval("SELECT count(*) FROM events WHERE type = 'delivery'") == 160
    # Both took part (the claims interleave), and nobody else's lease was touched.
    workers = await pool.fetch("SELECT DISTINCT leased_by FROM recipients")
    assert [w["leased_by"] for w in workers] == [None]


def _worker_main(config_path: str) -> None:
    """Run one DeliveryService until killed (the child process of the crash test)."""
    from mailtrap_smtp import config as config_mod

    async def main() -> None:
        cfg = config_mod.load(config_path, environ={})
        pool = await store_db.create_pool(cfg.database.dsn, min_size=1, max_size=3)
        svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5), worker_id="doomed")
        await svc.start()
        await asyncio.Event().wait()

    asyncio.run(main())


async def test_kill_9_mid_delivery_loses_nothing(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink,
                                                 tmp_path: Path) -> None:
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}, "lease_seconds": 2.0})
    config_path = tmp_path / "config.toml"  # what make_config just wrote
    sink.stall.set()  # DATA hangs: the kill lands while the transaction is open
    mid = await enqueue(pool, ["a@dest.test", "b@dest.test"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        f"import tests.delivery.test_delivery_concurrency as t; t._worker_main({str(config_path)!r})",
        cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        await wait_for(lambda: len(sink.data_started) >= 1, timeout=20)
        r = await rows(pool, mid)
        assert {x["leased_by"] for x in r.values()} == {"doomed"}
        os.kill(proc.pid, signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # Nothing was recorded for the interrupted attempt; the recipients are still queued, still leased.
    assert await states(pool, mid) == {"a@dest.test": "queued", "b@dest.test": "queued"}
    assert [t for t, _, _ in await event_list(pool, mid)] == ["reception"]
    sink.stall.clear()
    svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5), worker_id="survivor")
    assert await svc.run_once() == 0  # the lease still holds: no double work
    await svc.start()
    try:
        async def delivered() -> bool:
            return set((await states(pool, mid)).values()) == {"delivered"}

        await wait_for(delivered, timeout=15)  # after the 2 s lease runs out
    finally:
        await svc.stop(5)
    evs = [t for t, _, _ in await event_list(pool, mid)]
    assert evs.count("delivery") == 2  # one per recipient, recorded by the survivor
    assert any(x.rcpts == ["a@dest.test", "b@dest.test"] for x in sink.received)


async def test_stop_releases_unfinished_leases(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}, "lease_seconds": 300.0})
    sink.stall.set()
    mid = await enqueue(pool, ["a@dest.test"])
    svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5), worker_id="stopper")
    await svc.start()
    await wait_for(lambda: len(sink.data_started) >= 1, timeout=10)
    await svc.stop(0.2)  # grace too short for the stalled DATA
    r = (await rows(pool, mid))["a@dest.test"]
    assert r["state"] == "queued" and r["leased_by"] is None
    sink.stall.clear()
    svc2 = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
    assert await svc2.run_once() == 1  # due again at once, not after the 300 s lease
    assert await states(pool, mid) == {"a@dest.test": "delivered"}


async def test_lease_takeover_and_renewal(pool: asyncpg.Pool[Any]) -> None:
    from tests.delivery_util import later

    mid = await enqueue(pool, ["a@dest.test", "b@dest.test"])
    mine = await queue.claim(pool, "A", 10, 60)
    assert len(mine) == 2
    assert await queue.claim(pool, "B", 10, 60) == []  # leased: nobody else gets them
    ids = [c.id for c in mine]
    assert await queue.renew(pool, "A", ids, 60) == set(ids)
    # A stalls past its lease; B takes over.
    theirs = await queue.claim(pool, "B", 10, 60, now=later(61))
    assert {c.id for c in theirs} == set(ids)
    assert await queue.renew(pool, "A", ids, 60) == set()  # A learns it lost them
    # A's late deferral changes nothing; a delivery fact still counts, once.
    out = await queue.record_outcomes(pool, "A", [queue.Outcome(ids[0], queue.DEFERRED, "451 x", {}, 5)], 3600)
    assert out == {}
    out = await queue.record_outcomes(pool, "A", [queue.Outcome(ids[1], queue.DELIVERED, "250 ok", {})], 3600)
    assert out == {ids[1]: "delivered"}
    out = await queue.record_outcomes(pool, "B", [queue.Outcome(ids[1], queue.DELIVERED, "250 ok", {})], 3600)
    assert out == {}
    assert [t for t, _, _ in await event_list(pool, mid)] == ["reception", "delivery"]


async def test_unexpected_error_defers_instead_of_losing(make_config: Any, pool: asyncpg.Pool[Any]) -> None:
    class BrokenResolver:
        async def resolve(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("boom")

    cfg = make_config(delivery=FAST)
    svc = DeliveryService(cfg, pool, BrokenResolver())  # type: ignore[arg-type]
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    r = (await rows(pool, mid))["a@dest.test"]
    assert r["state"] == "queued" and r["leased_by"] is None and r["attempts"] == 1
    assert "internal error" in r["last_reply"]
    assert [t for t, _, _ in await event_list(pool, mid)] == ["reception", "transient_failure"]


async def test_worker_that_lost_its_lease_does_not_send_the_rest(make_config: Any, pool: asyncpg.Pool[Any],
                                                                 sink: MxSink) -> None:
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}, "lease_seconds": 1.0,
                                "per_destination_concurrency": 1})
    m1 = await enqueue(pool, ["one@dest.test"])
    m2 = await enqueue(pool, ["two@dest.test"])
    a = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5), worker_id="A")
    # B's clock runs 2 s ahead: to B, A's 1 s lease has run out (no sleeping against the lease).
    b = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5), worker_id="B",
                        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2))
    sink.stall.set()  # A's first DATA hangs
    task_a = asyncio.create_task(a.run_once())
    await wait_for(lambda: len(sink.data_started) >= 1, timeout=5)
    task_b = asyncio.create_task(b.run_once())  # takes both over
    # A renews (and so learns it lost the lease) only once half of its lease is used, measured on
    # time.monotonic in worker.py, not on the injected clock: that half must pass in real time.
    await asyncio.sleep(0.6)
    await wait_for(lambda: len(sink.data_started) >= 2, timeout=5)
    sink.stall.clear()
    assert await task_a == 2 and await task_b == 2
    assert await states(pool, m1) == {"one@dest.test": "delivered"}
    assert await states(pool, m2) == {"two@dest.test": "delivered"}
    got = sink.by_rcpt()
    assert len(got["one@dest.test"]) == 2  # in flight on both when the lease ran out: at-least-once
    assert len(got["two@dest.test"]) == 1  # A saw it had lost the lease and left it to B
    assert [t for t, _, _ in await event_list(pool, m1)].count("delivery") == 1


async def test_per_destination_concurrency_bounds_parallel_connections(
        make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address, "other.test": sink.address},
                                "per_destination_concurrency": 2, "concurrency": 10})
    for i in range(6):
        await enqueue(pool, [f"r{i}@dest.test"])
    await enqueue(pool, ["x@other.test"])
    svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
    sink.stall.set()
    task = asyncio.create_task(svc.run_once())
    await wait_for(lambda: len(sink.data_started) >= 3, timeout=5)
    await asyncio.sleep(0.3)
    # Two transactions stalled at dest.test (its limit) plus the one to other.test, no more.
    started = [x.rcpts[0].partition("@")[2] for x in sink.data_started]
    assert sorted(started) == ["dest.test", "dest.test", "other.test"]
    sink.stall.clear()
    assert await task == 7
    assert (await state_counts(pool)) == {"delivered": 7}
