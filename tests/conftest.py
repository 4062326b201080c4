"""Shared fixtures: one real PostgreSQL per session, a fresh database per test, a test CA."""

from __future__ import annotations

import asyncio
import os
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trustme
import uvloop

from mailtrap_smtp import config as config_mod
from mailtrap_smtp.store import db as store_db
from mailtrap_smtp.store.embedded import EmbeddedPostgres

# Tests run on the event loop production uses (`server.event_loop`, default uvloop); the modules
# whose behaviour depends on transport details (TLS, PROXY headers, hostile byte streams) run on
# the standard library's loop as well, which `event_loop = "asyncio"` selects.
_BOTH_LOOPS = {"test_smtp_hostile.py", "test_smtp_tls.py", "test_smtp_half_close.py"}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    if Path(str(item.fspath)).name in _BOTH_LOOPS:
        return {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}

# tests.inbound_util last: it imports the others, which must be registered (and rewritten) first.
pytest_plugins = ["tests.cli_util", "tests.delivery_util", "tests.dnsserver", "tests.smtp_util", "tests.http_util",
                  "tests.inbound_util", "tests.postfix_util"]

TEMPLATE_DB = "mts_template"


def _with_database(dsn: str, name: str) -> str:
    """The same server, another database (works for URL DSNs with or without a socket host)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of the admin database of a server with a migrated template database."""
    dsn = os.environ.get("MAILTRAP_SMTP_TEST_DSN", "")
    embedded: EmbeddedPostgres | None = None
    if not dsn:
        embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
        dsn = embedded.start()

    async def prepare() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        finally:
            await conn.close()
        tconn = await asyncpg.connect(_with_database(dsn, TEMPLATE_DB))
        try:
            await store_db.migrate(tconn)
        finally:
            await tconn.close()

    asyncio.run(prepare())
    yield dsn
    if embedded is not None:
        embedded.close()


@pytest.fixture
def db_dsn(pg_server: str) -> Iterator[str]:
    """A fresh, migrated database for one test, cloned from the template (fast: a file copy)."""
    name = f"t_{uuid.uuid4().hex[:16]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(pg_server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"))
    yield _with_database(pg_server, name)
    asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    p = await store_db.create_pool(db_dsn, min_size=1, max_size=10)
    yield p
    await p.close()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A server certificate for localhost/127.0.0.1 signed by the test CA: (cert chain, key)."""
    d = tmp_path_factory.mktemp("certs")
    cert = ca.issue_cert("localhost", "127.0.0.1", "mail.test")
    cert_path, key_path = d / "cert.pem", d / "key.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for blob in cert.cert_chain_pems[1:]:
        with cert_path.open("ab") as f:
            f.write(blob.bytes())
    return cert_path, key_path


@pytest.fixture(scope="session")
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    p = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(p))
    return p


@pytest.fixture
def make_config(tmp_path: Path, db_dsn: str, cert_files: tuple[Path, Path]) -> Any:
    """Build a validated Config for this test's database and certificates, with overrides."""

    def build(**sections: dict[str, Any]) -> config_mod.Config:
        data: dict[str, dict[str, Any]] = {
            "server": {"hostname": "mx.service.test", "data_dir": str(tmp_path / "data")},
            "database": {"dsn": db_dsn, "pool_min_size": 1, "pool_max_size": 5},
            "tls": {"cert_file": str(cert_files[0]), "key_file": str(cert_files[1])},
            "smtp": {"listeners": [{"address": "127.0.0.1", "port": 1, "mode": "starttls"}]},
            "metrics": {"listen": ""},
        }
        for section, values in sections.items():
            data.setdefault(section, {}).update(values)
        path = tmp_path / "config.toml"
        path.write_text(_to_toml(data), encoding="utf-8")
        return config_mod.load(path, environ={})

    return build


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + "}"
    raise TypeError(v)


def _to_toml(data: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"
