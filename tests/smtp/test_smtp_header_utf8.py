"""RFC 6532 §3 at submission: the header fields of internationalised mail (MAIL ... SMTPUTF8) must
be valid UTF-8. Each malformed sequence, over DATA and over BDAT, gets the exact reply and nothing is
stored or charged; the same bytes without SMTPUTF8 are accepted as before, and so are valid UTF-8
headers and an 8-bit body that is not UTF-8 (the body is MIME's business)."""

from __future__ import annotations

import pytest

from tests.smtp_util import SENDER, Env, RawClient, authed, reply_line

QUEUED = "250 2.0.0 Ok: queued as "

# Not UTF-8 (RFC 3629 §3/§4), each one way: what Python's strict decoder, like the RFC, refuses.
INVALID = [
    pytest.param(b"caf\xe9", id="latin-1"),
    pytest.param(b"\x80x", id="lone-continuation"),
    pytest.param(b"\xc0\xaf", id="overlong-slash"),
    pytest.param(b"\xe0\x80\xaf", id="overlong-3-octets"),
    pytest.param(b"\xed\xa0\x80", id="utf16-surrogate"),
    pytest.param(b"\xf4\x90\x80\x80", id="past-u10ffff"),
    pytest.param(b"\xe2\x82", id="truncated"),
    pytest.param(b"\xff\xfe", id="never-in-utf8"),
]

# Where in the header the bytes sit: every field is checked, folded lines included.
PLACES = [
    pytest.param(lambda b: b"Subject: " + b + b"\r\n", id="subject"),
    pytest.param(lambda b: b"Subject: Hello\r\n\tmore " + b + b"\r\n", id="folded-line"),
    pytest.param(lambda b: b"Subject: Hello\r\nX-Note: " + b + b"\r\n", id="own-field"),
    pytest.param(lambda b: b"Subject: Hello\r\nTo: " + b + b" <user@dest.test>\r\n", id="display-name"),
]


def _message(header: bytes, body: bytes = b"Hi there.\r\n") -> bytes:
    return b"From: Sender <" + SENDER.encode() + b">\r\n" + header + b"\r\n" + body


async def _begin(c: RawClient, *, smtputf8: bool) -> None:
    assert await c.cmd(f"MAIL FROM:<{SENDER}>" + (" SMTPUTF8 BODY=8BITMIME" if smtputf8 else " BODY=8BITMIME")) \
        == reply_line("SENDER_OK")
    assert await c.cmd("RCPT TO:<user@dest.test>") == reply_line("RECIPIENT_OK")


async def _over_data(c: RawClient, raw: bytes) -> str:
    assert await c.cmd("DATA") == reply_line("START_DATA")
    return await c.cmd(raw + b".")


async def _over_bdat(c: RawClient, raw: bytes) -> str:
    return await c.cmd(b"BDAT %d LAST\r\n" % len(raw) + raw[:-2])  # cmd() adds the last CRLF


async def _stored(env: Env) -> list[bytes]:
    return [bytes(r["raw"]) for r in await env.pool.fetch("SELECT raw FROM messages")]


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("bad", INVALID)
async def test_declared_smtputf8_with_invalid_utf8_header_is_refused(smtp: Env, verb: str, place: object,
                                                                     bad: bytes) -> None:
    c = await authed(smtp)
    await _begin(c, smtputf8=True)
    raw = _message(place(bad))  # type: ignore[operator]
    got = await (_over_data(c, raw) if verb == "DATA" else _over_bdat(c, raw))
    assert got == reply_line("HEADER_NOT_UTF8") == "550 5.6.0 Message header is not valid UTF-8"
    await smtp.assert_nothing_stored()
    # The session goes on: the transaction was reset, a valid message is accepted next.
    await _begin(c, smtputf8=True)
    assert (await _over_data(c, _message("Subject: Gr\u00fc\u00dfe\r\n".encode()))).startswith(QUEUED)
    assert await smtp.counts() == {"messages": 1, "recipients": 1, "used": 1, "events": 1}
    c.close()


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
@pytest.mark.parametrize("bad", INVALID)
async def test_undeclared_8bit_header_keeps_todays_behaviour(smtp: Env, verb: str, bad: bytes) -> None:
    c = await authed(smtp)
    await _begin(c, smtputf8=False)
    raw = _message(b"Subject: " + bad + b"\r\nDate: Tue, 01 Dec 2026 12:00:00 +0000\r\n"
                   b"Message-ID: <u1@example.com>\r\n")
    got = await (_over_data(c, raw) if verb == "DATA" else _over_bdat(c, raw))
    assert got.startswith(QUEUED)
    (stored,) = await _stored(smtp)
    assert stored.endswith(raw)  # relayed byte for byte
    assert await smtp.pool.fetchval("SELECT smtputf8 FROM messages") is False
    c.close()


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
async def test_valid_utf8_header_and_non_utf8_body_accepted(smtp: Env, verb: str) -> None:
    c = await authed(smtp)
    await _begin(c, smtputf8=True)
    header = "Subject: \u4f60\u597d \U0001f600\r\nX-Note: \u00e9t\u00e9\r\n".encode()
    raw = _message(header + b"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <u2@example.com>\r\n",
                   body=b"8-bit body in Latin-1: caf\xe9\r\n")
    got = await (_over_data(c, raw) if verb == "DATA" else _over_bdat(c, raw))
    assert got.startswith(QUEUED)
    (stored,) = await _stored(smtp)
    assert stored.endswith(raw)
    assert await smtp.pool.fetchval("SELECT smtputf8 FROM messages") is True
    c.close()
