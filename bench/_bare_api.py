"""The baseline of bench/http_api.py: a bare FastAPI endpoint on the service's TLS settings that
parses the same JSON into the same pydantic model and returns a fixed 200 (the framework doing
nothing else). uvicorn + httptools on uvloop, like the service.

    python bench/_bare_api.py PORT CERT KEY
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvicorn
import uvloop
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from mailtrap_smtp import config
from mailtrap_smtp.http.models import BatchBody, Mail
from mailtrap_smtp.smtp.tls import build_context

app = FastAPI()
FIXED = {"success": True, "message_ids": ["00000000-0000-0000-0000-000000000000"]}


@app.post("/api/send")
async def send(mail: Mail) -> JSONResponse:
    return JSONResponse(FIXED)


@app.post("/api/batch")
async def batch(body: BatchBody) -> JSONResponse:
    return JSONResponse({"success": True, "responses": [FIXED] * len(body.requests or [])})


async def main() -> None:
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    cfg = config.Config(tls=config.TlsConfig(cert_file=cert, key_file=key), base_dir=Path.cwd())
    ucfg = uvicorn.Config(app, host="127.0.0.1", port=port, http="httptools", ws="none", lifespan="off",
                          access_log=False, log_config=None, loop="none")
    ucfg.load()
    ucfg.ssl = build_context(cfg)
    await uvicorn.Server(ucfg).serve()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
