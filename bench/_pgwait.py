"""Sample what PostgreSQL's client backends are doing (pg_stat_activity), for bench/smtp_frontend.py --profile.

    python bench/_pgwait.py PGDATA INTERVAL_S

Connects over the embedded server's Unix socket (host and port from PGDATA/postmaster.pid), samples
every INTERVAL_S until stdin closes or a line arrives, then prints one JSON line:
{"samples": N, "states": {"active/Lock:transactionid": n, "active/IO:WalSync": n, "idle": n, ...}}
Only backends of other sessions are counted (not this sampler's).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import asyncpg


async def main() -> None:
    pgdata = Path(sys.argv[1])
    interval = float(sys.argv[2])
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    port, sockdir = int(lines[3]), lines[4] or str(pgdata)
    conn = await asyncpg.connect(host=sockdir, port=port, user="postgres", database="postgres")
    counts: Counter[str] = Counter()
    n = 0
    loop = asyncio.get_running_loop()
    done = loop.run_in_executor(None, sys.stdin.readline)
    print("ready", flush=True)
    while not done.done():
        rows = await conn.fetch(
            """SELECT state, wait_event_type, wait_event FROM pg_stat_activity
                WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()""")
        n += 1
        for r in rows:
            key = r["state"] or "?"
            if r["state"] != "idle" and r["wait_event_type"]:
                key += f"/{r['wait_event_type']}:{r['wait_event']}"
            elif r["state"] == "active":
                key += "/cpu"
            counts[key] += 1
        await asyncio.sleep(interval)
    await conn.close()
    print(json.dumps({"samples": n, "states": dict(counts.most_common())}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
