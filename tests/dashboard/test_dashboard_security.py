"""The dashboard's security properties over real HTTPS with httpx (issue 15): no page without login,
login only with an admin token of the whole account, the session cookie's attributes, a session
opened by another process, a revoked token ending its sessions, CSRF refused on every form with
nothing done, every route refusing another account's ids with 404, and the headers of every page
(a CSP with no inline script, and no inline script or style in any page)."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from mailtrap_smtp import dnsresolve
from mailtrap_smtp.app import http_service
from mailtrap_smtp.core import credentials, sandbox, suppressions, webhooks
from mailtrap_smtp.core.templates import Templates
from mailtrap_smtp.http.dashboard.web import CSP
from mailtrap_smtp.signing import KeyStore
from mailtrap_smtp.store import domains as domains_store
from tests.dashboard_util import csrf, csrf_of, login
from tests.http_util import ApiEnv, minimal
from tests.smtp_util import create_account

# An id no account has; fixed, so that every pytest-xdist worker collects the same test ids.
UNKNOWN = uuid.UUID("0b5e7c1a-3f52-4d8e-9a61-2c4f8e7d9b10")

PAGES = ["/dashboard/", "/dashboard/domains", "/dashboard/domains/1", "/dashboard/logs",
         f"/dashboard/logs/{UNKNOWN}", f"/dashboard/logs/{UNKNOWN}/raw", "/dashboard/suppressions",
         "/dashboard/webhooks", "/dashboard/webhooks/1", "/dashboard/tokens", "/dashboard/templates",
         "/dashboard/templates/1", "/dashboard/inboxes", "/dashboard/inboxes/1",
         f"/dashboard/inboxes/1/messages/{UNKNOWN}"]
FORMS = ["/dashboard/logout", "/dashboard/domains", "/dashboard/domains/1/verify", "/dashboard/suppressions",
         "/dashboard/suppressions/import", f"/dashboard/suppressions/{UNKNOWN}/delete", "/dashboard/webhooks",
         "/dashboard/webhooks/1/active", "/dashboard/webhooks/1/test", "/dashboard/tokens",
         "/dashboard/tokens/x/revoke", "/dashboard/templates", "/dashboard/templates/1", "/dashboard/inboxes"]


@pytest.fixture
async def admin(api: ApiEnv) -> str:
    return await api.new_token(level="admin", streams=("transactional", "bulk"))


async def _counts(api: ApiEnv) -> dict[str, int]:
    tables = ("sending_domains", "suppressions", "webhooks", "credentials", "email_templates", "sandbox_inboxes")
    async with api.pool.acquire() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


@pytest.mark.parametrize("path", PAGES)
async def test_no_page_without_login(api: ApiEnv, path: str) -> None:
    async with api.client() as c:
        r = await c.get(path)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
    assert r.headers["content-security-policy"] == CSP


@pytest.mark.parametrize("path", FORMS)
async def test_no_form_without_login(api: ApiEnv, path: str) -> None:
    before = await _counts(api)
    async with api.client() as c:
        r = await c.post(path, data={"csrf": "0" * 64, "domain_name": "x.test", "email": "a@b.test"})
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
    assert await _counts(api) == before


async def test_login_sets_a_strict_session_cookie(api: ApiEnv, admin: str) -> None:
    async with api.client() as c:
        page = await c.get("/dashboard/login")
        r = await c.post("/dashboard/login", data={"csrf": csrf_of(page.text), "token": admin})
    assert r.status_code == 303
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("mts_dash="))
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/dashboard"} <= attrs
    assert admin not in cookie  # sealed, not readable


@pytest.mark.parametrize("kind", ["unknown", "wrong secret", "send level", "read level", "admin of one domain", ""])
async def test_login_refused(api: ApiEnv, kind: str) -> None:
    domain_id = int((await domains_store.get_by_name(api.pool, "example.com"))["id"])
    token = {"unknown": "mts_00000000_" + "a" * 32, "": "",
             "wrong secret": api.token[:-4] + "zzzz",
             "send level": api.token,
             "read level": await api.new_token(level="read"),
             "admin of one domain": await api.new_token(level="admin", domain_ids=[domain_id])}[kind]
    async with api.client() as c:
        page = await c.get("/dashboard/login")
        r = await c.post("/dashboard/login", data={"csrf": csrf_of(page.text), "token": token})
        assert r.status_code == 401
        assert "not an admin token" in r.text
        assert "mts_dash" not in c.cookies
        assert (await c.get("/dashboard/")).status_code == 303


@pytest.mark.parametrize("given", [None, "", "0" * 64, "other"])
async def test_login_csrf_refused(api: ApiEnv, admin: str, given: str | None) -> None:
    async with api.client() as c:
        page = await c.get("/dashboard/login")
        token = {None: None, "other": csrf_of((await c.get("/dashboard/login")).text)}.get(given, given)
        # "other": a token of another login form than the one whose cookie the client now holds
        if given == "other":
            c.cookies.set("mts_dash_login", "forged", domain="127.0.0.1", path="/dashboard")
        data = {"token": admin} | ({} if token is None else {"csrf": token})
        r = await c.post("/dashboard/login", data=data)
        assert page.status_code == 200
        assert r.status_code == 403 and "mts_dash" not in c.cookies


async def test_session_opens_in_another_process_and_ends_with_revocation(api: ApiEnv, admin: str) -> None:
    client = await login(api, admin)
    cfg = api.cfg
    other = http_service(cfg, api.pool, signer=KeyStore(api.pool, api.service.context.kek),
                         kek=api.service.context.kek, resolver=dnsresolve.make_resolver(["127.0.0.1"], 1.0),
                         port_override=0)
    await other.start()
    try:
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{other.ports[0]}", verify=api.ssl_context,
                                     cookies=client.cookies) as c2:
            assert (await c2.get("/dashboard/tokens")).status_code == 200
            async with api.pool.acquire() as conn:
                await credentials.revoke(conn, admin, api.account.id)
            assert (await c2.get("/dashboard/tokens")).status_code == 303
        assert (await client.get("/dashboard/")).status_code == 303
    finally:
        await client.aclose()
        await other.stop(1.0)


@pytest.mark.parametrize("cookie", ["", "garbage", "A" * 2000, "mts_00000000_" + "a" * 32])
async def test_forged_session_cookie(api: ApiEnv, cookie: str) -> None:
    async with api.client(cookies={"mts_dash": cookie}) as c:
        r = await c.get("/dashboard/tokens")
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")


async def test_tampered_session_cookie(api: ApiEnv, admin: str) -> None:
    client = await login(api, admin)
    value = client.cookies["mts_dash"]
    flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    async with api.client(cookies={"mts_dash": flipped}) as c:
        assert (await c.get("/dashboard/")).status_code == 303
    await client.aclose()


FORM_BODIES: list[tuple[str, dict[str, str]]] = [
    ("/dashboard/domains", {"domain_name": "csrf.test"}),
    ("/dashboard/domains/{domain}/verify", {}),
    ("/dashboard/suppressions", {"email": "x@y.test", "domain_id": "{domain}"}),
    ("/dashboard/suppressions/import", {"domain_id": "{domain}"}),
    ("/dashboard/webhooks", {"url": "https://127.0.0.1/h"}),
    ("/dashboard/webhooks/{webhook}/test", {}),
    ("/dashboard/webhooks/{webhook}/active", {"active": "false"}),
    ("/dashboard/tokens", {"streams": "transactional", "level": "admin"}),
    ("/dashboard/tokens/{token}/revoke", {}),
    ("/dashboard/templates", {"name": "n", "subject": "s", "category": "c"}),
    ("/dashboard/inboxes", {"name": "x"}),
    ("/dashboard/logout", {}),
]


@pytest.mark.parametrize("csrf_value", [None, "", "f" * 64])
@pytest.mark.parametrize(("path", "body"), FORM_BODIES)
async def test_csrf_refused_nothing_done(api: ApiEnv, admin: str, path: str, body: dict[str, str],
                                         csrf_value: str | None) -> None:
    domain = str((await domains_store.get_by_name(api.pool, "example.com"))["id"])
    token_id = admin.split("_")[1]
    async with api.pool.acquire() as conn:
        hook = await webhooks.create(conn, api.account.id, webhooks.WebhookSpec(url="https://127.0.0.1/h"),
                                     allow_private=True)
    client = await login(api, admin)
    before = await _counts(api)
    data = {k: v.format(domain=domain) for k, v in body.items()}
    if csrf_value is not None:
        data["csrf"] = csrf_value
    files = {"file": ("a.csv", b"a@b.test\n", "text/csv")} if path.endswith("import") else None
    r = await client.post(path.format(domain=domain, token=token_id, webhook=hook.webhook["id"]), data=data,
                          files=files)
    assert r.status_code == 403 and "Refused" in r.text
    assert await _counts(api) == before
    async with api.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM credentials WHERE revoked_at IS NOT NULL") == 0
        assert await conn.fetchval("SELECT last_checked_at FROM sending_domains WHERE id = $1", int(domain)) is None
        assert await conn.fetchval("SELECT count(*) FROM webhook_attempts") == 0
        assert await conn.fetchval("SELECT active FROM webhooks") is True
    assert (await client.get("/dashboard/")).status_code == 200  # still logged in (no logout happened)
    await client.aclose()


@pytest.fixture
async def other(api: ApiEnv) -> dict[str, str]:
    """Another account's domain, suppression, webhook, token, template and logged message ids."""
    b = await create_account(api.pool, "other", domain="other.test")
    domain_id = int((await domains_store.get_by_name(api.pool, "other.test"))["id"])
    async with api.pool.acquire() as conn:
        supp = await suppressions.add_one(conn, b.id, suppressions.Entry("s@x.test", domain_id))
        hook = await webhooks.create(conn, b.id, webhooks.WebhookSpec(url="https://127.0.0.1/h"), allow_private=True)
        token = await credentials.issue_for(conn, b.id, streams=["transactional"])
        inbox = await sandbox.create_inbox(conn, b.id, "theirs")
    template = await Templates(api.pool).create(b.id, {"name": "t", "subject": "s", "category": "c"})
    async with api.client() as c:
        sent = await c.post("/api/send", json=minimal(**{"from": {"email": "app@other.test"}}),
                            headers=api.auth(b.token))
        kept = await c.post(f"/api/send/{inbox.id}", json=minimal(html="<p>x</p>"), headers=api.auth(b.token))
    assert sent.status_code == kept.status_code == 200, (sent.text, kept.text)
    mine = await sandbox.create_inbox(api.pool, api.account.id, "mine")
    return {"domain": str(domain_id), "suppression": supp["id"], "webhook": str(hook.webhook["id"]),
            "token": token.token_id, "template": str(template.id), "message": sent.json()["message_ids"][0],
            "inbox": str(inbox.id), "kept": kept.json()["message_ids"][0], "mine": str(mine.id)}


CROSS = [
    ("GET", "/dashboard/domains/{domain}"), ("POST", "/dashboard/domains/{domain}/verify"),
    ("GET", "/dashboard/logs/{message}"), ("GET", "/dashboard/logs/{message}/raw"),
    ("GET", "/dashboard/logs/{message}/html"), ("POST", "/dashboard/suppressions/{suppression}/delete"),
    ("GET", "/dashboard/webhooks/{webhook}"), ("POST", "/dashboard/webhooks/{webhook}/active"),
    ("POST", "/dashboard/webhooks/{webhook}/test"),
    ("POST", "/dashboard/tokens/{token}/revoke"), ("GET", "/dashboard/templates/{template}"),
    ("POST", "/dashboard/templates/{template}"), ("GET", "/dashboard/inboxes/{inbox}"),
    ("GET", "/dashboard/inboxes/{inbox}/messages/{kept}"), ("GET", "/dashboard/inboxes/{mine}/messages/{kept}"),
    ("GET", "/dashboard/inboxes/{mine}/messages/{kept}/html"), ("GET", "/dashboard/inboxes/{mine}/messages/{kept}/raw"),
]


@pytest.mark.parametrize(("method", "path"), CROSS)
async def test_another_accounts_ids_are_not_found(api: ApiEnv, admin: str, other: dict[str, str],
                                                  method: str, path: str) -> None:
    client = await login(api, admin)
    before = await _counts(api)
    async with api.pool.acquire() as conn:
        state_before = await conn.fetch("SELECT id, active FROM webhooks ORDER BY id")
    data = {"csrf": await csrf(client), "active": "false", "name": "stolen", "subject": "s", "category": "c"}
    r = await (client.get(path.format(**other)) if method == "GET" else client.post(path.format(**other), data=data))
    assert r.status_code == 404 and "no such page in this account" in r.text
    assert await _counts(api) == before
    async with api.pool.acquire() as conn:
        assert await conn.fetch("SELECT id, active FROM webhooks ORDER BY id") == state_before
        assert await conn.fetchval("SELECT count(*) FROM credentials WHERE revoked_at IS NOT NULL") == 0
        assert await conn.fetchval("SELECT count(*) FROM email_templates WHERE name = 'stolen'") == 0
        assert await conn.fetchval("SELECT count(*) FROM sending_domains WHERE last_checked_at IS NOT NULL") == 0
        assert await conn.fetchval("SELECT count(*) FROM webhook_attempts") == 0
    await client.aclose()


async def test_lists_show_only_the_own_account(api: ApiEnv, admin: str, other: dict[str, str]) -> None:
    client = await login(api, admin)
    for path in ("/dashboard/domains", "/dashboard/logs", "/dashboard/suppressions", "/dashboard/webhooks",
                 "/dashboard/tokens", "/dashboard/templates", "/dashboard/inboxes"):
        r = await client.get(path)
        assert r.status_code == 200
        assert "other.test" not in r.text and other["token"] not in r.text and other["message"] not in r.text
        assert "theirs" not in r.text
    await client.aclose()


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER_OR_STYLE = re.compile(r"<[^>]+\s(on[a-z]+|style)\s*=", re.I)


@pytest.mark.parametrize("path", ["/dashboard/login", *[p for p in PAGES if "logs/" not in p]])
async def test_headers_and_no_inline_script(api: ApiEnv, admin: str, path: str) -> None:
    client = await login(api, admin)
    r = await client.get(path.replace("/1", "/" + str((await domains_store.get_by_name(
        api.pool, "example.com"))["id"])) if "domains/1" in path else path)
    await client.aclose()
    assert r.status_code in (200, 404)
    assert r.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"].startswith("text/html")
    assert not INLINE_SCRIPT.search(r.text) and not INLINE_HANDLER_OR_STYLE.search(r.text)


async def test_static_files_served_locally(api: ApiEnv) -> None:
    async with api.client() as c:
        for name in ("dashboard.css", "dashboard.js", "htmx.min.js"):
            r = await c.get(f"/dashboard/static/{name}")
            assert r.status_code == 200 and len(r.content) > 100
            assert r.headers["x-content-type-options"] == "nosniff"


async def test_other_paths_keep_the_api_shapes(api: ApiEnv, admin: str) -> None:
    client = await login(api, admin)
    r = await client.get("/api/domains")  # the cookie is no API credential
    assert (r.status_code, r.json()) == (401, {"error": "Incorrect API token"})
    await client.aclose()


async def test_unknown_dashboard_path(api: ApiEnv, admin: str) -> None:
    client = await login(api, admin)
    r = await client.get("/dashboard/nowhere")
    await client.aclose()
    assert r.status_code == 404 and r.headers["content-security-policy"] == CSP




async def test_a_link_cannot_put_words_on_a_page(api: ApiEnv, admin: str) -> None:
    client = await login(api, admin)
    r = await client.get("/dashboard/", params={"flash": "Your token expired: log in at evil.test",
                                                "warn": "Your token expired", "error": "x"})
    await client.aclose()
    assert r.status_code == 200 and "expired" not in r.text and 'class="error"' not in r.text


async def test_login_attempts_braked_per_address(api: ApiEnv, admin: str) -> None:
    from mailtrap_smtp.http.dashboard.login import LOGIN_ATTEMPTS

    async with api.client() as c:
        for _ in range(LOGIN_ATTEMPTS):
            page = await c.get("/dashboard/login")
            r = await c.post("/dashboard/login", data={"csrf": csrf_of(page.text), "token": "guess number n"})
            assert r.status_code == 401
        page = await c.get("/dashboard/login")
        r = await c.post("/dashboard/login", data={"csrf": csrf_of(page.text), "token": admin})
        assert r.status_code == 429 and "Too many login attempts from this address" in r.text
        assert 0 < int(r.headers["retry-after"]) <= 60
        assert "mts_dash" not in c.cookies and (await c.get("/dashboard/")).status_code == 303
