"""The reply table: one definition per reply, Mailtrap's documented texts byte for byte."""

from __future__ import annotations

import re

from mailtrap_smtp import replies
from mailtrap_smtp.replies import REPLIES


def test_mailtrap_documented_replies_exact() -> None:
    assert replies.QUOTA_EXCEEDED.line == "535 5.7.0 Monthly messages limit reached"
    assert replies.TOO_MANY_CONNECTIONS_ACCOUNT.line == "535 5.7.8 Too many connections per account"
    assert replies.SENDER_DOMAIN_NOT_ALLOWED.line == "550 5.7.1 Sending from domain is not allowed"
    assert replies.AUTH_REQUIRED.line == "530 5.7.1 Authentication required"
    assert replies.FROM_HEADER_MISMATCH.text == "From: Header does not match the sender's domain"
    assert replies.AUTH_INVALID.line == "535 5.7.8 Authentication credentials invalid"
    assert replies.STARTTLS_REQUIRED.line == "530 5.7.0 Must issue a STARTTLS command first"
    assert replies.SIZE_EXCEEDED.line.startswith("552 5.3.4 ")
    assert replies.TEMPORARY_FAILURE.line.startswith("451 4.3.0 ")


def test_table_is_well_formed() -> None:
    for name, r in REPLIES.items():
        assert r.name == name and getattr(replies, name) is r
        assert 200 <= r.code < 600
        line = r.line
        assert line.isascii() and "\r" not in line and "\n" not in line and len(line) < 512
        if r.enhanced:
            # RFC 3463: class matches the reply code's first digit.
            assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", r.enhanced) and r.enhanced[0] == str(r.code)[0]
        assert r.wire().endswith(b"\r\n")
