"""POST /api/batch: base merged into each request (§2.7), each accepted or refused on its own, one
response per request in order, 200 even when some fail; whole-batch refusals store nothing."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest

from tests.http_util import SENDER, ApiEnv


async def test_batch_merges_base_and_answers_each_in_order(api: ApiEnv) -> None:  # §9 item 13
    body = {
        "base": {"from": {"email": SENDER}, "subject": "S", "text": "T", "category": "cat",
                 "headers": {"X-Base": "1"}},
        "requests": [
            {"to": [{"email": "a@x.test"}]},
            {"to": [{"email": "b@x.test"}], "subject": "override", "headers": {"X-Own": "2"}},
            {"to": [{"email": "c@x.test"}], "from": {"email": "x@elsewhere.test"}},
            {"to": [{"email": "bad address"}]},
            {"to": [{"email": "d@x.test"}, {"email": "e@x.test"}], "cc": [{"email": "f@x.test"}]},
        ],
    }
    async with api.client() as c:
        r = await c.post("/api/batch", json=body, headers=api.auth())
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["success"] is True
    res = data["responses"]
    assert [x["success"] for x in res] == [True, True, False, False, True]
    assert res[2] == {"success": False, "errors": ["Unauthorized"]}
    assert res[3] == {"success": False, "errors": ["'to' address is invalid"]}
    assert [len(x["message_ids"]) for x in (res[0], res[1], res[4])] == [1, 1, 3]
    assert await api.counts() == {"messages": 3, "recipients": 5, "used": 5}
    first = email.message_from_bytes(await api.raw_of(res[0]["message_ids"][0]), policy=email.policy.default)
    second = email.message_from_bytes(await api.raw_of(res[1]["message_ids"][0]), policy=email.policy.default)
    assert (first["Subject"], first["X-Base"]) == ("S", "1")
    # Request fields replace base fields wholesale: no deep merge of headers.
    assert (second["Subject"], second["X-Base"], second["X-Own"]) == ("override", None, "2")


async def test_batch_quota_refuses_only_what_does_not_fit(api_factory: Any) -> None:
    env = await api_factory(account={"monthly_limit": 3})
    body = {"base": {"from": {"email": SENDER}, "subject": "S", "text": "T"},
            "requests": [{"to": [{"email": "a@x.test"}, {"email": "b@x.test"}]},
                         {"to": [{"email": "c@x.test"}, {"email": "d@x.test"}]},
                         {"to": [{"email": "e@x.test"}]}]}
    async with env.client() as c:
        r = await c.post("/api/batch", json=body, headers=env.auth())
    res = r.json()["responses"]
    assert [x["success"] for x in res] == [True, False, True]
    assert res[1] == {"success": False, "errors": ["Monthly messages limit reached"]}
    assert await env.counts() == {"messages": 2, "recipients": 3, "used": 3}


@pytest.mark.parametrize(("body", "errors"), [
    ({"base": {"from": {"email": SENDER}}, "requests": []}, ["empty field: 'requests'"]),  # §9 item 14
    ({"base": {"from": {"email": SENDER}}}, ["empty field: 'requests'"]),
    ({"requests": [{"to": [{"email": "a@x.test"}]}] * 501}, ["'requests' must have at most 500 items"]),
    ({"requests": "nope"}, ["'requests' is invalid"]),
])
async def test_whole_batch_refusals(api: ApiEnv, body: dict[str, Any], errors: list[str]) -> None:
    async with api.client() as c:
        r = await c.post("/api/batch", json=body, headers=api.auth())
    assert (r.status_code, r.json()) == (400, {"success": False, "errors": errors})
    await api.assert_nothing_stored()


async def test_batch_needs_a_token(api: ApiEnv) -> None:
    async with api.client() as c:
        r = await c.post("/api/batch", json={"requests": [{"to": [{"email": "a@x.test"}]}]})
    assert (r.status_code, r.json()) == (401, {"success": False, "errors": ["Unauthorized"]})
    await api.assert_nothing_stored()


async def test_batch_requests_keep_their_own_content(api: ApiEnv) -> None:
    """The MIME tree is built once per distinct content of a batch (http/mime.BodyCache): a request
    that overrides text, html or attachments gets its own, the others the base's, and an invalid
    attachment is refused for its request only."""
    att = {"content": "aGVsbG8=", "filename": "a.txt", "type": "text/plain"}
    body = {
        "base": {"from": {"email": SENDER}, "subject": "S", "text": "base text", "html": "<p>base</p>",
                 "attachments": [att]},
        "requests": [
            {"to": [{"email": "a@x.test"}]},
            {"to": [{"email": "b@x.test"}], "text": "own text"},
            {"to": [{"email": "c@x.test"}], "attachments": [{**att, "content": "b3du"}]},
            {"to": [{"email": "d@x.test"}], "attachments": [{**att, "content": "not base64!"}]},
            {"to": [{"email": "e@x.test"}], "html": "<p>own</p>"},
            {"to": [{"email": "f@x.test"}]},
        ],
    }
    async with api.client() as c:
        r = await c.post("/api/batch", json=body, headers=api.auth())
    res = r.json()["responses"]
    assert [x["success"] for x in res] == [True, True, True, False, True, True]
    assert res[3] == {"success": False, "errors": ["attachment 'a.txt' content is not valid base64"]}
    assert await api.counts() == {"messages": 5, "recipients": 5, "used": 5}

    async def content(item: dict[str, Any]) -> tuple[str, str, bytes, str]:
        m = email.message_from_bytes(await api.raw_of(item["message_ids"][0]), policy=email.policy.default)
        plain, html = m.get_body(("plain",)), m.get_body(("html",))
        assert plain is not None and html is not None
        (part,) = list(m.iter_attachments())
        return plain.get_content().strip(), html.get_content().strip(), part.get_payload(decode=True), m["To"]

    assert await content(res[0]) == ("base text", "<p>base</p>", b"hello", "a@x.test")
    assert await content(res[1]) == ("own text", "<p>base</p>", b"hello", "b@x.test")
    assert await content(res[2]) == ("base text", "<p>base</p>", b"own", "c@x.test")
    assert await content(res[4]) == ("base text", "<p>own</p>", b"hello", "e@x.test")
    assert await content(res[5]) == ("base text", "<p>base</p>", b"hello", "f@x.test")
