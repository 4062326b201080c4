"""Benchmark: submission by BDAT (RFC 3030, one `BDAT <n> LAST` chunk) vs by DATA, same run.

Run from the repository root (Linux, 2+ cores, `taskset` available):

    .venv/bin/python bench/bdat.py            # 3 alternating repetitions (~1-2 min)
    .venv/bin/python bench/bdat.py --quick    # 1 repetition, fewer messages

The real service (`serve --role smtp`, embedded PostgreSQL, durable commits, every check on) on core
0, the load generators (bench/_load.py, aiosmtplib; for BDAT the line and the octets written
together) on core 1, as in bench/smtp_frontend.py. Scenario: 10 connections x 20 messages x 100 KiB,
STARTTLS + AUTH PLAIN in every connection, all at once. Each repetition runs DATA and BDAT,
alternating which goes first; the figures are medians over repetitions: msgs/s, client-side
latency of the message transfer (DATA: DATA, 354, body, reply; BDAT: chunk, reply) p50/p99, and the
server's CPU ms per message (user+sys of the server process tree). `ratio_msgs_per_s` and
`ratio_cpu_ms_per_msg` are BDAT / DATA. Progress goes to stderr; one JSON line to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import smtp_frontend as fe  # noqa: E402

KB = 1024
SCENARIO = (10, 20, 100 * KB, 10)
QUICK_SCENARIO = (4, 10, 100 * KB, 4)
VERBS = ("data", "bdat")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repetition, fewer messages (smoke run)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--clients", type=int, default=2, help="load generator processes (all on core 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    a = ap.parse_args()
    reps = a.reps or (1 if a.quick else 3)
    scenario = QUICK_SCENARIO if a.quick else SCENARIO
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VERBS}
    with fe.tempdir(a.keep) as tmp:
        certs = fe.make_certs(tmp)
        target = fe.start_service(tmp, certs)
        try:
            fe.run_load(target, certs, (2, 2, 100 * KB, 2), 1)  # warm-up: connections, caches, JIT-less paths
            for rep in range(reps):
                for verb in (VERBS if rep % 2 == 0 else VERBS[::-1]):
                    r = fe.run_load(target, certs, scenario, a.clients, verb=verb)
                    fe.log(f"rep {rep + 1}/{reps} {verb}: {r['msgs']} msgs, {r['msgs_per_s']:.1f} msgs/s, "
                           f"{r['cpu_ms_per_msg']:.2f} CPU ms/msg, errors {r['errors']}")
                    runs[verb].append(r)
            facts = fe.pg_facts(target.pgdata) if target.pgdata else {}
        finally:
            fe.stop_proc(target.proc)
    out: dict[str, Any] = {"bench": "bdat_vs_data", "commit": fe.git_describe(),
                           "scenario": {"connections": scenario[0], "messages_per_connection": scenario[1],
                                        "size": scenario[2], "concurrency": scenario[3]},
                           "reps": reps}
    for verb in VERBS:
        out[verb] = fe.summarise(runs[verb])
    d, b = out["data"], out["bdat"]
    out["ratio_msgs_per_s"] = fe.rnd(b["msgs_per_s"] / d["msgs_per_s"], 3) if d["msgs_per_s"] else None
    out["ratio_cpu_ms_per_msg"] = fe.rnd(b["cpu_ms_per_msg"] / d["cpu_ms_per_msg"], 3) if d["cpu_ms_per_msg"] else None
    out["postgres"] = {k: facts.get(k) for k in ("fsync", "synchronous_commit", "messages_stored")}
    print(json.dumps(out), flush=True)
    return 0 if not (d["errors"] or b["errors"]) else 1


if __name__ == "__main__":
    sys.exit(main())
