"""Shared helpers for the SMTP tests: a running service, an account that may send, raw clients.

A pytest plugin (tests/conftest.py lists it in `pytest_plugins`): its fixtures (`smtp`,
`smtp_factory`) are available to every test module without importing them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import pytest

from mailtrap_smtp import tokens
from mailtrap_smtp.app import smtp_service
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.smtp.server import SmtpService
from mailtrap_smtp.store import accounts, credentials, domains

DOMAIN = "example.com"
SENDER = f"app@{DOMAIN}"


def message(frm: str = SENDER, to: str = "user@dest.test", subject: str = "Hello",
            body: str = "Hi there.", extra: str = "") -> bytes:
    return (f"From: Sender <{frm}>\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\r\n{body}\r\n").encode()


@dataclass
class Account:
    id: int
    name: str
    token: str
    credential_id: int


@dataclass
class Env:
    service: SmtpService
    pool: Any
    cfg: Any
    account: Account
    ssl_context: ssl.SSLContext
    others: list[Account] = field(default_factory=list)
    clients: list[RawClient] = field(default_factory=list)  # closed by smtp_factory at teardown

    @property
    def port(self) -> int:
        return self.service.listeners[0].port

    @property
    def implicit_port(self) -> int:
        return self.service.listeners[1].port

    @property
    def token(self) -> str:
        return self.account.token

    async def counts(self) -> dict[str, int]:
        """Rows stored and quota charged so far: the "nothing stored, nothing charged" check."""
        async with self.pool.acquire() as conn:
            return {
                "messages": await conn.fetchval("SELECT count(*) FROM messages"),
                "recipients": await conn.fetchval("SELECT count(*) FROM recipients"),
                "used": await conn.fetchval("SELECT coalesce(sum(used), 0) FROM usage"),
                "events": await conn.fetchval("SELECT count(*) FROM events WHERE type = 'reception'"),
            }

    async def assert_nothing_stored(self) -> None:
        assert await self.counts() == {"messages": 0, "recipients": 0, "used": 0, "events": 0}

    def raw(self, *, implicit: bool = False) -> RawClient:
        client = RawClient("127.0.0.1", self.implicit_port if implicit else self.port, self.ssl_context,
                           implicit=implicit)
        self.clients.append(client)
        return client


async def create_account(pool: Any, name: str = "acme", *, monthly_limit: int = 1000,
                         max_message_size: int = 10 * 1024 * 1024, domain: str | None = DOMAIN,
                         stream: str = "transactional") -> Account:
    acct = await accounts.create(pool, name, monthly_limit=monthly_limit, max_message_size=max_message_size)
    if domain:
        await domains.create(pool, acct["id"], domain, verification_token="t", dns_skipped=True)
    tok = tokens.generate()
    cred = await credentials.create(pool, acct["id"], public_id=tok.public_id, digest=tok.digest, stream=stream)
    return Account(acct["id"], name, tok.token, cred["id"])


def smtp_sections(smtp: dict[str, Any] | None = None, *, proxy: bool = False,
                  **sections: dict[str, Any]) -> dict[str, Any]:
    """Config sections for a service with a STARTTLS and an implicit-TLS listener (both with
    `proxy_protocol` when `proxy`)."""
    base: dict[str, Any] = {
        "listeners": [
            {"address": "127.0.0.1", "port": 1, "mode": "starttls", "proxy_protocol": proxy},
            {"address": "127.0.0.1", "port": 2, "mode": "implicit", "proxy_protocol": proxy},
        ],
    }
    base.update(smtp or {})
    return {"smtp": base, **sections}


@pytest.fixture
async def smtp_factory(pool: Any, make_config: Any, client_ssl_context: ssl.SSLContext) -> Any:
    services: list[SmtpService] = []
    envs: list[Env] = []

    async def start(*, account: dict[str, Any] | None = None, smtp: dict[str, Any] | None = None,
                    signer: Any = None, kek: bytes | None = None, proxy: bool = False,
                    **sections: dict[str, Any]) -> Env:
        cfg = make_config(**smtp_sections(smtp, proxy=proxy, **sections))
        acct = await create_account(pool, **(account or {}))
        signer = signer or KeyStore(pool, kek or os.urandom(32))
        svc = smtp_service(cfg, pool, signer=signer, process_index=0, port_override=0)
        await svc.start()
        services.append(svc)
        env = Env(svc, pool, cfg, acct, client_ssl_context)
        envs.append(env)
        return env

    yield start
    for env in envs:  # what a test left open (warnings are errors: an unclosed transport fails it)
        for client in env.clients:
            client.close()
    for svc in services:
        await svc.stop(1.0)


@pytest.fixture
async def smtp(smtp_factory: Any) -> Env:
    env: Env = await smtp_factory()
    return env


class RawClient:
    """A byte-level SMTP client for hostile dialogues (asyncio streams, real TLS)."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, *, implicit: bool = False) -> None:
        self.host, self.port, self.ctx, self.implicit = host, port, ctx, implicit
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def __aenter__(self) -> RawClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.close()

    async def connect(self, greet: bool = True) -> str | None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ctx if self.implicit else None,
            server_hostname="localhost" if self.implicit else None,
        )
        return await self.reply() if greet else None

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def reply(self, timeout: float = 5.0) -> str:
        """One (possibly multi-line) reply, lines joined by newlines, without CRLF."""
        lines = []
        async with asyncio.timeout(timeout):
            while True:
                line = await self.reader.readline()
                if not line:
                    self.close()
                    raise ConnectionResetError("closed by server")
                lines.append(line.decode().rstrip("\r\n"))
                if len(line) < 4 or line[3:4] != b"-":
                    return "\n".join(lines)

    async def cmd(self, line: str | bytes) -> str:
        await self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return await self.reply()

    async def starttls(self) -> None:
        assert (await self.cmd("STARTTLS")).startswith("220 2.0.0")
        await self.writer.start_tls(self.ctx, server_hostname="localhost")

    async def login(self, token: str, *, ehlo: str = "client.test") -> str:
        if not self.implicit:
            await self.cmd(f"EHLO {ehlo}")
            await self.starttls()
        await self.cmd(f"EHLO {ehlo}")
        return await self.cmd("AUTH PLAIN " + base64.b64encode(f"\0api\0{token}".encode()).decode())

    async def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the connection (EOF or reset) within `timeout`, reading and
        discarding whatever it sends until then; False if the connection is still open after it."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            pass
        self.close()
        return True


async def authed(env: Env) -> RawClient:
    """A raw client of `env`'s service, connected, past STARTTLS and AUTH."""
    c = env.raw()
    await c.connect()
    assert await c.login(env.token) == reply_line("AUTH_OK")
    return c


def half_close(c: RawClient) -> None:
    """Shut down the client's sending side at the TCP level (a FIN, no TLS close_notify).

    Through a duplicate of the descriptor: uvloop's transport sockets refuse shutdown()."""
    with socket.socket(fileno=os.dup(c.writer.transport.get_extra_info("socket").fileno())) as dup:
        dup.shutdown(socket.SHUT_WR)


def reply_line(name: str, **values: Any) -> str:
    from mailtrap_smtp.replies import REPLIES

    r = REPLIES[name]
    return (r.format(**values) if values else r).line


# --- a service in its own process (python -m tests.smtp_util CONFIG): the multi-process tests ---

async def _serve_main(config_path: str) -> None:
    import json
    import signal
    import sys

    from mailtrap_smtp import config as config_mod
    from mailtrap_smtp.store import db as store_db

    cfg = config_mod.load(config_path, environ={})
    pool = await store_db.create_pool(cfg.database.dsn, min_size=1, max_size=10)
    svc = smtp_service(cfg, pool, signer=KeyStore(pool, os.urandom(32)), port_override=0)
    await svc.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, svc.reload_tls)
    sys.stdout.write(json.dumps({"ports": svc.ports}) + "\n")
    sys.stdout.flush()
    await stop.wait()
    await svc.stop(cfg.server.shutdown_grace_seconds)
    await pool.close()


async def spawn_service(config_path: str) -> tuple[asyncio.subprocess.Process, list[int]]:
    import json
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.smtp_util", config_path,
        stdout=asyncio.subprocess.PIPE, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = await proc.stdout.readline()
    return proc, json.loads(line)["ports"]


if __name__ == "__main__":
    import sys

    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as production (server.event_loop)
        runner.run(_serve_main(sys.argv[1]))


async def use_quota(pool: Any, account_id: int, n: int) -> None:
    """Charge n recipients to the account's current period, as earlier messages would have."""
    from mailtrap_smtp import quota

    anchor = await pool.fetchval("SELECT billing_anchor_day FROM accounts WHERE id = $1", account_id)
    await pool.execute(
        """INSERT INTO usage (account_id, period_start, used) VALUES ($1, $2, $3)
           ON CONFLICT (account_id, period_start) DO UPDATE SET used = usage.used + EXCLUDED.used""",
        account_id, quota.current_period(anchor), n,
    )
