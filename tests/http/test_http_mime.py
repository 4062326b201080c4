"""http/mime.py writes mails without attachments directly (`_text_tree`), not through the `email`
generator: the bytes must be exactly the generator's, for every kind of text the JSON can carry."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest

from mailtrap_smtp.http import mime
from mailtrap_smtp.http.models import Mail

TEXTS = [
    pytest.param("hello", id="short"),
    pytest.param("hello\nworld\n", id="lf"),
    pytest.param("a\r\nb\rc\nd\r\n\r\n", id="mixed-line-ends"),
    pytest.param("\n", id="newline-only"),
    pytest.param(" ", id="space"),
    pytest.param("x" * 998, id="line-of-998"),
    pytest.param("x" * 999, id="line-of-999-base64"),
    pytest.param(("word " * 300).strip(), id="long-line-base64"),
    pytest.param("caf\u00e9 \u2603\n\U0001f600", id="non-ascii"),
    pytest.param("a\x0cb\x1ec\x0bd" + "y" * 1200, id="ascii-control-breaks"),
    pytest.param("From me\n.dot\n--=_not-a-boundary\n", id="from-dot-dashes"),
    pytest.param("tab\there\x00nul", id="tab-nul"),
    pytest.param("\u2028sep\x85nel", id="unicode-line-separators"),
]


def _mail(**fields: Any) -> Mail:
    return Mail.model_validate({"from": {"email": "a@example.com"}, "to": [{"email": "b@example.org"}], **fields})


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("shape", ["text", "html", "both"])
def test_direct_tree_is_the_generators(monkeypatch: pytest.MonkeyPatch, text: str, shape: str) -> None:
    monkeypatch.setattr(mime, "_boundary", lambda: "=_0123456789abcdef0123456789abcdef")
    fields = {"text": text} if shape == "text" else {"html": text} if shape == "html" else {
        "text": text, "html": "<p>" + text + "</p>"}
    mail = _mail(**fields)
    generated = mime._tree(mail).as_bytes(policy=mime._POLICY)
    assert mime._text_tree(mail) == generated
    assert mime._serialised_tree(mail) == generated


def test_built_mail_parses_back() -> None:
    raw = mime.build(_mail(subject="S", text="plain \u00e9", html="<b>html</b>"))
    m = email.message_from_bytes(raw, policy=email.policy.default)
    plain, html = m.get_body(("plain",)), m.get_body(("html",))
    assert plain is not None and html is not None
    assert (m["Subject"], plain.get_content(), html.get_content().strip()) == ("S", "plain \u00e9", "<b>html</b>")
    assert m.get_content_type() == "multipart/alternative"


def test_attachments_still_go_through_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mime, "_text_tree", lambda mail: pytest.fail("direct writer used with attachments"))
    raw = mime.build(_mail(text="t", attachments=[{"content": "aGk=", "filename": "a.txt"}]))
    assert b"multipart/mixed" in raw
