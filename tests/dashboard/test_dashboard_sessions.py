"""Dashboard sessions kept by the server (issue 15): logging out ends the session for every copy of
its cookie (a copy replayed afterwards is sent to the login page and its forms do nothing), one
session's logout leaves the account's other sessions open, the operator's session likewise, and
sessions end when idle or too old (`[dashboard] session_idle_seconds`, `session_max_seconds`),
checked with an injected clock and, over HTTPS, with a session aged in the database."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from mailtrap_smtp import config
from mailtrap_smtp.config import DashboardConfig
from mailtrap_smtp.core import dashboard_sessions, operator_password
from tests.dashboard_util import csrf, csrf_of, login
from tests.http_util import ApiEnv

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def admin(api: ApiEnv) -> str:
    return await api.new_token(level="admin", streams=("transactional", "bulk"))


async def _logout(client: httpx.AsyncClient) -> None:
    r = await client.post("/dashboard/logout", data={"csrf": await csrf(client)})
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")


async def _sessions(api: ApiEnv) -> int:
    async with api.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM dashboard_sessions"))


async def test_a_copied_cookie_is_worthless_after_logout(api: ApiEnv, admin: str) -> None:
    client = await login(api, admin)
    copied = dict(client.cookies)
    token = await csrf(client)
    await _logout(client)
    await client.aclose()
    assert await _sessions(api) == 0
    async with api.client(cookies=copied) as c:
        page = await c.get("/dashboard/tokens")
        assert (page.status_code, page.headers["location"]) == (303, "/dashboard/login")
        before = await api.counts()
        form = await c.post("/dashboard/domains", data={"csrf": token, "domain_name": "replayed.test"})
        assert (form.status_code, form.headers["location"]) == (303, "/dashboard/login")
    assert await api.counts() == before
    async with api.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sending_domains WHERE name = 'replayed.test'") == 0


async def test_logout_ends_only_its_own_session(api: ApiEnv, admin: str) -> None:
    laptop, phone = await login(api, admin), await login(api, admin)
    try:
        await _logout(laptop)
        assert (await phone.get("/dashboard/tokens")).status_code == 200
        assert await _sessions(api) == 1
    finally:
        await laptop.aclose()
        await phone.aclose()


async def test_the_operators_session_ends_at_logout(api: ApiEnv) -> None:
    operator_password.set_password(operator_password.path_for(api.cfg), "operator secret of the test")
    client = api.client()
    page = await client.get("/dashboard/login")
    r = await client.post("/dashboard/login", data={"csrf": csrf_of(page.text), "token": "operator secret of the test"})
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/operator")
    copied = dict(client.cookies)
    form = await client.get("/dashboard/operator")
    assert form.status_code == 200
    r = await client.post("/dashboard/logout", data={"csrf": csrf_of(form.text)})
    assert r.status_code == 303
    await client.aclose()
    async with api.client(cookies=copied) as c:
        r = await c.get("/dashboard/operator")
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")


@pytest.mark.parametrize("column", ["last_seen_at", "created_at"])
async def test_an_idle_or_old_session_sends_to_login(api: ApiEnv, admin: str, column: str) -> None:
    """Idle: unused for more than session_idle_seconds. Old: the absolute end (expires_at) passed."""
    client = await login(api, admin)
    try:
        assert (await client.get("/dashboard/")).status_code == 200
        cfg = api.cfg.dashboard
        shift = cfg.session_idle_seconds if column == "last_seen_at" else cfg.session_max_seconds
        target = "last_seen_at" if column == "last_seen_at" else "expires_at"
        async with api.pool.acquire() as conn:
            await conn.execute(f"UPDATE dashboard_sessions SET {target} = {target} - make_interval(secs => $1)",
                               shift + 1)
        r = await client.get("/dashboard/")
        assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
    finally:
        await client.aclose()


async def test_timeouts_with_an_injected_clock(api: ApiEnv) -> None:
    cfg = DashboardConfig(session_idle_seconds=600.0, session_max_seconds=3600.0)
    async with api.pool.acquire() as conn:
        sid = await dashboard_sessions.open_session(conn, api.account.id, cfg, now=T0)
        # used every 500 s: never idle for 600 s, yet over at the absolute end (3600 s)
        alive = {s: await dashboard_sessions.alive(conn, sid, api.account.id, cfg, T0 + dt.timedelta(seconds=s))
                 for s in range(0, 4001, 500)}
        assert alive == {s: s < 3600 for s in range(0, 4001, 500)}
        idle = await dashboard_sessions.open_session(conn, api.account.id, cfg, now=T0)
        assert await dashboard_sessions.alive(conn, idle, api.account.id, cfg, T0 + dt.timedelta(seconds=599))
        # that use moved its idle end to 599 + 600 s
        assert not await dashboard_sessions.alive(conn, idle, api.account.id, cfg, T0 + dt.timedelta(seconds=1199))
        assert not await dashboard_sessions.alive(conn, idle, api.account.id + 1, cfg, T0)  # another account's
        assert not await dashboard_sessions.alive(conn, idle, None, cfg, T0)  # not the operator's
        assert not await dashboard_sessions.alive(conn, "no such session", api.account.id, cfg, T0)


@pytest.mark.parametrize("key", ["session_idle_seconds", "session_max_seconds"])
@pytest.mark.parametrize("value", [0, -1])
def test_timeouts_must_be_positive(key: str, value: Any) -> None:
    with pytest.raises(config.ConfigError) as e:
        config.load(environ={f"MAILTRAP_SMTP_DASHBOARD__{key.upper()}": str(value)})
    assert str(e.value) == f"dashboard.{key}: must be positive, got {float(value)}"
