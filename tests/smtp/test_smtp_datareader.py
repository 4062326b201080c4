"""The DATA reader without a socket: chunks in, (message, bytes after the dot) out, one case a row."""

from __future__ import annotations

import pytest

from mailtrap_smtp.smtp.datareader import DataReader

# (wire chunks after "DATA\r\n", normalize?, message or None, rest after the terminator)
CASES: list[tuple[str, list[bytes], bool, bytes | None, bytes]] = [
    ("empty message", [b".\r\n"], True, b"", b""),
    ("plain", [b"a\r\nb\r\n.\r\n"], True, b"a\r\nb\r\n", b""),
    ("pipelined rest kept", [b"a\r\n.\r\nQUIT\r\n"], True, b"a\r\n", b"QUIT\r\n"),
    ("unstuffed once", [b"..x\r\n...y\r\n.\r\n"], True, b".x\r\n..y\r\n", b""),
    ("terminator split over chunks", [b"a\r", b"\n", b".", b"\r", b"\n"], True, b"a\r\n", b""),
    ("terminator split, rest", [b"a\r\n.", b"\r\nNOOP\r\n"], True, b"a\r\n", b"NOOP\r\n"),
    # Bare LF line ends become CRLF (Postfix 3.9 smtpd_forbid_bare_newline = normal).
    ("LF text", [b"From: a@b\nSubject: x\n\nhi\n\r\n.\r\n"], True,
     b"From: a@b\r\nSubject: x\r\n\r\nhi\r\n\r\n", b""),
    ("LF line stuffed", [b"a\n..b\n\r\n.\r\n"], True, b"a\r\n.b\r\n\r\n", b""),
    ("LF first line stuffed", [b"..a\nb\r\n.\r\n"], True, b".a\r\nb\r\n", b""),
    # The smuggling family: not a terminator, a lone "." line of text inside ONE message.
    ("\\n.\\n", [b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n"], True, b"a\r\n.\r\nMAIL FROM:<x@y>\r\n", b""),
    ("\\n.\\r\\n", [b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"], True, b"a\r\n.\r\nMAIL FROM:<x@y>\r\n", b""),
    ("\\r\\n.\\n", [b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n"], True, b"a\r\n.\r\nMAIL FROM:<x@y>\r\n", b""),
    ("lone dot first line", [b".\nMAIL\r\n.\r\n"], True, b".\r\nMAIL\r\n", b""),
    # Bare CR and NUL are left for the submission check to refuse, in both modes.
    ("\\r.\\r", [b"a\r.\rMAIL\r\n.\r\n"], True, b"a\r.\rMAIL\r\n", b""),
    ("NUL", [b"a\r\n\x00.\r\nMAIL\r\n.\r\n"], True, b"a\r\n\x00.\r\nMAIL\r\n", b""),
    ("dot NUL", [b"a\r\n.\x00\r\nMAIL\r\n.\r\n"], True, b"a\r\n\x00\r\nMAIL\r\n", b""),
    ("\\r\\n.\\r\\r\\n", [b"a\r\n.\r\r\nM\r\n.\r\n"], True, b"a\r\n\r\r\nM\r\n", b""),
    ("bare LF with a bare CR: left for the refusal", [b"a\nb\rc\r\n.\r\n"], True, b"a\nb\rc\r\n", b""),
    # reject mode: bare LFs stay, for the submission check to refuse the message.
    ("reject: LF kept", [b"a\nb\r\n.\r\n"], False, b"a\nb\r\n", b""),
    ("reject: \\n.\\n kept", [b"a\n.\nM\r\n.\r\n"], False, b"a\n.\nM\r\n", b""),
]


@pytest.mark.parametrize(("chunks", "normalize", "message", "rest"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_reader(chunks: list[bytes], normalize: bool, message: bytes | None, rest: bytes) -> None:
    reader = DataReader(1000, normalize=normalize)
    done = [reader.feed(c) for c in chunks]
    assert done == [False] * (len(chunks) - 1) + [True]
    assert reader.message() == message
    assert reader.rest == rest


def test_every_split_point_gives_the_same_message() -> None:
    wire = b"x\n.\n..y\r\nz\r\n.\r\nNOOP\r\n"
    for cut in range(1, len(wire)):
        reader = DataReader(1000, normalize=True)
        unread = b""  # what the session would read as commands without feeding it
        if reader.feed(wire[:cut]):
            unread = wire[cut:]
        else:
            assert reader.feed(wire[cut:])
        assert (reader.message(), reader.rest + unread) == (b"x\r\n.\r\n.y\r\nz\r\n", b"NOOP\r\n"), cut


@pytest.mark.parametrize(("wire", "limit", "message"), [
    (b"a" * 100 + b"\r\n.\r\n", 102, b"a" * 100 + b"\r\n"),
    (b"a" * 100 + b"\r\n.\r\n", 101, None),
    # Normalising LF to CRLF may push a message over the limit: refused, not truncated.
    (b"a\n" * 50 + b"\r\n.\r\n", 110, None),
    (b"a\n" * 50 + b"\r\n.\r\n", 152, b"a\r\n" * 50 + b"\r\n"),
], ids=["at limit", "one over", "over after normalising", "within after normalising"])
def test_size_limit(wire: bytes, limit: int, message: bytes | None) -> None:
    reader = DataReader(limit, normalize=True)
    assert reader.feed(wire)
    assert reader.message() == message


def test_over_limit_keeps_memory_bounded_and_still_finds_the_end() -> None:
    reader = DataReader(1000, normalize=True)
    for _ in range(100):
        assert not reader.feed(b"y" * 9_998 + b"\r\n")
        assert len(reader._work) <= 1000 + 10_000
    assert reader.feed(b".\r\nQUIT\r\n")
    assert reader.message() is None and reader.rest == b"QUIT\r\n"
