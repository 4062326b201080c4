"""What the benchmarks share: the real service on the server core (`serve` and its embedded
PostgreSQL, an account, sending domain and token made once per data directory), the CPU of a server
process tree, load generator processes on the client core, medians, py-spy summaries.

Used by bench/smtp_frontend.py, bench/http_api.py and bench/outbox_acceptance.py; nothing here
prints to stdout (progress goes to stderr, the scripts print their one JSON line).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PY = sys.executable
KB, MB = 1024, 1024 * 1024

# Overridable for diagnostics only (e.g. BENCH_SERVER_CORE=0 BENCH_CLIENT_CORE=0).
SERVER_CORE = os.environ.get("BENCH_SERVER_CORE", "0")
CLIENT_CORE = os.environ.get("BENCH_CLIENT_CORE", "1")

DOMAIN = "bench.example.com"
SENDER = f"statements@{DOMAIN}"
RCPT = "customer@example.org"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None, *, banner: bool = True) -> None:
    """Until something accepts on `port` (and, with `banner`, sends its first bytes: SMTP's 220)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            if banner:
                s.recv(256)
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:.0f} s")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def med(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


def rnd(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


# ---------------------------------------------------------------- certificates

def make_certs(d: Path) -> dict[str, str]:
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA)
    paths = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    with open(paths["cert"], "wb") as f:
        for blob in leaf.cert_chain_pems:
            f.write(blob.bytes())
    return {k: str(v) for k, v in paths.items()}


# ---------------------------------------------------------------- process-tree CPU

def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _pg_role(p: psutil.Process) -> str:
    """'backend', 'postmaster', or the auxiliary process's title (checkpointer, walwriter, ...)."""
    try:
        title = " ".join(p.cmdline())
    except psutil.Error:
        return "?"
    if not title.startswith("postgres:"):
        return "postmaster"
    rest = title[len("postgres:"):].strip()
    if "[local]" in rest or "127.0.0.1" in rest or "idle" in rest or "SELECT" in rest or "INSERT" in rest:
        return "backend"
    return rest.split(" ")[0] if rest else "?"


@dataclass
class Target:
    name: str
    port: int
    user: str
    password: str
    proc: subprocess.Popen[Any]
    pgdata: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        """The server tree: the server process, its descendants and (service) every postgres process."""
        seen: dict[int, psutil.Process] = {}
        roots = [psutil.Process(self.proc.pid)]
        pm = self.postmaster_pid()
        if pm is not None:
            with contextlib.suppress(psutil.Error):
                roots.append(psutil.Process(pm))
        for r in roots:
            with contextlib.suppress(psutil.Error):
                for p in [r, *r.children(recursive=True)]:
                    seen.setdefault(p.pid, p)
        return list(seen.values())

    def postmaster_pid(self) -> int | None:
        if self.pgdata is None:
            return None
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        return None

    def cpu_split(self) -> dict[str, float]:
        """CPU seconds so far: {"py": server process (+ non-postgres children), "pg": postgres processes}."""
        out = {"py": 0.0, "pg": 0.0}
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                kind = "pg" if p.name().startswith("postgres") else "py"
                c = _cpu(p)
                out[kind] += c
                if kind == "pg":
                    out["pg:" + _pg_role(p)] = out.get("pg:" + _pg_role(p), 0.0) + c
        return out

    def pin(self) -> list[tuple[int, str, list[int]]]:
        """Pin every process (all threads) of the server tree to SERVER_CORE; return what was found."""
        found = []
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                if p.cpu_affinity() != [int(SERVER_CORE)]:
                    subprocess.run(["taskset", "-a", "-p", "-c", SERVER_CORE, str(p.pid)],
                                   check=False, capture_output=True)
                found.append((p.pid, p.name(), p.cpu_affinity()))
        return found

    def stop(self) -> None:
        """Stop the server; and its embedded PostgreSQL (SIGINT = fast shutdown) if the service
        could not, so no server outlives the run."""
        pm = self.postmaster_pid()
        stop_proc(self.proc)
        if pm is not None and psutil.pid_exists(pm):
            with contextlib.suppress(psutil.Error):
                pmp = psutil.Process(pm)
                if pmp.name().startswith("postgres"):
                    pmp.send_signal(signal.SIGINT)
                    pmp.wait(20)


def stop_proc(proc: subprocess.Popen[Any], grace: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------- the service

SERVICE_TOML = """\
[server]
hostname = "localhost"
data_dir = "{data}"
shutdown_grace_seconds = 5.0

[smtp]
listeners = [ {{ address = "127.0.0.1", port = {port}, mode = "starttls" }} ]
{http}
[tls]
cert_file = "{cert}"
key_file = "{key}"

[limits]
# Sized for the scenarios (50 concurrent connections from one IP and one account); the checks
# themselves stay on.
connections_per_account = 1000
connections_per_ip = 1000
connection_rate_per_ip = 1000000
monthly_messages = 1000000000

[delivery]
mode = "sandbox"

[metrics]
listen = ""
"""

HTTP_TOML = """
[http]
listeners = [ {{ address = "127.0.0.1", port = {port}, stream = "transactional" }} ]
rate_limit_requests = 1000000000
"""


def service_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRAP_SMTP_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def admin(cfg: Path, *args: str) -> str:
    r = subprocess.run(
        ["taskset", "-c", SERVER_CORE, PY, "-m", "mailtrap_smtp", "-c", str(cfg), *args],
        cwd=ROOT, env=service_env(), capture_output=True, text=True, timeout=180,
    )
    if r.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return r.stdout


def start_service(tmp: Path, certs: dict[str, str], *, role: str = "smtp", http: bool = False,
                  extra_toml: str = "", profile_env: dict[str, str] | None = None) -> Target:
    """`serve --role <role> --processes 1` on the server core, every process of its tree pinned
    there. The target's port is the HTTPS API's with `http`, else the SMTP listener's. The first
    start in `tmp` creates the account, domain and token that later starts reuse."""
    smtp_port = free_port()
    http_port = free_port() if http else None
    data = tmp / "data"
    cfg = tmp / "service.toml"
    cfg.write_text(SERVICE_TOML.format(
        data=data, port=smtp_port, cert=certs["cert"], key=certs["key"],
        http=HTTP_TOML.format(port=http_port) if http else "") + extra_toml)
    if not (data / "token").exists():
        log("service: creating account, domain and credential (initialises the embedded PostgreSQL)")
        admin(cfg, "account", "create", "bench", "--monthly-limit", "1000000000")
        admin(cfg, "domain", "add", "bench", DOMAIN, "--skip-dns-verification")
        token = json.loads(admin(cfg, "credential", "create", "bench", "--stream", "transactional", "--json"))["token"]
        (data / "token").write_text(token)
    token = (data / "token").read_text().strip()
    env = service_env()
    env.update(profile_env or {})
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, PY, "-m", "mailtrap_smtp", "-c", str(cfg), "serve",
         "--role", role, "--processes", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "service.log", "ab"),
    )
    port = http_port if http_port is not None else smtp_port
    try:
        wait_port(port, 120, proc, banner=http_port is None)
    except RuntimeError as e:
        stop_proc(proc)
        tail = (tmp / "service.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{e}; service.log tail:\n{tail}") from None
    t = Target("service" if not http else "api", port, "bench", token, proc, pgdata=data / "pg")
    pinned = t.pin()
    t.extra["pinned"] = pinned
    bad = [x for x in t.pin() if x[2] != [int(SERVER_CORE)]]
    if bad:
        t.stop()
        raise RuntimeError(f"could not pin server processes to core {SERVER_CORE}: {bad}")
    log(f"{t.name}: listening on {port}; server tree pinned to core {SERVER_CORE}: "
        + ", ".join(f"{pid}:{name}" for pid, name, _ in pinned))
    return t


def pg_facts(pgdata: Path) -> dict[str, Any]:
    """Durability settings of the embedded server and how many messages the service stored."""
    import asyncio

    import asyncpg

    async def q() -> dict[str, Any]:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        conn = await asyncpg.connect(host=lines[4] or str(pgdata), port=int(lines[3]), user="postgres",
                                     database="postgres")
        try:
            out: dict[str, Any] = {k: await conn.fetchval(f"SHOW {k}")
                                   for k in ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes",
                                             "server_version")}
            with contextlib.suppress(asyncpg.PostgresError):
                out["messages_stored"] = await conn.fetchval("SELECT count(*) FROM messages")
            return out
        finally:
            await conn.close()

    try:
        return asyncio.run(q())
    except Exception as e:
        return {"error": str(e)[:200]}


# ---------------------------------------------------------------- load generation

def drive(target: Target, script: str, specs: list[dict[str, Any]], *, on_go: Any = None) -> dict[str, Any]:
    """Run one load generator process per spec (`bench/<script>`, on the client core): each prints
    "ready", starts on "go", prints one JSON line with `lat` (ms), `ok`, `errors`,
    `error_samples`, `start`/`end` (CLOCK_MONOTONIC) and `cpu_s`. Returns the figures every
    benchmark reports: msgs/s over the whole window, latency percentiles, the server tree's CPU per
    message (Python and PostgreSQL, PostgreSQL by role), both sides' CPU utilisation; `outs` are
    the generators' own lines."""
    procs = [subprocess.Popen(["taskset", "-c", CLIENT_CORE, PY, str(BENCH / script), json.dumps(s)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for s in specs]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"load generator failed to start: {line!r}")
        # Let the server settle (PostgreSQL background writers etc.) before the measured window.
        time.sleep(0.3)
        cpu0 = target.cpu_split()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        if on_go is not None:
            on_go()
        outs = []
        for p in procs:
            assert p.stdout is not None
            outs.append(json.loads(p.stdout.readline()))
        cpu1 = target.cpu_split()
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(30)
            if p.poll() is None:
                p.kill()
    lat = [x for o in outs for x in o["lat"]]
    ok = sum(o["ok"] for o in outs)
    wall = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    pg_roles = {k[3:]: (cpu1[k] - cpu0.get(k, 0.0)) * 1000 / ok for k in cpu1 if k.startswith("pg:")} if ok else {}
    cpu_py = cpu1["py"] - cpu0["py"]
    cpu_pg = cpu1["pg"] - cpu0["pg"]
    return {
        "msgs": ok,
        "wall_s": wall,
        "msgs_per_s": ok / wall if wall > 0 else None,
        "p50_ms": pct(lat, 0.50),
        "p99_ms": pct(lat, 0.99),
        "cpu_ms_per_msg": (cpu_py + cpu_pg) * 1000 / ok if ok else None,
        "cpu_ms_per_msg_py": cpu_py * 1000 / ok if ok else None,
        "cpu_ms_per_msg_pg": cpu_pg * 1000 / ok if ok else None,
        "cpu_ms_per_msg_pg_by_role": {k: round(v, 3) for k, v in sorted(pg_roles.items(), key=lambda kv: -kv[1])},
        "server_cpu_util": (cpu_py + cpu_pg) / wall if wall > 0 else None,
        "loadgen_cpu_util": sum(o["cpu_s"] for o in outs) / wall if wall > 0 else None,
        "errors": sum(o["errors"] for o in outs),
        "error_samples": [e for o in outs for e in o["error_samples"]][:5],
        "outs": outs,
    }


def split(total: int, parts: int, k: int) -> int:
    """Part `k` of `total` spread over `parts` as evenly as possible."""
    return total // parts + (1 if k < total % parts else 0)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["msgs_per_s", "p50_ms", "p99_ms", "cpu_ms_per_msg", "cpu_ms_per_msg_py", "cpu_ms_per_msg_pg",
            "server_cpu_util", "loadgen_cpu_util"]
    out: dict[str, Any] = {k: rnd(med([r[k] for r in runs]), 3 if "cpu" in k else 2) for k in keys}
    roles = {k for r in runs for k in r["cpu_ms_per_msg_pg_by_role"]}
    if roles:
        out["cpu_ms_per_msg_pg_by_role"] = {
            k: rnd(med([r["cpu_ms_per_msg_pg_by_role"].get(k, 0.0) for r in runs]), 3) for k in sorted(roles)}
    out["runs_msgs_per_s"] = [rnd(r["msgs_per_s"], 1) for r in runs]
    out["runs_cpu_ms_per_msg"] = [rnd(r["cpu_ms_per_msg"], 3) for r in runs]
    out["errors"] = sum(r["errors"] for r in runs)
    if out["errors"]:
        out["error_samples"] = [e for r in runs for e in r["error_samples"]][:5]
    out["msgs"] = runs[0]["msgs"] if runs else 0
    return out


# ---------------------------------------------------------------- profiling

def pyspy_start(tmp: Path, pid: int, out: Path, *, native: bool = False) -> subprocess.Popen[Any] | None:
    """py-spy recording `pid` into speedscope JSON `out`, on the client core; None without py-spy."""
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(pyspy).exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["taskset", "-c", CLIENT_CORE, pyspy, "record", "--pid", str(pid), "--format", "speedscope", "-o", str(out)]
    cmd += ["--native", "--rate", "100"] if native else ["--nonblocking", "--rate", "200"]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / "py-spy.log", "ab"))
    time.sleep(1.5)  # let py-spy attach
    return spy


def pyspy_stop(spy: subprocess.Popen[Any]) -> None:
    spy.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        spy.wait(60)
    if spy.poll() is None:
        spy.kill()


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def top_functions(speedscope: Path, n: int = 30) -> dict[str, Any]:
    """Self and inclusive sample shares per function and self share per file, from py-spy's speedscope JSON."""
    try:
        doc = json.loads(speedscope.read_text())
    except (OSError, ValueError):
        return {}
    frames = [f"{f.get('name')} ({_short(f.get('file') or '?')})" for f in doc["shared"]["frames"]]
    files = [_short(f.get("file") or "?") for f in doc["shared"]["frames"]]
    total = 0.0
    samples = 0
    idle = 0.0
    self_c: dict[str, float] = {}
    incl_c: dict[str, float] = {}
    file_c: dict[str, float] = {}
    for prof in doc["profiles"]:
        for stack, w in zip(prof["samples"], prof["weights"], strict=False):
            if not stack:
                continue
            samples += 1
            leaf = stack[-1]
            if frames[leaf].startswith(("EpollSelector.select", "epoll_wait")) or "select (" in frames[leaf]:
                idle += w  # the event loop waiting for I/O: not work
                continue
            total += w
            self_c[frames[leaf]] = self_c.get(frames[leaf], 0) + w
            file_c[files[leaf]] = file_c.get(files[leaf], 0) + w
            for name in {frames[i] for i in stack}:
                incl_c[name] = incl_c.get(name, 0) + w
    if not total:
        return {}

    def fmt(d: dict[str, float], k: int = n) -> list[tuple[str, float]]:
        return [(key, round(100 * v / total, 1)) for key, v in sorted(d.items(), key=lambda kv: -kv[1])[:k]]

    # Shares are of the non-idle samples. Note: py-spy samples wall time of the running thread, so
    # time the process spends preempted inside a syscall (e.g. a socket write that wakes the
    # PostgreSQL backend on the same core) is counted in that syscall's caller. On uvloop the
    # loop's own compiled work (sockets, TLS records, callbacks) shows as `Runner.run` self time.
    return {"samples": samples, "idle_pct_of_all": round(100 * idle / (idle + total), 1),
            "self_pct": fmt(self_c), "inclusive_pct": fmt(incl_c), "self_pct_by_file": fmt(file_c, 20)}


# ---------------------------------------------------------------- the run

def git_describe() -> str:
    """HEAD's short hash, with "+dirty" when the service's code has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "mailtrap_smtp"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head or "?") + ("+dirty" if dirty else "")


@contextlib.contextmanager
def tempdir(keep: bool) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="mts-bench-"))
    try:
        yield d
    finally:
        if keep:
            log(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)
