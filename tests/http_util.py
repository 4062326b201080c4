"""Shared helpers for the API tests: a running HTTPS API on loopback over the real database.

Its fixtures (`api`, `api_factory`) are registered for every test module by conftest.py.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mailtrap_smtp import dnsresolve, tokens
from mailtrap_smtp.app import http_service
from mailtrap_smtp.http.server import HttpService
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.store import credentials
from tests.smtp_util import DOMAIN, SENDER, Account, create_account

__all__ = ["DOMAIN", "SENDER", "ApiEnv", "api", "api_factory", "minimal"]


def minimal(**over: Any) -> dict[str, Any]:
    """The smallest valid /api/send body (MAILTRAP_COMPAT.md §9 item 1)."""
    body: dict[str, Any] = {"from": {"email": SENDER}, "to": [{"email": "r@x.test"}], "subject": "s", "text": "t"}
    body.update(over)
    return body


@dataclass
class ApiEnv:
    service: HttpService
    pool: Any
    cfg: Any
    account: Account
    ssl_context: ssl.SSLContext
    ca_path: str

    @property
    def port(self) -> int:
        return self.service.listeners[0].port

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return self.account.token

    def client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, verify=self.ssl_context, timeout=30, **kw)

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def new_token(self, *, streams: tuple[str, ...] = ("transactional",), level: str = "send",
                        domain_ids: list[int] | None = None) -> str:
        """Another token of the account, with this grant (`permissions.py`)."""
        tok = tokens.generate()
        await credentials.create(self.pool, self.account.id, public_id=tok.public_id, digest=tok.digest,
                                 streams=list(streams), level=level, domain_ids=domain_ids)
        return tok.token

    async def counts(self) -> dict[str, int]:
        """Rows stored and quota charged so far: the "nothing stored, nothing charged" check."""
        async with self.pool.acquire() as conn:
            return {
                "messages": await conn.fetchval("SELECT count(*) FROM messages"),
                "recipients": await conn.fetchval("SELECT count(*) FROM recipients"),
                "used": await conn.fetchval("SELECT coalesce(sum(used), 0) FROM usage"),
            }

    async def assert_nothing_stored(self) -> None:
        assert await self.counts() == {"messages": 0, "recipients": 0, "used": 0}

    async def raw_of(self, recipient_id: str) -> bytes:
        async with self.pool.acquire() as conn:
            raw = await conn.fetchval(
                "SELECT m.raw FROM messages m JOIN recipients r ON r.message_id = m.id WHERE r.public_id = $1::uuid",
                recipient_id)
        assert raw is not None, recipient_id
        return bytes(raw)


@pytest.fixture
async def api_factory(pool: Any, make_config: Any, client_ssl_context: ssl.SSLContext, ca_file: Any) -> Any:
    services: list[HttpService] = []

    async def start(*, account: dict[str, Any] | None = None, stream: str = "host",
                    http: dict[str, Any] | None = None, **sections: dict[str, Any]) -> ApiEnv:
        http_section = {"listeners": [{"address": "127.0.0.1", "port": 3, "stream": stream}], **(http or {})}
        cfg = make_config(http=http_section, **sections)
        acct = await create_account(pool, **(account or {}))
        kek = os.urandom(32)
        resolver = dnsresolve.make_resolver(cfg.dns.nameservers, cfg.dns.timeout_seconds)
        svc = http_service(cfg, pool, signer=KeyStore(pool, kek), kek=kek, resolver=resolver, port_override=0)
        await svc.start()
        services.append(svc)
        return ApiEnv(svc, pool, cfg, acct, client_ssl_context, str(ca_file))

    yield start
    for svc in services:
        await svc.stop(1.0)


@pytest.fixture
async def api(api_factory: Any) -> ApiEnv:
    env: ApiEnv = await api_factory()
    return env
