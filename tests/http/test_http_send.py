"""POST /api/send over real TLS against the real database: success shapes, per-recipient ids, the
MIME built from the JSON, and every refusal with its exact status and body, storing nothing."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import uuid
from typing import Any

import pytest

from tests.http_util import SENDER, ApiEnv, minimal


async def test_minimal_send_returns_one_id_per_recipient(api: ApiEnv) -> None:  # §9 item 1
    async with api.client() as c:
        r = await c.post("/api/send", json=minimal(), headers=api.auth())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert body["success"] is True and len(body["message_ids"]) == 1
    uuid.UUID(body["message_ids"][0])
    assert await api.counts() == {"messages": 1, "recipients": 1, "used": 1}
    assert r.headers["X-RateLimit-Limit"] == "150"
    assert r.headers["X-RateLimit-Remaining"] == "149"
    assert int(r.headers["X-RateLimit-Reset"]) >= 1
    assert r.headers["X-Quota-Remaining"] == "999"


async def test_api_token_header_is_accepted(api: ApiEnv) -> None:  # §9 item 2
    async with api.client() as c:
        r = await c.post("/api/send", json=minimal(), headers={"Api-Token": api.token})
    assert r.status_code == 200, r.text
    assert len(r.json()["message_ids"]) == 1


async def test_ids_follow_to_cc_bcc_order(api: ApiEnv) -> None:  # §9 item 3
    body = minimal(to=[{"email": "t1@x.test"}, {"email": "t2@x.test"}], cc=[{"email": "c@x.test"}],
                   bcc=[{"email": "b@x.test"}])
    async with api.client() as c:
        r = await c.post("/api/send", json=body, headers=api.auth())
    ids = r.json()["message_ids"]
    assert len(ids) == 4 and len(set(ids)) == 4
    async with api.pool.acquire() as conn:
        rows = await conn.fetch("SELECT public_id::text AS id, rcpt FROM recipients")
    by_id = {row["id"]: row["rcpt"] for row in rows}
    assert [by_id[i] for i in ids] == ["t1@x.test", "t2@x.test", "c@x.test", "b@x.test"]
    assert await api.counts() == {"messages": 1, "recipients": 4, "used": 4}
    msg = email.message_from_bytes(await api.raw_of(ids[0]), policy=email.policy.default)
    assert msg["To"] == "t1@x.test, t2@x.test" and msg["Cc"] == "c@x.test" and msg["Bcc"] is None


async def test_full_mail_becomes_the_expected_mime(api: ApiEnv) -> None:  # §9 items 11, 12
    body = {
        "to": [{"email": "to@x.test", "name": "To Person"}],
        "from": {"email": SENDER, "name": "Sender"},
        "reply_to": {"email": "reply@x.test"},
        "attachments": [
            {"content": base64.b64encode(b"inline bytes").decode(), "filename": "logo.png",
             "disposition": "inline", "type": "image/png", "content_id": "cid1"},
            {"content": base64.b64encode(b"hello").decode(), "filename": "a.txt", "type": "text/plain"},
        ],
        "headers": {"X-Message-Source": "dev.mydomain.com", "X-Spaced": "a  b\tc"},
        "custom_variables": {"user_id": "45982", "batch_id": "PSJ-12"},
        "subject": "Hi ünïcode", "text": "plain body", "html": "<p>html <img src=\"cid:cid1\"></p>",
        "category": "Integration Test",
    }
    async with api.client() as c:
        r = await c.post("/api/send", json=body, headers=api.auth())
    assert r.status_code == 200, r.text
    (mid,) = r.json()["message_ids"]
    raw = await api.raw_of(mid)
    assert b"\r\nX-Message-Source: dev.mydomain.com\r\n" in raw
    assert b"\r\nX-Spaced: a  b\tc\r\n" in raw
    assert b"X-MT-" not in raw  # read and stripped by submission, as over SMTP
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Hi ünïcode"
    assert msg["Reply-To"] == "reply@x.test"
    assert msg.get_content_type() == "multipart/mixed"
    assert msg.get_body(("plain",)).get_content().strip() == "plain body"
    html = msg.get_body(("html",))
    assert "cid:cid1" in html.get_content()
    parts = {p.get_filename(): p for p in msg.walk() if p.get_filename()}
    assert parts["logo.png"]["Content-ID"] == "<cid1>"
    assert parts["logo.png"].get_content_disposition() == "inline"
    assert parts["logo.png"].get_content() == b"inline bytes"
    assert parts["a.txt"].get_content_disposition() == "attachment"
    assert parts["a.txt"].get_content().strip() == "hello"
    async with api.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT category, custom_variables::text AS cv, subject FROM messages")
    assert row["category"] == "Integration Test"
    assert row["cv"] == '{"user_id": "45982", "batch_id": "PSJ-12"}'


@pytest.mark.parametrize(("kind", "expect"), [
    ("text", "text/plain"), ("html", "text/html"), ("both", "multipart/alternative"),
])
async def test_body_kinds(api: ApiEnv, kind: str, expect: str) -> None:
    fields: dict[str, Any] = {"text": {"text": "t"}, "html": {"html": "<b>h</b>"},
                              "both": {"text": "t", "html": "<b>h</b>"}}[kind]
    body = minimal(**fields)
    if kind == "html":
        del body["text"]
    async with api.client() as c:
        r = await c.post("/api/send", json=body, headers=api.auth())
    (mid,) = r.json()["message_ids"]
    msg = email.message_from_bytes(await api.raw_of(mid), policy=email.policy.default)
    assert msg.get_content_type() == expect


_BAD_BODIES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no subject and no body", {"from": {"email": SENDER}, "to": [{"email": "r@x.test"}]},
     ["'subject' is required", "must specify either text or html body"]),  # §9 item 4
    ("no from", {"to": [{"email": "r@x.test"}], "subject": "s", "text": "t"}, ["'from' is required"]),  # item 5
    ("no recipients", {"from": {"email": SENDER}, "subject": "s", "text": "t"},
     ["'to', 'cc' or 'bcc' address is required"]),  # item 5
    ("empty object", {}, ["'from' is required", "'to', 'cc' or 'bcc' address is required", "'subject' is required",
                          "must specify either text or html body"]),
    ("bad from", minimal(**{"from": {"email": "not-an-address"}}), ["'from' address is invalid"]),
    ("bad to", minimal(to=[{"email": "a b@x.test"}]), ["'to' address is invalid"]),
    ("bad cc", minimal(cc=[{"email": "x"}]), ["'cc' address is invalid"]),
    ("bad bcc", minimal(bcc=[{"email": "<x@y>"}]), ["'bcc' address is invalid"]),
    ("crlf in name", minimal(to=[{"email": "r@x.test", "name": "a\r\nBcc: evil@x.test"}]),
     ["'to' address is invalid"]),
    ("bad reply_to", minimal(reply_to={"email": "nope"}), ["'reply_to' address is invalid"]),
    ("too many to", minimal(to=[{"email": f"r{i}@x.test"} for i in range(1001)]),
     ["'to' must have at most 1000 addresses"]),
    ("long category", minimal(category="c" * 256), ["'category' is too long (maximum is 255 characters)"]),
    ("empty subject", minimal(subject=""), ["'subject' is required"]),
    ("empty text", {**minimal(text=""), "html": ""}, ["must specify either text or html body"]),
    ("crlf in subject", minimal(subject="a\r\nBcc: x@y.z"), ["'subject' is invalid"]),
    ("bad base64", minimal(attachments=[{"content": "!!!", "filename": "a.txt"}]),
     ["attachment 'a.txt' content is not valid base64"]),  # item 11
    ("attachment without filename", minimal(attachments=[{"content": "aGk="}]),
     ["attachment 'filename' is required"]),
    ("attachment without content", minimal(attachments=[{"filename": "a.txt"}]),
     ["attachment 'content' is required"]),
    ("bad disposition", minimal(attachments=[{"content": "aGk=", "filename": "a", "disposition": "x"}]),
     ["attachment 'disposition' must be 'attachment' or 'inline'"]),
    ("bad type", minimal(attachments=[{"content": "aGk=", "filename": "a", "type": "text"}]),
     ["attachment 'type' is invalid"]),
    ("header injection", minimal(headers={"X-A": "v\r\nBcc: evil@x.test"}), ["header 'X-A' is invalid"]),
    ("bad header name", minimal(headers={"X A": "v"}), ["header 'X A' is invalid"]),
    ("reserved header", minimal(headers={"From": "other@evil.test"}),
     ["header 'From' is not allowed: it is set from the mail's fields"]),
    ("unsplittable header", minimal(headers={"X-Long": "x" * 1200}), ["header 'X-Long' is too long"]),
    ("template with subject", minimal(template_uuid="813e39db-0000-0000-0000-000000000000"),
     ["'subject', 'text', 'html' and 'category' are not allowed with 'template_uuid'"]),
    ("wrong JSON type", minimal(to="r@x.test"), ["'to' is invalid"]),
    ("wrong nested type", minimal(to=[{"email": 5}]), ["'to[0].email' is invalid"]),
]


@pytest.mark.parametrize(("body", "errors"), [pytest.param(b, e, id=name) for name, b, e in _BAD_BODIES])
async def test_invalid_bodies_get_400_with_every_message(api: ApiEnv, body: dict[str, Any], errors: list[str]) -> None:
    async with api.client() as c:
        r = await c.post("/api/send", json=body, headers=api.auth())
    assert r.status_code == 400
    assert r.json() == {"success": False, "errors": errors}
    await api.assert_nothing_stored()


# JSON can spell a lone surrogate as an escape; it is no character and cannot become UTF-8 in the
# message. Sent as raw JSON text: a client library would refuse to encode it.
_LONE = "\\udc80"


@pytest.mark.parametrize(("field", "errors"), [
    pytest.param(f'"subject": "a{_LONE}b"', ["'subject' is invalid"], id="subject"),
    pytest.param(f'"text": "a{_LONE}b"', ["'text' is invalid"], id="text"),
    pytest.param(f'"html": "<p>{_LONE}</p>"', ["'html' is invalid"], id="html"),
    pytest.param(f'"category": "{_LONE}"', ["'category' is invalid"], id="category"),
    pytest.param(f'"headers": {{"X-A": "{_LONE}"}}', ["'headers' is invalid"], id="header value"),
    pytest.param(f'"custom_variables": {{"k": "{_LONE}"}}', ["'custom_variables' is invalid"], id="custom variable"),
    pytest.param(f'"reply_to": {{"email": "r@x.test", "name": "{_LONE}"}}', ["'reply_to.name' is invalid"],
                 id="display name"),
    pytest.param(f'"attachments": [{{"content": "aGk=", "filename": "{_LONE}.txt"}}]',
                 ["'attachments[0].filename' is invalid"], id="attachment filename"),
])
async def test_lone_surrogates_get_400_and_nothing_is_stored(api: ApiEnv, field: str, errors: list[str]) -> None:
    base = json.dumps({k: v for k, v in minimal().items() if k not in field.split(":")[0].strip('"')})
    body = base[:-1] + ", " + field + "}"
    async with api.client() as c:
        r = await c.post("/api/send", content=body.encode("ascii"),
                         headers={**api.auth(), "Content-Type": "application/json"})
    assert (r.status_code, r.json()) == (400, {"success": False, "errors": errors})
    await api.assert_nothing_stored()


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no token"),
    pytest.param({"Authorization": "Bearer mts_00000000_" + "a" * 32}, id="unknown token"),
    pytest.param({"Authorization": "Bearer garbage"}, id="malformed token"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic scheme"),
    pytest.param({"Api-Token": ""}, id="empty Api-Token"),
])
async def test_bad_tokens_get_401(api: ApiEnv, headers: dict[str, str]) -> None:  # §9 item 6
    async with api.client() as c:
        r = await c.post("/api/send", json=minimal(), headers=headers)
    assert r.status_code == 401
    assert r.json() == {"success": False, "errors": ["Unauthorized"]}
    await api.assert_nothing_stored()


async def test_wrong_secret_of_a_real_token_gets_401(api: ApiEnv) -> None:
    wrong = api.token[:-4] + ("AAAA" if not api.token.endswith("AAAA") else "BBBB")
    async with api.client() as c:
        r = await c.post("/api/send", json=minimal(), headers=api.auth(wrong))
    assert (r.status_code, r.json()) == (401, {"success": False, "errors": ["Unauthorized"]})
    await api.assert_nothing_stored()


async def test_foreign_domain_gets_401(api: ApiEnv) -> None:  # §9 item 7
    async with api.client() as c:
        r = await c.post("/api/send", json=minimal(**{"from": {"email": "a@elsewhere.test"}}), headers=api.auth())
    assert (r.status_code, r.json()) == (401, {"success": False, "errors": ["Unauthorized"]})
    await api.assert_nothing_stored()


async def test_owned_but_unverified_domain_gets_403(api: ApiEnv) -> None:  # §9 item 7
    from mailtrap_smtp.store import domains

    await domains.create(api.pool, api.account.id, "pending.test", verification_token="t")
    async with api.client() as c:
        r = await c.post("/api/send", json=minimal(**{"from": {"email": "a@pending.test"}}), headers=api.auth())
    assert (r.status_code, r.json()) == (403, {"success": False, "errors": ["Domain is not verified"]})
    await api.assert_nothing_stored()


async def test_over_the_account_size_limit_gets_413(api_factory: Any) -> None:  # §9 item 8
    env = await api_factory(account={"max_message_size": 20_000})
    body = minimal(attachments=[{"content": base64.b64encode(b"x" * 20_000).decode(), "filename": "big.bin"}])
    async with env.client() as c:
        r = await c.post("/api/send", json=body, headers=env.auth())
    assert r.status_code == 413
    assert r.json() == {"success": False, "errors": ["Message size exceeds fixed maximum message size"]}
    await env.assert_nothing_stored()


async def test_request_body_over_the_limit_gets_413(api_factory: Any) -> None:
    env = await api_factory(http={"max_request_bytes": 10_000})
    async with env.client() as c:
        r = await c.post("/api/send", json=minimal(text="x" * 20_000), headers=env.auth())
    assert r.status_code == 413
    assert r.json() == {"success": False, "errors": ["Request body too large"]}
    await env.assert_nothing_stored()


async def test_monthly_limit_reached_gets_403(api_factory: Any) -> None:
    env = await api_factory(account={"monthly_limit": 2})
    async with env.client() as c:
        r = await c.post("/api/send", json=minimal(to=[{"email": "a@x.test"}, {"email": "b@x.test"},
                                                       {"email": "c@x.test"}]), headers=env.auth())
        assert (r.status_code, r.json()) == (403, {"success": False, "errors": ["Monthly messages limit reached"]})
        await env.assert_nothing_stored()
        ok = await c.post("/api/send", json=minimal(to=[{"email": "a@x.test"}, {"email": "b@x.test"}]),
                          headers=env.auth())
        assert ok.status_code == 200
        # Now at the limit: refused at authentication, with the same text.
        r = await c.post("/api/send", json=minimal(), headers=env.auth())
    assert (r.status_code, r.json()) == (403, {"success": False, "errors": ["Monthly messages limit reached"]})
    assert await env.counts() == {"messages": 1, "recipients": 2, "used": 2}


@pytest.mark.parametrize(("content", "content_type", "status", "errors"), [
    (b'{"from": ', "application/json", 400, ["Invalid JSON in request body"]),
    (b"[1, 2]", "application/json", 400, ["Request body must be a JSON object"]),
    (b'"text"', "application/json", 400, ["Request body must be a JSON object"]),
    (b"from=a@b.c", "application/x-www-form-urlencoded", 415, ["Content-Type must be application/json"]),
    (b"{}", "text/plain", 415, ["Content-Type must be application/json"]),
    (b"", "application/json", 400, ["Request body must be a JSON object"]),
])
async def test_malformed_requests(api: ApiEnv, content: bytes, content_type: str, status: int,
                                  errors: list[str]) -> None:
    async with api.client() as c:
        r = await c.post("/api/send", content=content, headers={**api.auth(), "Content-Type": content_type})
    assert (r.status_code, r.json()) == (status, {"success": False, "errors": errors})
    await api.assert_nothing_stored()


@pytest.mark.parametrize(("method", "path", "status", "errors"), [
    ("GET", "/api/send", 405, ["Method Not Allowed"]),
    ("POST", "/api/nowhere", 404, ["Not Found"]),
    ("GET", "/", 404, ["Not Found"]),
])
async def test_unknown_paths_and_methods(api: ApiEnv, method: str, path: str, status: int, errors: list[str]) -> None:
    async with api.client() as c:
        r = await c.request(method, path, headers=api.auth())
    assert (r.status_code, r.json()) == (status, {"success": False, "errors": errors})


async def test_queue_show_finds_each_returned_id(api: ApiEnv, tmp_path: Any,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import json

    from mailtrap_smtp import cli

    body = minimal(to=[{"email": "t1@x.test"}], cc=[{"email": "c@x.test"}])
    async with api.client() as c:
        ids = (await c.post("/api/send", json=body, headers=api.auth())).json()["message_ids"]
    capsys.readouterr()
    for rid, rcpt in zip(ids, ["t1@x.test", "c@x.test"], strict=True):
        code = await asyncio.to_thread(cli.main, ["-c", str(tmp_path / "config.toml"), "queue", "show", rid, "--json"])
        data = json.loads(capsys.readouterr().out)
        assert code == 0
        assert {r["rcpt"]: str(r["public_id"]) for r in data["recipients"]}[rcpt] == rid


@pytest.mark.parametrize("raw", [
    b"POST /api/send HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\nContent-Length: 0\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"POST /api/send HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
])
async def test_unparseable_http_gets_a_json_400(api: ApiEnv, raw: bytes) -> None:
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", api.port, ssl=api.ssl_context,
                                                   server_hostname="localhost")
    writer.write(raw)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    import json

    assert json.loads(body) == {"success": False, "errors": ["Malformed HTTP request"]}
    await api.assert_nothing_stored()


@pytest.mark.parametrize(("ttl", "after_revoke"), [(0.0, 401), (60.0, 200)])
async def test_token_cache_bounds_revocation_delay(api_factory: Any, ttl: float, after_revoke: int) -> None:
    env = await api_factory(http={"token_cache_seconds": ttl})
    async with env.client() as c:
        assert (await c.post("/api/send", json=minimal(), headers=env.auth())).status_code == 200
        async with env.pool.acquire() as conn:
            await conn.execute("UPDATE credentials SET revoked_at = now() WHERE id = $1", env.account.credential_id)
        r = await c.post("/api/send", json=minimal(), headers=env.auth())
    # Within http.token_cache_seconds a revoked token still works (documented); with 0, never.
    assert r.status_code == after_revoke


async def test_requests_are_counted_by_route_and_status(api: ApiEnv) -> None:
    from mailtrap_smtp import metrics

    def count(route: str, status: str) -> float:
        return float(metrics.HTTP_REQUESTS.labels(route, "POST", status)._value.get())

    before = (count("/api/send", "200"), count("/api/send", "401"), count("unmatched", "404"))
    async with api.client() as c:
        await c.post("/api/send", json=minimal(), headers=api.auth())
        await c.post("/api/send", json=minimal())
        await c.post("/api/nowhere", json=minimal())
    after = (count("/api/send", "200"), count("/api/send", "401"), count("unmatched", "404"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    assert metrics.HTTP_LATENCY.labels("/api/send")._sum.get() > 0


async def test_openapi_is_generated_from_the_models(api: ApiEnv) -> None:
    async with api.client() as c:
        r = await c.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert {"/api/send", "/api/batch", "/api/send/{inbox_id}", "/api/domains",
            "/api/accounts/{account_id}/sending_domains",
            "/api/accounts/{account_id}/email_templates"} <= set(spec["paths"])
    assert "from" in spec["components"]["schemas"]["Mail"]["properties"]
