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


@pytest.mark.parametrize(("streams", "level", "scope", "host", "status", "stored_stream"), [
    (("transactional",), "send", None, "send.api.test", 200, "transactional"),
    (("transactional",), "admin", None, "send.api.test", 200, "transactional"),
    (("transactional",), "read", None, "send.api.test", 401, None),
    (("transactional", "bulk"), "send", None, "bulk.api.test", 200, "bulk"),
    (("transactional", "bulk"), "send", None, "send.api.test", 200, "transactional"),
    (("bulk",), "send", None, "send.api.test", 401, None),
    (("transactional",), "send", "own", "send.api.test", 200, "transactional"),
    (("transactional",), "send", "other", "send.api.test", 401, None),
    (("transactional",), "admin", "other", "send.api.test", 401, None),
])
async def test_scoped_tokens_over_http(api_factory: Any, streams: tuple[str, ...], level: str, scope: str | None,
                                       host: str, status: int, stored_stream: str | None) -> None:
    from mailtrap_smtp.store import domains

    env: ApiEnv = await api_factory()
    own = await domains.get_by_name(env.pool, "example.com")
    other = await domains.create(env.pool, env.account.id, "other.test", verification_token="t", dns_skipped=True)
    ids = None if scope is None else [own["id"] if scope == "own" else other["id"]]
    token = await env.new_token(streams=streams, level=level, domain_ids=ids)
    async with env.client() as c:
        r = await c.post("/api/send", json=minimal(), headers={**env.auth(token), "Host": host})
    assert r.status_code == status, r.text
    if status == 401:
        assert r.json() == {"success": False, "errors": ["Unauthorized"]}
    async with env.pool.acquire() as conn:
        assert [row["stream"] for row in await conn.fetch("SELECT stream FROM messages")] == (
            [stored_stream] if stored_stream else [])
