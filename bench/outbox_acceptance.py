"""Does the outbox slow acceptance? SMTP scenario (i) against `serve --role all` (SMTP, sandbox
delivery, the outbox runner), without webhooks and with two webhooks subscribed to every event
type posting to a local receiver, alternating, in the same run. Issue 12's bar: ratio >= 0.9.

    .venv/bin/python bench/outbox_acceptance.py [--reps 3] [--quick]

Pinning as in bench/smtp_frontend.py: the service and its embedded PostgreSQL on core 0, the load
generators and the webhook receiver on core 1. Webhooks flush at once (`flush_seconds = 0`, the
busiest setting); each "with" run creates two fresh webhooks (their cursors start at the log's
horizon) and deletes them afterwards. Progress on stderr, ONE JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _service as sv  # noqa: E402
from bench import smtp_frontend as fe  # noqa: E402

EXTRA_TOML = """
[webhooks]
allow_private_targets = true
flush_seconds = 0.0
"""


def start_receiver() -> tuple[subprocess.Popen[str], int]:
    port = sv.free_port()
    proc = subprocess.Popen(["taskset", "-c", sv.CLIENT_CORE, sv.PY, str(sv.BENCH / "webhooks.py"), "--receiver",
                             "--port", str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the webhook receiver did not start")
    return proc, port


def delivered_events(cfg: Path, ids: list[int]) -> int:
    total = 0
    for wid in ids:
        log = json.loads(sv.admin(cfg, "webhook", "log", str(wid), "--limit", "100000", "--json"))
        total += sum(a["events"] for a in log["attempts"] if a["acknowledged"])
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small scenario, 1 repetition")
    ap.add_argument("--clients", type=int, default=2)
    a = ap.parse_args()
    scenario = fe.QUICK_SCENARIOS["i"] if a.quick else fe.SCENARIOS["i"]
    reps = 1 if a.quick else a.reps
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    delivered = 0
    receiver, rport = start_receiver()
    try:
        with sv.tempdir(False) as tmp:
            certs = sv.make_certs(tmp)
            target = sv.start_service(tmp, certs, role="all", extra_toml=EXTRA_TOML)
            cfg = tmp / "service.toml"
            try:
                fe.run_load(target, certs, (4, 5, 10 * sv.KB, 4), a.clients)  # warm-up
                for rep in range(reps):
                    for mode in (["without", "with"] if rep % 2 == 0 else ["with", "without"]):
                        ids: list[int] = []
                        if mode == "with":
                            for _ in range(2):
                                out = sv.admin(cfg, "webhook", "create", "bench", f"http://127.0.0.1:{rport}/hook",
                                               "--json")
                                ids.append(int(json.loads(out)["id"]))
                        r = fe.run_load(target, certs, scenario, a.clients)
                        runs[mode].append(r)
                        sv.log(f"rep {rep + 1}/{reps} {mode:<7}: {r['msgs_per_s']:8.1f} msgs/s "
                               f"errors {r['errors']}")
                        if ids:
                            time.sleep(2.0)  # let the consumer catch up before counting
                            delivered += delivered_events(cfg, ids)
                            for wid in ids:
                                sv.admin(cfg, "webhook", "delete", str(wid))
            finally:
                target.stop()
    finally:
        receiver.terminate()
        receiver.wait(5)
    without = statistics.median(r["msgs_per_s"] for r in runs["without"])
    with_ = statistics.median(r["msgs_per_s"] for r in runs["with"])
    print(json.dumps({
        "bench": "outbox_acceptance", "scenario": "i", "shape": scenario, "repetitions": reps,
        "msgs_per_s_without_webhooks": round(without, 1), "msgs_per_s_with_two_webhooks": round(with_, 1),
        "ratio": round(with_ / without, 3), "bar": 0.9,
        "webhook_events_delivered_in_with_runs": delivered,
        "ratio_per_rep": [round(w["msgs_per_s"] / o["msgs_per_s"], 3)
                          for w, o in zip(runs["with"], runs["without"], strict=True)],
        "server_cpu_ms_per_msg_without": round(statistics.median(r["cpu_ms_per_msg"] for r in runs["without"]), 3),
        "server_cpu_ms_per_msg_with": round(statistics.median(r["cpu_ms_per_msg"] for r in runs["with"]), 3),
        "without_runs": [round(r["msgs_per_s"], 1) for r in runs["without"]],
        "with_runs": [round(r["msgs_per_s"], 1) for r in runs["with"]],
        "errors": sum(r["errors"] for m in runs.values() for r in m),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
