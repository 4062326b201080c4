"""Delivery over real SMTP to a loopback sink reached through a route: outcomes, bytes, TLS, admin."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.store import messages, queue
from tests.delivery_util import FAST, enqueue, event_list, later, make_raw, rows, service, states, wait_for
from tests.mx_sink import MxSink


async def test_delivery_via_route_records_delivery_event(make_config: Any, pool: asyncpg.Pool[Any],
                                                         sink: MxSink) -> None:
    svc = service(make_config, pool, {"dest.test": sink.address})
    mid = await enqueue(pool, ["a@dest.test"])
    assert await svc.run_once() == 1
    assert await states(pool, mid) == {"a@dest.test": "delivered"}
    (item,) = sink.received
    assert item.rcpts == ["a@dest.test"] and item.mail_from == "bounces@src.test"
    assert item.helo == "mx.service.test"
    evs = [e for e in await event_list(pool, mid) if e[0] == "delivery"]
    assert len(evs) == 1
    _, rcpt, details = evs[0]
    assert rcpt == "a@dest.test"
    assert details["reply"].startswith("250 2.0.0") and details["mx"] == "127.0.0.1"
    assert details["tls"] is None  # the sink offers no STARTTLS
    r = (await rows(pool, mid))["a@dest.test"]
    assert r["attempts"] == 1 and r["leased_by"] is None


async def test_body_bytes_arrive_exactly(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    body = (b".leading dot\r\n..two dots\r\n.\r\nnot the end\r\n" + b"x" * 996 + b"\r\n"
            + b". dot space\r\n" + ("caf\u00e9 8bit".encode()) + b"\r\n.")
    raw = make_raw(body=body + b"\r\n")
    svc = service(make_config, pool, {"dest.test": sink.address})
    mid = await enqueue(pool, ["a@dest.test"], raw=raw)
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}
    stored = (await messages.get(pool, mid))["raw"]
    assert sink.received[0].data == stored == raw
    assert "BODY=8BITMIME" in sink.received[0].mail_options
    assert any(o.startswith("SIZE=") for o in sink.received[0].mail_options)


async def test_several_recipients_one_transaction_mixed_outcomes(make_config: Any, pool: asyncpg.Pool[Any],
                                                                 sink: MxSink) -> None:
    sink.rcpt_replies["gone@dest.test"] = "550 5.1.1 <gone@dest.test>: Recipient address rejected: User unknown"
    sink.rcpt_replies["busy@dest.test"] = "452 4.2.2 Mailbox full, try later"
    sink.rcpt_replies["spam@dest.test"] = "550 5.7.1 Message rejected as spam by Spamhaus"
    svc = service(make_config, pool, {"dest.test": sink.address})
    rcpts = ["ok1@dest.test", "gone@dest.test", "busy@dest.test", "ok2@dest.test", "spam@dest.test"]
    mid = await enqueue(pool, rcpts)
    await svc.run_once()
    assert await states(pool, mid) == {"ok1@dest.test": "delivered", "gone@dest.test": "bounced",
                                       "busy@dest.test": "queued", "ok2@dest.test": "delivered",
                                       "spam@dest.test": "bounced"}
    assert len(sink.received) == 1 and sink.received[0].rcpts == ["ok1@dest.test", "ok2@dest.test"]
    evs = {(t, r): d for t, r, d in await event_list(pool, mid) if r}
    assert evs[("bounce", "gone@dest.test")]["category"] == "bad_recipient"
    assert evs[("bounce", "gone@dest.test")]["reply"].startswith("550 5.1.1")
    assert evs[("bounce", "spam@dest.test")]["category"] == "spam_block"
    t = evs[("transient_failure", "busy@dest.test")]
    assert t["category"] == "mailbox_full" and t["reply"].startswith("452 4.2.2") and "next_attempt_at" in t
    busy = (await rows(pool, mid))["busy@dest.test"]
    assert busy["attempts"] == 1 and busy["last_reply"].startswith("452")


async def test_several_messages_share_one_connection(make_config: Any, pool: asyncpg.Pool[Any],
                                                     sink: MxSink) -> None:
    svc = service(make_config, pool, {"dest.test": sink.address}, per_destination_concurrency=1)
    ids = [await enqueue(pool, [f"r{i}@dest.test", f"s{i}@dest.test"]) for i in range(5)]
    await svc.run_once()
    for mid in ids:
        assert set((await states(pool, mid)).values()) == {"delivered"}
    assert len(sink.received) == 5 and all(len(x.rcpts) == 2 for x in sink.received)
    assert len(sink.ehlos) == 1  # ONE connection carried all five transactions


async def test_transient_then_success_and_bounce_at_data(make_config: Any, pool: asyncpg.Pool[Any],
                                                         sink: MxSink) -> None:
    sink.data_reply = "451 4.3.0 Temporary local problem"
    svc = service(make_config, pool, {"dest.test": sink.address})
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    r = (await rows(pool, mid))["a@dest.test"]
    assert r["state"] == "queued" and r["attempts"] == 1 and r["leased_by"] is None
    assert await svc.run_once() == 0  # not due yet (schedule: 1 s)
    sink.data_reply = "250 2.0.0 fine now"
    svc.clock = lambda: later(1.5)
    assert await svc.run_once() == 1
    r = (await rows(pool, mid))["a@dest.test"]
    assert r["state"] == "delivered" and r["attempts"] == 2
    assert [t for t, _, _ in await event_list(pool, mid)] == ["reception", "transient_failure", "delivery"]
    # A 5xx at DATA bounces every recipient of the transaction.
    sink.data_replies["x@dest.test"] = "554 5.3.4 Message too big for system"
    mid2 = await enqueue(pool, ["x@dest.test", "y@dest.test"])
    svc.clock = None
    await svc.run_once()
    assert await states(pool, mid2) == {"x@dest.test": "bounced", "y@dest.test": "bounced"}
    cats = {d["category"] for t, _, d in await event_list(pool, mid2) if t == "bounce"}
    assert cats == {"message_too_large"}


async def test_connection_refused_is_transient(make_config: Any, pool: asyncpg.Pool[Any]) -> None:
    from tests.mx_sink import free_port

    svc = service(make_config, pool, {"dest.test": f"127.0.0.1:{free_port()}"})
    mid = await enqueue(pool, ["a@dest.test", "b@dest.test"])
    await svc.run_once()
    r = await rows(pool, mid)
    assert {x["state"] for x in r.values()} == {"queued"}
    assert all("cannot connect" in x["last_reply"] for x in r.values())
    evs = [d for t, _, d in await event_list(pool, mid) if t == "transient_failure"]
    assert len(evs) == 2 and evs[0]["category"] == "connection_failure"


async def test_connection_dropped_mid_transaction_is_transient(make_config: Any, pool: asyncpg.Pool[Any],
                                                               sink: MxSink) -> None:
    sink.data_replies["a@dest.test"] = "drop"
    svc = service(make_config, pool, {"dest.test": sink.address}, per_destination_concurrency=1)
    m1 = await enqueue(pool, ["a@dest.test"])
    m2 = await enqueue(pool, ["b@dest.test"])
    await svc.run_once()
    assert await states(pool, m1) == {"a@dest.test": "queued"}
    assert "connection lost" in (await rows(pool, m1))["a@dest.test"]["last_reply"]
    # The next message on that connection got a fresh connection and went through.
    assert await states(pool, m2) == {"b@dest.test": "delivered"}


async def test_expiry_at_failure_and_at_claim(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    sink.data_reply = "421 4.7.0 Try again later"
    svc = service(make_config, pool, {"dest.test": sink.address}, max_queue_lifetime_seconds=3600)
    mid = await enqueue(pool, ["a@dest.test"])
    # Claimed just inside the lifetime, the attempt fails just after it: expired, not retried.
    times = iter([later(3590)])
    svc.clock = lambda: next(times, later(3610))
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "expired"}
    (exp,) = [d for t, _, d in await event_list(pool, mid) if t == "expiration"]
    assert exp["reply"].startswith("421 4.7.0")
    # At claim time: never attempted at all.
    svc.clock = lambda: later(3 * 3600)
    mid2 = await enqueue(pool, ["b@dest.test"])
    n_before = len(sink.data_started)
    await svc.run_once()
    assert await states(pool, mid2) == {"b@dest.test": "expired"}
    assert len(sink.data_started) == n_before
    # The last retry is scheduled no later than the end of the lifetime.
    svc.clock = lambda: later(3590)
    mid3 = await enqueue(pool, ["c@dest.test"])
    await svc.run_once()
    r = (await rows(pool, mid3))["c@dest.test"]
    assert r["state"] == "queued"
    created = (await messages.get(pool, mid3))["created_at"]
    assert (r["next_attempt_at"] - created).total_seconds() <= 3600.001


async def test_envelope_with_control_characters_bounces_without_network(
        make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    svc = service(make_config, pool, {"dest.test": sink.address})
    mid = await enqueue(pool, ["evil\r\nRCPT TO:<x@dest.test>@dest.test", "ctl\x01@dest.test", "good@dest.test"])
    await svc.run_once()
    st = await states(pool, mid)
    assert sorted(st.values()) == ["bounced", "bounced", "delivered"]
    assert sink.received[0].rcpts == ["good@dest.test"]
    cats = [d["category"] for t, _, d in await event_list(pool, mid) if t == "bounce"]
    assert cats == ["invalid_envelope", "invalid_envelope"]
    # A bad sender: no connection at all.
    ehlos = len(sink.ehlos)
    mid2 = await enqueue(pool, ["good@dest.test"], mail_from="a\rb@src.test")
    await svc.run_once()
    assert await states(pool, mid2) == {"good@dest.test": "bounced"}
    assert len(sink.ehlos) == ehlos


async def test_starttls_used_when_offered(make_config: Any, pool: asyncpg.Pool[Any], tls_sink: MxSink) -> None:
    svc = service(make_config, pool, {"dest.test": tls_sink.address})
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}
    assert tls_sink.received[0].tls
    (d,) = [d for t, _, d in await event_list(pool, mid) if t == "delivery"]
    assert d["tls"] in ("TLSv1.2", "TLSv1.3")


async def test_require_tls_refuses_cleartext(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    svc = service(make_config, pool, {"dest.test": sink.address, "other.test": sink.address},
                  require_tls_domains=["dest.test"], max_queue_lifetime_seconds=600)
    mid = await enqueue(pool, ["a@dest.test", "b@other.test"])
    await svc.run_once()
    st = await states(pool, mid)
    assert st == {"a@dest.test": "queued", "b@other.test": "delivered"}
    r = (await rows(pool, mid))["a@dest.test"]
    assert "TLS required but not offered" in r["last_reply"]
    assert [x.rcpts for x in sink.received] == [["b@other.test"]]
    # ... and after the lifetime it expires, never sent in clear.
    svc.clock = lambda: later(700)
    await svc.run_once()
    assert (await states(pool, mid))["a@dest.test"] == "expired"
    assert len(sink.received) == 1


async def test_require_tls_verifies_certificate(make_config: Any, pool: asyncpg.Pool[Any], tls_sink: MxSink,
                                                ca_file: Path) -> None:
    cfg = make_config(delivery={**FAST, "routes": {"dest.test": tls_sink.address}, "require_tls": True})
    # Untrusted (the test CA is not in the system store): refused, deferred.
    svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "queued"}
    assert "TLS handshake" in (await rows(pool, mid))["a@dest.test"]["last_reply"]
    assert not tls_sink.received
    # Trusted: delivered over verified TLS.
    svc2 = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5),
                           tls_verify_context=ssl.create_default_context(cafile=str(ca_file)),
                           clock=lambda: later(5))
    await svc2.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}
    assert tls_sink.received[0].tls


async def test_sandbox_mode_captures_eml(make_config: Any, pool: asyncpg.Pool[Any], tmp_path: Path) -> None:
    cfg = make_config(delivery={"mode": "sandbox"})
    svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
    raw = make_raw(body=b".dot\r\nbody\r\n")
    mid = await enqueue(pool, ["a@dest.test", "b@else.test"], raw=raw)
    await svc.start()
    try:
        await wait_for(lambda: _all_final(pool, mid), timeout=10)
    finally:
        await svc.stop(5)
    assert await states(pool, mid) == {"a@dest.test": "delivered", "b@else.test": "delivered"}
    eml = cfg.data_dir / "sandbox" / f"{mid}.eml"
    assert eml.read_bytes() == raw
    assert not [p for p in eml.parent.iterdir() if p.name.endswith(".tmp")]
    ds = [d for t, _, d in await event_list(pool, mid) if t == "delivery"]
    assert len(ds) == 2 and all(d["sandbox"] is True for d in ds)


async def _all_final(pool: asyncpg.Pool[Any], mid: Any) -> bool:
    return all(s != "queued" for s in (await states(pool, mid)).values())


async def test_service_wakes_on_notify_and_stops(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    svc = service(make_config, pool, {"dest.test": sink.address}, poll_interval_seconds=30.0)
    await svc.start()
    try:
        mid = await enqueue(pool, ["a@dest.test"])  # NOTIFY at commit wakes the idle worker
        await wait_for(lambda: _all_final(pool, mid), timeout=5)
    finally:
        await svc.stop(5)
    assert await states(pool, mid) == {"a@dest.test": "delivered"}


async def test_admin_retry_and_bounce(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    sink.rcpt_replies["b@dest.test"] = "550 5.1.1 no such user"
    sink.rcpt_replies["c@dest.test"] = "450 4.2.1 later"
    svc = service(make_config, pool, {"dest.test": sink.address})
    mid = await enqueue(pool, ["a@dest.test", "b@dest.test", "c@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered", "b@dest.test": "bounced",
                                       "c@dest.test": "queued"}
    sink.rcpt_replies.clear()
    async with pool.acquire() as conn:
        assert await queue.retry(conn, mid) == 2  # the bounced and the queued one
    assert await states(pool, mid) == {"a@dest.test": "delivered", "b@dest.test": "queued",
                                       "c@dest.test": "queued"}
    r = await rows(pool, mid)
    assert r["b@dest.test"]["attempts"] == 1 and r["c@dest.test"]["attempts"] == 1
    await svc.run_once()  # due now
    assert set((await states(pool, mid)).values()) == {"delivered"}
    r = await rows(pool, mid)
    assert [r[a]["attempts"] for a in ("a@dest.test", "b@dest.test", "c@dest.test")] == [1, 2, 2]
    assert [t for t, rcpt, _ in await event_list(pool, mid) if rcpt == "b@dest.test"] == [
        "bounce", "manual_retry", "delivery"]
    # bounce: every queued recipient, with its event
    sink.data_reply = "451 4.3.0 later"
    mid2 = await enqueue(pool, ["x@dest.test", "y@dest.test"])
    await svc.run_once()
    assert await queue.bounce(pool, mid2) == 2
    assert await states(pool, mid2) == {"x@dest.test": "bounced", "y@dest.test": "bounced"}
    assert [t for t, _, _ in await event_list(pool, mid2)].count("manual_bounce") == 2
    assert await queue.bounce(pool, mid2) == 0


@pytest.mark.parametrize("how", ["421", "eof"])
async def test_reconnects_when_server_hangs_up_between_messages(make_config: Any, pool: asyncpg.Pool[Any],
                                                                 sink: MxSink, how: str) -> None:
    sink.one_message_per_connection = how
    svc = service(make_config, pool, {"dest.test": sink.address}, per_destination_concurrency=1)
    ids = [await enqueue(pool, [f"r{i}@dest.test"]) for i in range(3)]
    await svc.run_once()
    for mid in ids:
        assert set((await states(pool, mid)).values()) == {"delivered"}
    assert len(sink.received) == 3 and len(sink.ehlos) == 3
    for mid in ids:  # retried at once on a new connection, not deferred
        assert (await rows(pool, mid))[f"r{ids.index(mid)}@dest.test"]["attempts"] == 1


async def test_connection_dropped_after_ehlo_then_next_attempt_succeeds(
        make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    sink.drop_connections = 1
    svc = service(make_config, pool, {"dest.test": sink.address})
    mid = await enqueue(pool, ["a@dest.test"])
    await svc.run_once()
    r = (await rows(pool, mid))["a@dest.test"]
    assert r["state"] == "queued" and r["attempts"] == 1
    svc.clock = lambda: later(1.5)
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "delivered"}


async def test_failed_tls_handshake_falls_back_to_cleartext(make_config: Any, pool: asyncpg.Pool[Any],
                                                            cert_files: tuple[Path, Path]) -> None:
    # A server that offers STARTTLS but can only speak TLS 1.0/1.1, which we refuse (RFC 8996).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated is the point
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.load_cert_chain(str(cert_files[0]), str(cert_files[1]))
    with MxSink(tls_context=ctx) as old_tls:
        svc = service(make_config, pool, {"dest.test": old_tls.address, "strict.test": old_tls.address},
                      require_tls_domains=["strict.test"])
        mid = await enqueue(pool, ["a@dest.test", "b@strict.test"])
        await svc.run_once()
        st = await states(pool, mid)
        # Opportunistic: delivered in clear after the failed handshake (RFC 7435 §3). Required: not sent.
        assert st == {"a@dest.test": "delivered", "b@strict.test": "queued"}
        assert [(x.rcpts, x.tls) for x in old_tls.received] == [(["a@dest.test"], False)]
        assert "TLS handshake" in (await rows(pool, mid))["b@strict.test"]["last_reply"]


async def test_size_refused_at_mail_bounces_all(make_config: Any, pool: asyncpg.Pool[Any], sink: MxSink) -> None:
    sink.mail_reply = "552 5.3.4 Message size exceeds fixed maximum message size"
    svc = service(make_config, pool, {"dest.test": sink.address})
    mid = await enqueue(pool, ["a@dest.test", "b@dest.test"])
    await svc.run_once()
    assert await states(pool, mid) == {"a@dest.test": "bounced", "b@dest.test": "bounced"}
    assert {d["category"] for t, _, d in await event_list(pool, mid) if t == "bounce"} == {"message_too_large"}


async def test_admin_retry_leaves_leased_recipients_alone(pool: asyncpg.Pool[Any]) -> None:
    mid = await enqueue(pool, ["a@dest.test"])
    assert len(await queue.claim(pool, "busy-worker", 10, 60)) == 1
    assert await queue.retry(pool, mid) == 0
    r = (await rows(pool, mid))["a@dest.test"]
    assert r["leased_by"] == "busy-worker"
    assert await queue.retry(pool, mid, now=later(61)) == 1  # lease over: fair game
