"""Benchmark: the HTTPS Email API of the real service (embedded PostgreSQL, durable commits, every
check on) against the SMTP front end and a bare FastAPI endpoint, in the same run, same pinning.

    .venv/bin/python bench/http_api.py            # full run, 3 alternating repetitions
    .venv/bin/python bench/http_api.py --quick    # smoke run: 1 repetition, small scenarios
    .venv/bin/python bench/http_api.py --profile /tmp/prof   # + py-spy of the service in (a) (needs py-spy)
    .venv/bin/python bench/http_api.py --reps 1 --profile /tmp/prof --profile-scenario b   # ... in (b)

Service setup, pinning and CPU accounting are bench/_service.py's, shared with bench/smtp_frontend.py:
the server under test (a `serve` process and its embedded PostgreSQL, or the bare app) on core 0,
the load generators on core 1.

Scenarios:
  (a) POST /api/send, a 10 KiB text+html message, 1 recipient, 20 keep-alive clients
  (b) POST /api/batch with 100 requests per call (1 recipient each), 4 keep-alive clients
  (c) baseline: the SMTP scenario (i) of bench/smtp_frontend.py (20 connections x 50 x 10 KiB)
  (d) baseline: a bare FastAPI endpoint on the same TLS that parses the same JSON (the same
      pydantic model) and returns a fixed 200 - the framework doing nothing, (a)'s shape

Per scenario: msgs/s, request latency p50/p99 (client side; for (c) DATA->250), server CPU ms per
message (user+sys of the server tree). The physical floor per message: one RSA-2048 signature
(measured here) plus one durable commit's share (measured here: one fsync'd single-row commit
divided by (b)'s messages per commit is not observable from outside, so the commit term reported is
the per-message PostgreSQL CPU of (b)). Bars: (a) >= 1.0x (c) msgs/s; (b) >= 2.0x (c).

Progress goes to stderr; exactly one JSON line goes to stdout at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _service as sv
import smtp_frontend as sf

KB = sv.KB
SCENARIOS = {"a": (20, 50, 1), "b": (4, 5, 100), "d": (20, 50, 1)}  # connections, requests each, batch size
QUICK = {"a": (10, 20, 1), "b": (2, 3, 100), "d": (10, 20, 1)}
SMTP_I = sf.SCENARIOS["i"]
SMTP_I_QUICK = sf.QUICK_SCENARIOS["i"]
BARS = {"a_over_c": 1.0, "b_over_c": 2.0}


def mail_body(seq: int = 0) -> dict[str, Any]:
    text = ("Your statement is ready. Please review the balance and the payment due date. " * 64)[:5 * KB]
    html = ("<p>Your statement is <b>ready</b>. Review the balance and the due date.</p>" * 64)[:5 * KB]
    return {"from": {"email": sv.SENDER, "name": "Bench"}, "to": [{"email": sv.RCPT}],
            "subject": f"Benchmark message {seq}", "text": text, "html": html}


def batch_body(n: int) -> dict[str, Any]:
    base = mail_body()
    del base["to"]
    return {"base": base, "requests": [{"to": [{"email": f"c{i}@example.org"}]} for i in range(n)]}


def start_bare(tmp: Path, certs: dict[str, str]) -> sv.Target:
    port = sv.free_port()
    proc = subprocess.Popen(["taskset", "-c", sv.SERVER_CORE, sv.PY, str(sv.BENCH / "_bare_api.py"), str(port),
                             certs["cert"], certs["key"]], cwd=sv.ROOT, env=sv.service_env(),
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "bare.log", "ab"))
    sv.wait_port(port, 60, proc, banner=False)
    return sv.Target("bare", port, "", "", proc)


def http_load(target: sv.Target, certs: dict[str, str], shape: tuple[int, int, int], path: str,
              body: dict[str, Any], clients: int) -> dict[str, Any]:
    """`shape` = (connections, requests per connection, messages per request) from `clients`
    bench/_http_load.py processes."""
    conns, per_conn, per_request = shape
    clients = max(1, min(clients, conns))
    specs = [{"host": "127.0.0.1", "port": target.port, "cafile": certs["ca"], "path": path, "token": target.password,
              "body": json.dumps(body), "connections": sv.split(conns, clients, k),
              "requests": per_conn, "msgs_per_request": per_request} for k in range(clients)]
    res = sv.drive(target, "_http_load.py", specs)
    res["cpu_ms_per_msg_pg_by_role"] = {}
    return res


def rsa_sign_ms(n: int = 200) -> float:
    """One RSA-2048 PKCS#1 v1.5 SHA-256 signature (DKIM's), on the server core's kind of CPU."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    t0 = time.process_time()
    for i in range(n):
        key.sign(b"header hash input %d" % i, padding.PKCS1v15(), hashes.SHA256())
    return (time.process_time() - t0) * 1000 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--profile", metavar="DIR", help="py-spy the API service after measuring (last repetition)")
    ap.add_argument("--profile-scenario", default="a", choices=["a", "b"], help="scenario to profile")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    table = QUICK if a.quick else SCENARIOS
    smtp_i = SMTP_I_QUICK if a.quick else SMTP_I
    reps = a.reps or (1 if a.quick else 3)
    result: dict[str, Any] = {"bench": "http_api", "repetitions": reps, "quick": a.quick, "git": sv.git_describe(),
                              "pinning": {"server_core": sv.SERVER_CORE, "client_core": sv.CLIENT_CORE}}
    runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": [], "d": []}
    t_start = time.monotonic()
    with sv.tempdir(a.keep) as tmp:
        certs = sv.make_certs(tmp)
        targets: dict[str, sv.Target] = {}
        try:
            for rep in range(reps):
                # One server at a time on the server core: SMTP, then the API, then the bare app.
                # The first SMTP start creates the account, domain and token the API reuses.
                smtp = targets["smtp"] = sv.start_service(tmp, certs)
                if rep == 0:
                    sf.run_load(smtp, certs, (4, 5, 10 * KB, 4), a.clients)  # warm-up
                runs["c"].append(sf.run_load(smtp, certs, smtp_i, a.clients))
                targets.pop("smtp").stop()
                api = targets["api"] = sv.start_service(tmp, certs, role="http", http=True)
                http_load(api, certs, (4, 5, 1), "/api/send", mail_body(), a.clients)  # warm-up
                runs["a"].append(http_load(api, certs, table["a"], "/api/send", mail_body(), a.clients))
                runs["b"].append(http_load(api, certs, table["b"], "/api/batch", batch_body(table["b"][2]), a.clients))
                if a.profile and rep == reps - 1:
                    ps = a.profile_scenario
                    result["profile"] = profile(tmp, api, certs, table[ps], a.clients, Path(a.profile), ps)
                targets.pop("api").stop()
                bare = targets["bare"] = start_bare(tmp, certs)
                http_load(bare, certs, (4, 5, 1), "/api/send", mail_body(), a.clients)
                runs["d"].append(http_load(bare, certs, table["d"], "/api/send", mail_body(), a.clients))
                targets.pop("bare").stop()
                for k in "abcd":
                    r = runs[k][-1]
                    sv.log(f"rep {rep + 1}/{reps} ({k}): {r['msgs_per_s'] or 0:8.1f} msgs/s  "
                           f"p50 {r['p50_ms'] or 0:7.2f} ms  p99 {r['p99_ms'] or 0:7.2f} ms  "
                           f"cpu {r['cpu_ms_per_msg'] or 0:6.3f} ms/msg  srv {r['server_cpu_util'] or 0:.0%}  "
                           f"err {r['errors']} {r['error_samples'][:1]}")
        finally:
            for t in targets.values():
                t.stop()
    result.update(compare(runs))
    result["elapsed_s"] = round(time.monotonic() - t_start, 1)
    print(json.dumps(result, separators=(",", ":")))
    return 0


def compare(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per scenario, the bars' ratios, the CPU-cost ratios and the floor."""
    result: dict[str, Any] = {k: sv.summarise(runs[k]) for k in "abcd"}
    c = result["c"]["msgs_per_s"] or 0
    result["ratio_a_over_c"] = sv.rnd(result["a"]["msgs_per_s"] / c, 3) if c and result["a"]["msgs_per_s"] else None
    result["ratio_b_over_c"] = sv.rnd(result["b"]["msgs_per_s"] / c, 3) if c and result["b"]["msgs_per_s"] else None
    cc = result["c"]["cpu_ms_per_msg"]
    for k in "ab":
        own = result[k]["cpu_ms_per_msg"]
        # CPU-cost ratio: (c)'s CPU per message over this one's; the capacity ratio on one busy core,
        # far less noisy than msgs/s on a shared machine.
        result[f"cpu_ratio_{k}_over_c"] = sv.rnd(cc / own, 3) if cc and own else None
    rsa = rsa_sign_ms()
    floor = rsa + (result["b"]["cpu_ms_per_msg_pg"] or 0)
    result["floor"] = {"rsa2048_sign_ms": sv.rnd(rsa, 3), "commit_share_ms_pg_cpu_b": result["b"]["cpu_ms_per_msg_pg"],
                       "floor_ms": sv.rnd(floor, 3),
                       "b_cpu_over_floor": sv.rnd((result["b"]["cpu_ms_per_msg"] or 0) / floor, 3) if floor else None}
    result["bars"] = BARS
    result["pass"] = {"a_over_c": (result["ratio_a_over_c"] or 0) >= BARS["a_over_c"],
                      "b_over_c": (result["ratio_b_over_c"] or 0) >= BARS["b_over_c"],
                      "b_within_1.3x_floor": (result["floor"]["b_cpu_over_floor"] or 99) <= 1.3}
    return result


def profile(tmp: Path, target: sv.Target, certs: dict[str, str], shape: tuple[int, int, int], clients: int,
            outdir: Path, scenario: str = "a") -> dict[str, Any]:
    """Scenario (a) or (b) three times while py-spy samples the API service."""
    out = outdir / f"api_{scenario}.speedscope.json"
    path, body = ("/api/send", mail_body()) if scenario == "a" else ("/api/batch", batch_body(shape[2]))
    spy = sv.pyspy_start(tmp, target.proc.pid, out)
    if spy is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    rs = [http_load(target, certs, shape, path, body, clients) for _ in range(3)]
    sv.pyspy_stop(spy)
    return {"scenario": scenario, "speedscope": str(out), "runs_msgs_per_s": [sv.rnd(r["msgs_per_s"], 1) for r in rs],
            "runs_cpu_ms_per_msg": [sv.rnd(r["cpu_ms_per_msg"], 3) for r in rs], "top": sv.top_functions(out)}


if __name__ == "__main__":
    sys.exit(main())
