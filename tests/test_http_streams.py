"""Stream selection (MAILTRAP_COMPAT.md §1, §9 item 15): a listener is transactional, bulk, or
decides by the Host header (`bulk.` prefix); a token sends only on its own stream."""

from __future__ import annotations

from typing import Any

import pytest

from tests.http_util import ApiEnv, minimal


@pytest.mark.parametrize(("listener", "host", "token_stream", "status", "stored_stream"), [
    ("host", "bulk.api.example.test", "bulk", 200, "bulk"),
    ("host", "send.api.example.test", "transactional", 200, "transactional"),
    ("host", "bulk.api.example.test", "transactional", 401, None),
    ("host", "send.api.example.test", "bulk", 401, None),
    ("bulk", "send.api.example.test", "bulk", 200, "bulk"),
    ("transactional", "bulk.api.example.test", "transactional", 200, "transactional"),
    ("bulk", "anything", "transactional", 401, None),
])
async def test_stream_by_listener_and_host(api_factory: Any, listener: str, host: str, token_stream: str,
                                           status: int, stored_stream: str | None) -> None:
    env: ApiEnv = await api_factory(stream=listener, account={"stream": token_stream})
    async with env.client() as c:
        r = await c.post("/api/send", json=minimal(), headers={**env.auth(), "Host": host})
    assert r.status_code == status, r.text
    async with env.pool.acquire() as conn:
        streams = [row["stream"] for row in await conn.fetch("SELECT stream FROM messages")]
    assert streams == ([stored_stream] if stored_stream else [])
    if status == 401:
        assert r.json() == {"success": False, "errors": ["Unauthorized"]}
