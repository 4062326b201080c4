"""Webhook throughput: the real outbox runner and webhook consumer draining a backlog of events into
a local HTTP receiver, in 500-event signed batches, with the measured process pinned to one core.

Compared, in the same run, with a baseline: the same receiver fed the same number of 500-event
bodies by a bare httpx loop (no database, no outbox). Issue 12's bar: >= 5,000 events/s.

    python bench/webhooks.py [--events 50000] [--runs 3]

Uses MAILTRAP_SMTP_TEST_DSN when set (a scratch database is created and dropped), otherwise an
embedded PostgreSQL in a temporary directory. The receiver runs in its own process (pinned to
another core when there is one). Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.delivery import drop_db, free_port, prepare_db  # noqa: E402

BATCH = 500


def run_receiver(port: int) -> None:
    """HTTP/1.1 keep-alive server: reads each POST, answers 200 (it parses nothing: not measured)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})


async def baseline(port: int, events: int) -> float:
    import httpx

    body = json.dumps({"events": [{"event": "delivery", "message_id": "m" * 36, "event_id": "e" * 36,
                                   "email": "r@dest.bench", "timestamp": 1, "sending_stream": "transactional",
                                   "sending_domain_name": "src.bench"}] * BATCH}).encode()
    async with httpx.AsyncClient() as client:
        start = time.perf_counter()
        for _ in range(events // BATCH):
            r = await client.post(f"http://127.0.0.1:{port}/hook", content=body,
                                  headers={"Content-Type": "application/json"})
            assert r.status_code == 200
        return events / (time.perf_counter() - start)


async def service_run(dsn: str, port: int, events: int) -> float:
    from mailtrap_smtp.config import WebhooksConfig
    from mailtrap_smtp.core import webhooks
    from mailtrap_smtp.hooks.delivery import WebhookDelivery, make_client
    from mailtrap_smtp.outbox import OutboxRunner
    from mailtrap_smtp.store import accounts, domains
    from mailtrap_smtp.store import db as store_db

    pool = await store_db.create_pool(dsn, min_size=2, max_size=4)
    cfg = WebhooksConfig(flush_seconds=0.0, allow_private_targets=True)
    client = make_client(cfg)
    try:
        await pool.execute("TRUNCATE accounts CASCADE; TRUNCATE outbox_cursors")
        acct = await accounts.create(pool, "bench", monthly_limit=10**9, max_message_size=10**7)
        dom = await domains.create(pool, acct["id"], "src.bench", verification_token="t", dns_skipped=True)
        hook = (await webhooks.create(pool, acct["id"], webhooks.WebhookSpec(url=f"http://127.0.0.1:{port}/hook"),
                                      allow_private=True)).webhook
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO messages (id, account_id, domain_id, stream, mail_from, size, raw)
                   SELECT gen_random_uuid(), $1, $2, 'transactional', 'app@src.bench', 1, '\\x00'::bytea
                     FROM generate_series(1, $3)""", acct["id"], dom["id"], events)
            await conn.execute(
                """INSERT INTO recipients (message_id, rcpt, domain, state)
                   SELECT id, 'r' || row_number() OVER () || '@dest.bench', 'dest.bench', 'delivered' FROM messages""")
            await conn.execute(
                """INSERT INTO events (event_id, type, account_id, domain_id, message_id, recipient_id, details)
                   SELECT gen_random_uuid(), 'delivery', m.account_id, m.domain_id, m.id, r.id,
                          '{"reply": "250 2.0.0 Ok"}'::jsonb
                     FROM recipients r JOIN messages m ON m.id = r.message_id ORDER BY r.id""")
        await pool.execute("ANALYZE")  # the statistics autovacuum keeps in a steady state
        runner = OutboxRunner(pool, [WebhookDelivery(cfg, pool, client)])
        start = time.perf_counter()
        await runner.run_once()
        elapsed = time.perf_counter() - start
        done = await pool.fetchval(
            "SELECT coalesce(sum(events), 0) FROM webhook_attempts WHERE webhook_id = $1 AND acknowledged", hook["id"])
        assert done == events, (done, events)
        return events / elapsed
    finally:
        await client.aclose()
        await pool.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.receiver:
        pin(1)
        run_receiver(args.port)
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", "--port", str(port)],
                                stdout=subprocess.PIPE, text=True)
    embedded: Any = None
    tmp = tempfile.TemporaryDirectory(prefix="mts-bench-")
    try:
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise SystemExit("bench: the receiver did not start")
        admin = os.environ.get("MAILTRAP_SMTP_TEST_DSN", "")
        if not admin:
            from mailtrap_smtp.store.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(Path(tmp.name) / "pg")
            admin = embedded.start()
        dsn, name = asyncio.run(prepare_db(admin))
        pin(0)  # the measured process (the embedded PostgreSQL started before: not pinned)
        svc_runs: list[float] = []
        base_runs: list[float] = []
        try:
            for _ in range(args.runs):
                base_runs.append(asyncio.run(baseline(port, args.events)))
                svc_runs.append(asyncio.run(service_run(dsn, port, args.events)))
        finally:
            asyncio.run(drop_db(admin, name))
    finally:
        receiver.terminate()
        receiver.wait(5)
        if embedded is not None:
            embedded.close()
        tmp.cleanup()
    svc, base = statistics.median(svc_runs), statistics.median(base_runs)
    print(json.dumps({
        "bench": "webhooks",
        "events": args.events,
        "batch": BATCH,
        "service_events_per_s": round(svc, 1),
        "baseline_events_per_s": round(base, 1),
        "ratio": round(svc / base, 3),
        "bar_events_per_s": 5000,
        "meets_bar": svc >= 5000,
        "service_runs": [round(x, 1) for x in svc_runs],
        "baseline_runs": [round(x, 1) for x in base_runs],
        "runs": args.runs,
    }))


if __name__ == "__main__":
    main()
