"""Delivery to hosts found through MX records served by the loopback DNS server."""

from __future__ import annotations

from typing import Any

import asyncpg

from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from tests.delivery_util import FAST, enqueue, event_list, later, rows, states
from tests.mx_sink import MxSink


def service(make_config: Any, pool: asyncpg.Pool[Any], dns_server: Any, sink: MxSink) -> DeliveryService:
    cfg = make_config(delivery=FAST, dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0})
    # The sink listens on 127.0.0.1:<port>; MX hosts are reached on that port instead of 25.
    return DeliveryService(cfg, pool, make_resolver(cfg.dns.nameservers, 1.0), mx_port=sink.port)


async def test_mx_order_first_down_second_used(make_config: Any, pool: asyncpg.Pool[Any], dns_server: Any,
                                               sink: MxSink) -> None:
    dns_server.add("dest.test", "MX", "10 mx1.dest.test.")
    dns_server.add("dest.test", "MX", "20 mx2.dest.test.")
    dns_server.add("mx1.dest.test", "A", "127.0.0.2")  # nothing listens there: refused
    dns_server.add("mx2.dest.test", "A", "127.0.0.1")
    svc = service(make_config, pool, dns_server, sink)
    mid = await enqueue(pool, ["a@dest.test", "b@Dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered", "b@Dest.test": "delivered"}
    assert len(sink.received) == 1 and sink.received[0].rcpts == ["a@dest.test", "b@Dest.test"]
    ds = [d for t, _, d in await event_list(pool, mid) if t == "delivery"]
    assert {d["mx"] for d in ds} == {"mx2.dest.test"}


async def test_mx_preferred_host_is_used_first(make_config: Any, pool: asyncpg.Pool[Any], dns_server: Any,
                                               sink: MxSink) -> None:
    dns_server.add("dest.test", "MX", "20 backup.dest.test.")
    dns_server.add("dest.test", "MX", "5 primary.dest.test.")
    dns_server.add("primary.dest.test", "A", "127.0.0.1")
    dns_server.add("backup.dest.test", "A", "127.0.0.1")
    svc = service(make_config, pool, dns_server, sink)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    (d,) = [d for t, _, d in await event_list(pool, mid) if t == "delivery"]
    assert d["mx"] == "primary.dest.test"


async def test_a_record_fallback_without_mx(make_config: Any, pool: asyncpg.Pool[Any], dns_server: Any,
                                            sink: MxSink) -> None:
    dns_server.add("dest.test", "A", "127.0.0.1")
    svc = service(make_config, pool, dns_server, sink)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}


async def test_null_mx_and_nxdomain_bounce(make_config: Any, pool: asyncpg.Pool[Any], dns_server: Any,
                                           sink: MxSink) -> None:
    dns_server.add("nomail.test", "MX", "0 .")
    dns_server.add("other.test", "A", "127.0.0.1")  # so the zone has something
    svc = service(make_config, pool, dns_server, sink)
    mid = await enqueue(pool, ["a@nomail.test", "b@missing.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@nomail.test": "bounced", "b@missing.test": "bounced"}
    bs = {r: d for t, r, d in await event_list(pool, mid) if t == "bounce"}
    assert bs["a@nomail.test"]["category"] == "dns_failure" and "5.1.10" in bs["a@nomail.test"]["reply"]
    assert bs["b@missing.test"]["category"] == "dns_failure" and "NXDOMAIN" in bs["b@missing.test"]["reply"]
    assert not sink.ehlos


async def test_servfail_is_transient_then_retried(make_config: Any, pool: asyncpg.Pool[Any], dns_server: Any,
                                                  sink: MxSink) -> None:
    dns_server.add("dest.test", "MX", "10 mx.dest.test.")
    dns_server.add("mx.dest.test", "A", "127.0.0.1")
    dns_server.servfail("dest.test")
    svc = service(make_config, pool, dns_server, sink)
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    r = (await rows(pool, mid))["a@dest.test"]
    assert r["state"] == "queued" and r["attempts"] == 1 and r["last_reply"].startswith("451 4.4.3")
    (t,) = [d for t, _, d in await event_list(pool, mid) if t == "transient_failure"]
    assert t["category"] == "dns_failure"
    dns_server.heal("dest.test")
    svc.clock = lambda: later(1.5)
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}


async def test_mx_refusing_at_greeting_is_skipped(make_config: Any, pool: asyncpg.Pool[Any], dns_server: Any,
                                                  sink: MxSink) -> None:
    import asyncio

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.3.2 not accepting mail now\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.2", sink.port)
    try:
        dns_server.add("dest.test", "MX", "10 busy.dest.test.")
        dns_server.add("dest.test", "MX", "20 ok.dest.test.")
        dns_server.add("busy.dest.test", "A", "127.0.0.2")
        dns_server.add("ok.dest.test", "A", "127.0.0.1")
        svc = service(make_config, pool, dns_server, sink)
        mid = await enqueue(pool, ["a@dest.test"])
        await svc.run_once()
        assert await states(pool, mid) == {"a@dest.test": "delivered"}
        (d,) = [d for t, _, d in await event_list(pool, mid) if t == "delivery"]
        assert d["mx"] == "ok.dest.test"
    finally:
        server.close()
        await server.wait_closed()
