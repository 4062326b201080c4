"""Shared helpers for the dashboard tests: log in over real HTTPS with httpx, read a page's CSRF token."""

from __future__ import annotations

import re

import httpx

from tests.http_util import ApiEnv

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


async def login(env: ApiEnv, token: str) -> httpx.AsyncClient:
    """A client holding a dashboard session of `token` (an admin token); the caller closes it."""
    client = env.client()
    page = await client.get("/dashboard/login")
    r = await client.post("/dashboard/login", data={"csrf": csrf_of(page.text), "token": token})
    assert (r.status_code, r.headers.get("location")) == (303, "/dashboard/"), r.text
    return client


async def csrf(client: httpx.AsyncClient) -> str:
    """The session's CSRF token, as every page of the session carries it."""
    r = await client.get("/dashboard/")
    assert r.status_code == 200, r.text
    return csrf_of(r.text)
