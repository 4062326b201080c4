"""DSN / ARF parsing: one parametrised case per sample file in tests/fixtures/reports/."""

from __future__ import annotations

from typing import Any

import pytest

from mailtrap_smtp.inbound import reports
from tests.report_samples import DIR, EXPECTED, render

VERP = "bounces+abcdefgh@mt1.src.test"
RCPT = "gone@dest.test"


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in DIR.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str) -> None:
    want: dict[str, Any] = {k: (v.replace("{{RCPT}}", RCPT) if isinstance(v, str) else v)
                            for k, v in EXPECTED[name].items()}
    got = reports.parse(render(name, VERP, RCPT))
    assert got.kind == want["kind"], got
    if want["kind"] == "unparseable":
        assert want["reason"] in got.reason
        assert got.recipient is None and got.verp_candidates == ()
        return
    assert got.recipient == RCPT
    for key in ("format", "status", "category", "remote_mta", "feedback_type"):
        if key in want:
            assert getattr(got, key) == want[key], key
    if "diagnostic_starts" in want:
        assert got.diagnostic is not None and got.diagnostic.startswith(want["diagnostic_starts"])
    if "remote_mta_starts" in want:
        assert got.remote_mta is not None and got.remote_mta.startswith(want["remote_mta_starts"])
    if "verp" in want:
        assert (VERP in got.verp_candidates) == want["verp"]
    if "message_id" in want:
        assert got.original_message_id == want["message_id"]
    if got.kind in ("bounce", "soft_bounce"):
        assert got.category is not None
    else:
        assert got.category is None


@pytest.mark.parametrize("raw", [
    pytest.param(b"\r\n" * 10000, id="only-blank-lines"),
    pytest.param(b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"" + b"x" * 5000
                 + b"\"\r\n\r\n--" + b"x" * 5000 + b"\r\n", id="huge-boundary"),
    pytest.param(b"Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\n"
                 b"Status: 5.1.1\r\n", id="bare-status-part-single-block"),
    pytest.param(b"Content-Type: text/plain; charset=\"\xff\xfe\"\r\n\r\nqmail-send program\r\n<a@b.test>:\r\n",
                 id="undecodable-charset-name"),
])
def test_hostile_inputs_never_raise(raw: bytes) -> None:
    got = reports.parse(raw)
    assert isinstance(got, reports.Report)


def _deep_multiparts(depth: int) -> bytes:
    return ("From: x@y.test\n" + "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n'
                                         for i in range(depth))).encode()


def _many_parts(n: int) -> bytes:
    parts = "".join(f"--M\nContent-Type: text/plain\n\np{i}\n" for i in range(n))
    return ('From: x@y.test\nContent-Type: multipart/mixed; boundary="M"\n\n' + parts + "--M--\n").encode()


@pytest.mark.parametrize(("raw", "reason"), [
    pytest.param(_deep_multiparts(17000), "more than 16 multipart boundaries", id="1MiB-of-nested-multiparts"),
    pytest.param(_many_parts(30000)[:1048576], "more than 256 lines starting with '--'", id="1MiB-of-parts"),
    pytest.param(("From: x@y.test\n" + "Content-Type: message/rfc822\n\n" * 20000).encode(),
                 "RecursionError", id="nested-message-rfc822"),
])
def test_parser_work_is_bounded_on_hostile_structure(raw: bytes, reason: str) -> None:
    """Inputs of the listener's maximum size that would keep the stdlib parser busy for seconds."""
    got = reports.parse(raw)
    assert got.kind == "unparseable" and reason in got.reason
