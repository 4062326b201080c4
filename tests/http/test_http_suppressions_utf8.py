"""Internationalised suppressions over real HTTPS: the API creates and finds them in their compared
form (`mailbox.suppression_form`), a send to a suppressed internationalised recipient is accepted with
an id but rejected and not charged, and the dashboard's CSV import takes UTF-8 and refuses any other
encoding with nothing stored."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
import pytest

from mailtrap_smtp.store import domains as domains_store
from tests.dashboard_util import csrf, login
from tests.http_util import DOMAIN, ApiEnv, minimal

ACE = "xn--bcher-kva.example"  # bücher.example


@pytest.fixture
async def admin(api: ApiEnv) -> str:
    return await api.new_token(level="admin")


@pytest.fixture
async def domain_id(api: ApiEnv) -> int:
    return int((await domains_store.get_by_name(api.pool, DOMAIN))["id"])


async def _count(api: ApiEnv, table: str) -> int:
    return int(await api.pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_api_creates_and_finds_internationalised_suppression(api: ApiEnv, admin: str, domain_id: int) -> None:
    async with api.client() as c:
        r = await c.post("/api/suppressions", json={"email": "J\u00fcrgen@B\u00fccher.example", "domain_id": domain_id},
                         headers=api.auth(admin))
        assert r.status_code == 201, r.text
        obj = r.json()["data"]
        assert obj["email"] == f"j\u00fcrgen@{ACE}" and obj["type"] == "manual import"
        again = await c.post("/api/suppressions", json={"email": f"J\u00dcRGEN@{ACE}", "domain_id": domain_id},
                             headers=api.auth(admin))
        assert again.status_code == 201 and again.json()["data"] == obj  # the same mailbox: the same entry
        found = await c.get("/api/suppressions", params={"email": "j\u00fcrgen@b\u00fccher.example"},
                            headers=api.auth(admin))
        assert found.json() == [obj]
    assert await _count(api, "suppressions") == 1


@pytest.mark.parametrize("email", ["a\u202eb@x.test", "a@\u2603.test", "\u00e9" * 33 + "@x.test"])
async def test_api_refuses_what_the_mailbox_rule_refuses(api: ApiEnv, admin: str, domain_id: int,
                                                          email: str) -> None:
    async with api.client() as c:
        r = await c.post("/api/suppressions", json={"email": email, "domain_id": domain_id}, headers=api.auth(admin))
    assert (r.status_code, r.json()) == (422, {"errors": {"email": ["is invalid"]}})
    assert await _count(api, "suppressions") == 0


async def test_send_to_suppressed_internationalised_recipient(api: ApiEnv, admin: str, domain_id: int) -> None:
    async with api.client() as c:
        r = await c.post("/api/suppressions", json={"email": "\u7528\u6237@\u4f8b\u5b50.test", "domain_id": domain_id},
                         headers=api.auth(admin))
        assert r.status_code == 201, r.text
        sent = await c.post("/api/send", json=minimal(to=[{"email": "\u7528\u6237@XN--FSQU00A.test"},
                                                          {"email": "ok@x.test"}]), headers=api.auth())
    assert sent.status_code == 200, sent.text
    assert len(sent.json()["message_ids"]) == 2  # a suppressed recipient still gets its id (§6)
    states = dict(await api.pool.fetch("SELECT rcpt, state FROM recipients"))
    assert states == {"\u7528\u6237@XN--FSQU00A.test": "rejected", "ok@x.test": "queued"}
    assert await api.pool.fetchval("SELECT coalesce(sum(used), 0) FROM usage") == 1
    assert await api.pool.fetchval("SELECT count(*) FROM events WHERE type = 'suppressed'") == 1


def _error(page: str) -> str:
    found = re.search(r'<p class="error" role="alert">(.*?)</p>', page, re.S)
    assert found is not None, page[:2000]
    return html.unescape(found.group(1))


@pytest.fixture
async def session(api: ApiEnv, admin: str) -> Any:
    client = await login(api, admin)
    yield client, await csrf(client)
    await client.aclose()


@pytest.mark.parametrize(("data", "error"), [
    pytest.param(b"email\ncaf\xe9@x.test\n", "file is not UTF-8 text", id="latin-1"),
    pytest.param(b"email\n\xef\xbf\xbd@x.test\ncaf\xc3\xa9@x.test\n\xff\n", "file is not UTF-8 text", id="stray-byte"),
    pytest.param("email\nok@x.test\na\u200bb@x.test\n".encode(), "line 2: email is invalid", id="zero-width-space"),
])
async def test_dashboard_import_refuses_non_utf8_and_unsafe(api: ApiEnv, session: tuple[httpx.AsyncClient, str],
                                                            domain_id: int, data: bytes, error: str) -> None:
    client, token = session
    r = await client.post("/dashboard/suppressions/import", data={"csrf": token, "domain_id": str(domain_id)},
                          files={"file": ("s.csv", data, "text/csv")})
    assert r.status_code == 422 and _error(r.text) == error
    assert await _count(api, "suppressions") == 0


async def test_dashboard_import_and_add_internationalised(api: ApiEnv, session: tuple[httpx.AsyncClient, str],
                                                          domain_id: int) -> None:
    client, token = session
    data = "\ufeffemail\nJ\u00fcrgen@B\u00fccher.example\n\u7528\u6237@\u4f8b\u5b50.test\n".encode()  # with a BOM
    r = await client.post("/dashboard/suppressions/import", data={"csrf": token, "domain_id": str(domain_id)},
                          files={"file": ("s.csv", data, "text/csv")}, follow_redirects=True)
    assert r.status_code == 200 and "Imported 2 addresses." in r.text
    r = await client.post("/dashboard/suppressions", data={"csrf": token, "domain_id": str(domain_id),
                                                            "email": "\u00e9mile@x.test"}, follow_redirects=True)
    assert r.status_code == 200, r.text
    stored = sorted(x["email"] for x in await api.pool.fetch("SELECT email FROM suppressions"))
    assert stored == sorted([f"j\u00fcrgen@{ACE}", "\u7528\u6237@xn--fsqu00a.test", "\u00e9mile@x.test"])
    found = await client.get("/dashboard/suppressions", params={"email": "J\u00dcRGEN@b\u00fccher.example"})
    assert f"j\u00fcrgen@{ACE}" in found.text and "\u00e9mile@x.test" not in found.text
