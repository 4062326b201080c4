"""The one header splitter (mailtrap_smtp/headers.py), without sockets: one case per input."""

from __future__ import annotations

import pytest

from mailtrap_smtp import headers
from mailtrap_smtp.core import queue_admin


@pytest.mark.parametrize(("raw", "fields", "rest"), [
    (b"From: a@b\r\nTo: c@d\r\n\r\nbody\r\n",
     [(b"from", b"From: a@b\r\n"), (b"to", b"To: c@d\r\n")], b"\r\nbody\r\n"),
    (b"Subject: one\r\n two\r\n\tthree\r\n\r\n",
     [(b"subject", b"Subject: one\r\n two\r\n\tthree\r\n")], b"\r\n"),
    (b"From: a@b", [(b"from", b"From: a@b")], b""),
    (b"\r\nbody", [], b"\r\nbody"),
    (b"", [], b""),
    (b"X-Sp :  v  \r\n\r\n", [(b"x-sp", b"X-Sp :  v  \r\n")], b"\r\n"),
    # A line that is not a field ends the header; it is kept, but in the body.
    (b"From: a@b\r\nnot a field\r\n\r\nbody", [(b"from", b"From: a@b\r\n")], b"\r\nnot a field\r\n\r\nbody"),
    (b" folded first\r\nFrom: a@b\r\n", [], b"\r\n folded first\r\nFrom: a@b\r\n"),
    (b"Subj\xc3\xa9ct: x\r\n\r\n", [], b"\r\nSubj\xc3\xa9ct: x\r\n\r\n"),
])
def test_parse_header(raw: bytes, fields: list[tuple[bytes, bytes]], rest: bytes) -> None:
    parsed = headers.parse_header(raw)
    assert (parsed.fields, parsed.rest) == (fields, rest)


@pytest.mark.parametrize(("raw", "section"), [
    (b"From: a@b\r\nSubject: x\r\n y\r\n\r\nbody", b"From: a@b\r\nSubject: x\r\n y\r\n"),
    (b"From: a@b", b"From: a@b"),
    (b"\r\nbody", b""),
])
def test_header_bytes_are_the_fields_as_written(raw: bytes, section: bytes) -> None:
    assert headers.header_bytes(headers.parse_header(raw)) == section


@pytest.mark.parametrize(("whole", "name", "value"), [
    (b"Message-ID: <x@y>\r\n", "Message-ID", "<x@y>"),
    (b"X-Sp \t:  v  \r\n", "X-Sp", "v"),
    (b"Subject: caf\xc3\xa9\r\n again\r\n", "Subject", "caf\u00e9 again"),
])
def test_field_name_and_value(whole: bytes, name: str, value: str) -> None:
    assert (headers.field_name(whole), headers.field_value(whole)) == (name, value)


def test_queue_show_lists_fields_as_written() -> None:
    raw = b"From: A <a@b>\r\nSubject: one\r\n two\r\nX-Utf: caf\xc3\xa9\r\nX-Empty:\r\n\r\nbody\r\n"
    assert queue_admin._headers_of(raw) == [("From", "A <a@b>"), ("Subject", "one\r\n two"),
                                            ("X-Utf", "caf\u00e9"), ("X-Empty", "")]


@pytest.mark.parametrize(("raw", "end"), [
    (b"From: a@b\r\n\r\nbody", 11),
    (b"From: a@b\r\nnot a field\r\n\r\n", 11),
    (b"From: a@b", 9),
    (b"\r\nbody", 0),
])
def test_split_fields_says_where_the_fields_end(raw: bytes, end: int) -> None:
    assert headers.split_fields(raw)[1] == end
