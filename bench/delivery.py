"""Delivery throughput: the real DeliveryService draining a queue into a local SMTP sink.

Compared, in the same run, with a baseline: the same sink fed the same (DKIM-signed) messages by a
bare aiosmtplib loop over the same number of parallel connections, with no database at all. The
ratio (service / baseline) is what to watch: it is the cost of the durable queue (claim under a
lease, one outcome transaction with its event per SMTP transaction) on top of the SMTP work.

    python bench/delivery.py [--messages 400] [--runs 3]

Uses MAILTRAP_SMTP_TEST_DSN when set (a scratch database is created and dropped), otherwise an
embedded PostgreSQL in a temporary directory. The sink runs in its own process so that it does not
share a CPU with the worker being measured. Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONNECTIONS = 4  # = per_destination_concurrency of the service, and the baseline's parallelism


# --- the sink (subprocess mode) ---

def run_sink(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Discard(), hostname="sink.bench", decode_data=False, enable_SMTPUTF8=True),
            "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- messages ---

def make_messages(n: int) -> tuple[list[bytes], bool]:
    body = b"".join(b"Line %d of a reasonably ordinary transactional message body.\r\n" % i for i in range(30))
    msgs = []
    for i in range(n):
        msgs.append(b"From: Shop <orders@src.bench>\r\nTo: customer@dest.bench\r\n"
                    b"Subject: Your order %d\r\nMessage-ID: <%s@src.bench>\r\n"
                    b"Date: Thu, 26 Nov 2026 07:00:00 +0000\r\nMIME-Version: 1.0\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\n\r\n" % (i, uuid.uuid4().hex.encode()) + body)
    try:
        from mailtrap_smtp import dkim

        pem, _ = dkim.generate_key("rsa-sha256")
        key = dkim.SigningKey.from_pem("src.bench", "s1", "rsa-sha256", pem)
        return [dkim.sign(m, [key]) + m for m in msgs], True
    except (ImportError, AttributeError):
        return msgs, False


# --- baseline: bare aiosmtplib ---

async def baseline(port: int, msgs: list[bytes]) -> float:
    import aiosmtplib

    async def one_connection(share: list[bytes]) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.test", start_tls=False)
        await smtp.connect()
        for m in share:
            await smtp.sendmail("bounces@src.bench", ["customer@dest.bench"], m)
        await smtp.quit()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_connection(msgs[i::CONNECTIONS]) for i in range(CONNECTIONS)))
    return len(msgs) / (time.perf_counter() - t0)


# --- the service ---

async def service_run(dsn: str, port: int, msgs: list[bytes], data_dir: str) -> float:
    import datetime as dt

    from mailtrap_smtp import config as config_mod
    from mailtrap_smtp.delivery.worker import DeliveryService
    from mailtrap_smtp.dnsresolve import make_resolver
    from mailtrap_smtp.store import accounts, messages, queue
    from mailtrap_smtp.store import db as store_db

    cfg = config_mod.Config(
        server=config_mod.ServerConfig(hostname="bench.test", data_dir=data_dir),
        delivery=config_mod.DeliveryConfig(mode="mx", routes={"dest.bench": f"127.0.0.1:{port}"},
                                           per_destination_concurrency=CONNECTIONS, batch_size=100,
                                           concurrency=20, poll_interval_seconds=1.0),
    )
    config_mod.validate(cfg)
    pool = await store_db.create_pool(dsn, min_size=2, max_size=10)
    try:
        acct = await accounts.get_by_name(pool, "bench")
        if acct is None:
            acct = await accounts.create(pool, "bench", monthly_limit=10**9, max_message_size=10**7)
        svc = DeliveryService(cfg, pool, make_resolver(["127.0.0.1:9"], 0.5))
        await svc.start()
        try:
            # One transaction: the NOTIFY at its commit wakes the idle worker; the clock starts there.
            async with pool.acquire() as conn, conn.transaction():
                for m in msgs:
                    await messages.accept(conn, messages.NewMessage(
                        id=uuid.uuid4(), account_id=acct["id"], credential_id=None, domain_id=None,
                        stream="transactional", mail_from="bounces@src.bench", header_from="orders@src.bench",
                        subject="order", message_id_header=None, category=None, custom_variables=None,
                        client_ip=None, raw=m, recipients=["customer@dest.bench"]), dt.date(2026, 11, 1))
            t0 = time.perf_counter()
            # Cheap "anything left?" (the partial index): the poll must not load the database it measures.
            while await queue.seconds_until_next_due(pool) is not None:
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - t0
        finally:
            await svc.stop(5)
        delivered = (await queue.counts(pool)).get("delivered", 0)
        if delivered % len(msgs):
            raise SystemExit(f"bench: {delivered} delivered, expected a multiple of {len(msgs)}")
        return len(msgs) / elapsed
    finally:
        await pool.close()


async def prepare_db(admin_dsn: str) -> tuple[str, str]:
    import asyncpg

    from mailtrap_smtp.store import db as store_db

    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    from urllib.parse import urlsplit, urlunsplit

    dsn = urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    conn = await asyncpg.connect(dsn)
    try:
        await store_db.migrate(conn)
    finally:
        await conn.close()
    return dsn, name


async def drop_db(admin_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.sink:
        run_sink(args.port)
        return

    import logging

    logging.basicConfig(level=logging.WARNING)
    t_start = time.perf_counter()
    msgs, signed = make_messages(args.messages)
    port = free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--sink", "--port", str(port)], stdout=subprocess.PIPE,
                            text=True)
    embedded = None
    tmp = tempfile.TemporaryDirectory(prefix="mts-bench-")
    try:
        assert sink.stdout is not None
        if sink.stdout.readline().strip() != "ready":
            raise SystemExit("bench: the sink did not start")
        admin = os.environ.get("MAILTRAP_SMTP_TEST_DSN", "")
        if not admin:
            from mailtrap_smtp.store.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(Path(tmp.name) / "pg")
            admin = embedded.start()
        dsn, name = asyncio.run(prepare_db(admin))
        base_runs: list[float] = []
        svc_runs: list[float] = []
        try:
            for _ in range(args.runs):
                base_runs.append(asyncio.run(baseline(port, msgs)))
                svc_runs.append(asyncio.run(service_run(dsn, port, msgs, str(Path(tmp.name) / "data"))))
        finally:
            asyncio.run(drop_db(admin, name))
    finally:
        sink.terminate()
        sink.wait(5)
        if embedded is not None:
            embedded.close()
        tmp.cleanup()
    svc_med, base_med = statistics.median(svc_runs), statistics.median(base_runs)
    print(json.dumps({
        "bench": "delivery",
        "messages": args.messages,
        "recipients_per_message": 1,
        "dkim_signed": signed,
        "connections": CONNECTIONS,
        "service_msgs_per_s": round(svc_med, 1),
        "baseline_msgs_per_s": round(base_med, 1),
        "ratio": round(svc_med / base_med, 3),
        "service_runs": [round(x, 1) for x in svc_runs],
        "baseline_runs": [round(x, 1) for x in base_runs],
        "runs": args.runs,
        "seconds": round(time.perf_counter() - t_start, 1),
    }))


if __name__ == "__main__":
    main()
