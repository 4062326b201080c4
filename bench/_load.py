"""One load-generator process for bench/smtp_frontend.py (aiosmtplib, STARTTLS + AUTH PLAIN).

    python bench/_load.py '<json spec>'

Builds its messages and TLS context, prints "ready", waits for a line on stdin, then runs
`connections` SMTP sessions (at most `concurrency` at once), each: connect, EHLO, STARTTLS, EHLO,
AUTH PLAIN, then `messages` x (MAIL, RCPT, DATA), QUIT. DATA→250 is the time of aiosmtplib's
`data()` call: "DATA" → 354 → body → final reply. With `"verb": "bdat"` in the spec the message goes
as one `BDAT <n> LAST` chunk instead (RFC 3030; the time is then BDAT line + body → final reply).
Prints one JSON line with CLOCK_MONOTONIC start and end times (comparable across processes),
latencies in ms, and counts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import ssl
import sys
import time
from typing import Any

import aiosmtplib


def make_message(size: int, sender: str, rcpt: str, seq: int) -> bytes:
    """A plausible message of exactly `size` bytes: headers, a text part and a base64 attachment."""
    head = (
        f"From: Bench <{sender}>\r\n"
        f"To: <{rcpt}>\r\n"
        f"Subject: Benchmark message {seq}\r\n"
        "Date: Thu, 26 Nov 2026 06:00:00 +0000\r\n"
        f"Message-ID: <bench-{seq}-{random.getrandbits(64):x}@{sender.partition('@')[2]}>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Your statement is attached. Please review the balance and the payment due date.\r\n"
        "--b1\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
    ).encode()
    tail = b"\r\n--b1--\r\n"
    need = max(0, size - len(head) - len(tail))
    b64 = base64.b64encode(random.Random(seq).randbytes(need))
    full, rem = divmod(need, 78)  # 76 base64 characters + CRLF per line
    body = b"".join(b64[i * 76:(i + 1) * 76] + b"\r\n" for i in range(full)) + b64[:rem]
    return head + body + tail


async def bdat(smtp: aiosmtplib.SMTP, msg: bytes) -> None:
    """One `BDAT <n> LAST` chunk: aiosmtplib has no BDAT, so the line and the octets are written
    together (the server replies after the chunk) and the one reply read (as delivery/client.py)."""
    protocol = smtp.protocol
    assert protocol is not None
    protocol.write(b"BDAT %d LAST\r\n" % len(msg))
    protocol.write(msg)
    resp = await protocol.read_response(timeout=smtp.timeout)
    if resp.code != 250:
        raise aiosmtplib.SMTPDataError(resp.code, resp.message)


async def session(spec: dict[str, Any], ctx: ssl.SSLContext, msgs: list[bytes], out: dict[str, Any]) -> None:
    smtp = aiosmtplib.SMTP(hostname=spec["host"], port=spec["port"], start_tls=True, tls_context=ctx,
                           timeout=120, local_hostname="loadgen.example")
    try:
        await smtp.connect()  # EHLO, STARTTLS
        await smtp.ehlo()
        await smtp.auth_plain(spec["user"], spec["password"])
        for i in range(spec["messages"]):
            msg = msgs[i % len(msgs)]
            t0 = time.perf_counter()
            await smtp.mail(spec["sender"])
            await smtp.rcpt(spec["rcpt"])
            t1 = time.perf_counter()
            if spec.get("verb") == "bdat":
                await bdat(smtp, msg)
            else:
                await smtp.data(msg)
            t2 = time.perf_counter()
            out["lat"].append((t2 - t1) * 1000.0)
            out["txn"].append((t2 - t0) * 1000.0)
            out["ok"] += 1
        await smtp.quit()
        out["sessions_ok"] += 1
    except Exception as e:
        out["errors"] += 1
        if len(out["error_samples"]) < 5:
            out["error_samples"].append(f"{type(e).__name__}: {e}"[:300])
        smtp.close()


async def run(spec: dict[str, Any]) -> None:
    ctx = ssl.create_default_context(cafile=spec["cafile"])
    ctx.check_hostname = True
    msgs = [make_message(spec["size"], spec["sender"], spec["rcpt"], k) for k in range(4)]
    out: dict[str, Any] = {"lat": [], "txn": [], "ok": 0, "errors": 0, "sessions_ok": 0, "error_samples": []}
    sem = asyncio.Semaphore(spec["concurrency"])

    async def one() -> None:
        async with sem:
            await session(spec, ctx, msgs, out)

    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    start, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(one() for _ in range(spec["connections"])))
    end = time.monotonic()
    out["start"], out["end"], out["cpu_s"] = start, end, time.process_time() - cpu
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(run(json.loads(sys.argv[1])))
