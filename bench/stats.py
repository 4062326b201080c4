"""Benchmark: a stats request with 10,000 and with 1,000,000 events stored (issue 12: ratio ≤ 2).

Two databases on one embedded PostgreSQL, in the same run: each gets N delivery/bounce events spread
over 30 days, 3 sending domains and 5 MX hosts (450 keys a day at most), counted into `stats_daily` by the real
rollup consumer (`consumers/stats_rollup.py` through `outbox.OutboxRunner`). Then, alternating
between the two databases, the requests an SDK user makes for a 30-day range (totals and the four
groupings, through the use cases the API calls) are timed; the figure is the median per request
set, and `ratio` = median(1M) / median(10k).

    .venv/bin/python bench/stats.py                 # 10,000 vs 1,000,000 events (~2-4 min)
    .venv/bin/python bench/stats.py --large 100000  # quicker

Progress goes to stderr; exactly one JSON line goes to stdout at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailtrap_smtp import outbox  # noqa: E402
from mailtrap_smtp.consumers.stats_rollup import StatsRollup  # noqa: E402
from mailtrap_smtp.core import stats  # noqa: E402
from mailtrap_smtp.store import db as store_db  # noqa: E402

DAYS = 30
END = dt.date(2026, 11, 30)


def say(text: str) -> None:
    print(f"[bench stats] {text}", file=sys.stderr, flush=True)


async def prepare(admin_dsn: str, name: str, events: int) -> tuple[Any, int, float]:
    """A migrated database with `events` events rolled up; (pool, account id, rollup seconds)."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f"DROP DATABASE IF EXISTS {name}")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    from urllib.parse import urlsplit, urlunsplit

    dsn = urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    pool = await store_db.create_pool(dsn, min_size=1, max_size=4)
    async with pool.acquire() as c:
        await store_db.migrate(c)
        account = await c.fetchval(
            "INSERT INTO accounts (name, monthly_limit, max_message_size) VALUES ('bench', 0, 1000) RETURNING id")
        for i in range(3):
            await c.execute("""INSERT INTO sending_domains (account_id, name, verification_token, state)
                               VALUES ($1, $2, 't', 'verified')""", account, f"d{i}.test")
    # Events of delivered and bounced recipients, as the delivery workers write them: many small
    # transactions (the outbox reads in transaction order), then statistics as autovacuum keeps them.
    chunk = 1000
    for first in range(1, events + 1, chunk):
        await pool.execute(
            """INSERT INTO events (event_id, type, account_id, domain_id, details, created_at)
               SELECT gen_random_uuid(), CASE WHEN g % 7 = 0 THEN 'bounce' ELSE 'delivery' END, $1,
                      (SELECT id FROM sending_domains ORDER BY id OFFSET (g / 30) % 3 LIMIT 1),
                      jsonb_build_object('mx', (ARRAY['gmail-smtp-in.l.google.com', 'mx.example.net',
                                                      'x.mail.protection.outlook.com', 'mta.yahoodns.net',
                                                      'mx.dest.test'])[1 + (g / 90) % 5],
                                         'reply', CASE WHEN g % 7 = 0 THEN '550 5.1.1 unknown' ELSE '250 ok' END),
                      $3::timestamptz - make_interval(days => g % $4)
                 FROM generate_series($2::int, $5::int) g""",
            account, first, dt.datetime.combine(END, dt.time(12), dt.UTC), DAYS, min(events, first + chunk - 1))
    await pool.execute("ANALYZE events")
    started = time.perf_counter()
    runner = outbox.OutboxRunner(pool, [StatsRollup()])
    while await runner.run_once():
        pass
    return pool, int(account), time.perf_counter() - started


async def request_set(pool: Any, account: int) -> float:
    """Totals and the four groupings over the 30 days, as five requests; seconds."""
    req = stats.parse_query({"start_date": [(END - dt.timedelta(days=DAYS - 1)).isoformat()],
                             "end_date": [END.isoformat()]})
    started = time.perf_counter()
    await stats.totals(pool, account, req)
    for grouping in stats.GROUPINGS:
        await stats.grouped(pool, account, req, grouping)
    return time.perf_counter() - started


async def run(admin_dsn: str, small: int, large: int, reps: int) -> dict[str, Any]:
    say(f"rolling up {small} events")
    small_pool, small_acct, small_rollup = await prepare(admin_dsn, "bench_stats_small", small)
    say(f"rolling up {large} events")
    large_pool, large_acct, large_rollup = await prepare(admin_dsn, "bench_stats_large", large)
    times: dict[str, list[float]] = {"small": [], "large": []}
    for i in range(reps):
        order = [("small", small_pool, small_acct), ("large", large_pool, large_acct)]
        for label, pool, acct in (order if i % 2 else reversed(order)):
            times[label].append(await request_set(pool, acct))
    rows = {label: await pool.fetchval("SELECT count(*) FROM stats_daily")
            for label, pool in (("small", small_pool), ("large", large_pool))}
    await small_pool.close()
    await large_pool.close()
    med = {k: statistics.median(v[2:]) * 1000 for k, v in times.items()}  # the first two warm the caches
    return {
        "bench": "stats", "days": DAYS, "events": {"small": small, "large": large},
        "rollup_rows": rows, "rollup_seconds": {"small": round(small_rollup, 1), "large": round(large_rollup, 1)},
        "rollup_events_per_s": round(large / large_rollup),
        "request_set_ms": {k: round(v, 2) for k, v in med.items()}, "requests_per_set": 1 + len(stats.GROUPINGS),
        "ratio": round(med["large"] / med["small"], 3), "bar": 2.0, "pass": med["large"] / med["small"] <= 2.0,
        "repetitions": reps,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args()
    import logging
    import os

    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    embedded = None
    tmp = tempfile.TemporaryDirectory(prefix="mts-bench-stats-")
    try:
        admin = os.environ.get("MAILTRAP_SMTP_TEST_DSN", "")
        if not admin:
            from mailtrap_smtp.store.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(Path(tmp.name) / "pg")
            admin = embedded.start()
        result = asyncio.run(run(admin, args.small, args.large, args.reps))
    finally:
        if embedded is not None:
            embedded.close()
        tmp.cleanup()
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
