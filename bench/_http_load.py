"""One load-generator process for bench/http_api.py: keep-alive HTTPS clients posting one JSON body.

    python bench/_http_load.py '<json spec>'

spec: host, port, cafile, path, token, body (the JSON text), connections, requests (per connection),
msgs_per_request (what one 200 counts for). Requests are pre-serialised bytes and responses are read
by Content-Length on a raw asyncio TLS stream, so the client costs little CPU per request. Prints
"ready", waits for a line on stdin, runs, prints one JSON line (CLOCK_MONOTONIC start/end,
latencies in ms, counts, CPU seconds).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from typing import Any


async def client(spec: dict[str, Any], ctx: ssl.SSLContext, request: bytes, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection(spec["host"], spec["port"], ssl=ctx, server_hostname="localhost")
    try:
        for _ in range(spec["requests"]):
            t0 = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            out["lat"].append((time.monotonic() - t0) * 1000)
            if status == 200:
                out["ok"] += spec["msgs_per_request"] if b'"success":false' not in body else 0
            else:
                out["errors"] += 1
                if len(out["error_samples"]) < 3:
                    out["error_samples"].append(f"{status} {body[:200]!r}")
    finally:
        writer.close()


async def main(spec: dict[str, Any]) -> None:
    ctx = ssl.create_default_context(cafile=spec["cafile"])
    body = spec["body"].encode()
    request = (f"POST {spec['path']} HTTP/1.1\r\nHost: 127.0.0.1:{spec['port']}\r\n"
               f"Authorization: Bearer {spec['token']}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    out: dict[str, Any] = {"lat": [], "ok": 0, "errors": 0, "error_samples": []}
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu0 = time.process_time()
    out["start"] = time.monotonic()
    results = await asyncio.gather(*(client(spec, ctx, request, out) for _ in range(spec["connections"])),
                                   return_exceptions=True)
    out["end"] = time.monotonic()
    out["cpu_s"] = time.process_time() - cpu0
    failures = [r for r in results if isinstance(r, BaseException)]
    out["errors"] += len(failures)
    out["error_samples"] += [repr(f)[:200] for f in failures[:3]]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(json.loads(sys.argv[1])))
