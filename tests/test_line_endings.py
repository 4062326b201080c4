"""submission.check_line_endings accepts exactly the messages whose every CR and LF is part of a CRLF
pair and that hold no NUL: checked against that definition on every short string of CR, LF, NUL
and text, and on random longer ones."""

from __future__ import annotations

import itertools
import random

import pytest

from mailtrap_smtp.outcomes import Outcome, Rejected
from mailtrap_smtp.submission import check_line_endings


def _by_definition(raw: bytes) -> bool:
    crlf = raw.count(b"\r\n")
    return b"\0" not in raw and raw.count(b"\r") == crlf and raw.count(b"\n") == crlf


def _accepted(raw: bytes) -> bool:
    try:
        check_line_endings(raw)
    except Rejected as r:
        assert r.outcome is Outcome.BARE_LINE_ENDING
        return False
    return True


def test_every_short_string() -> None:
    for n in range(7):
        for chars in itertools.product(b"\r\n\0a", repeat=n):
            raw = bytes(chars)
            assert _accepted(raw) == _by_definition(raw), raw


@pytest.mark.parametrize("seed", range(5))
def test_random_messages(seed: int) -> None:
    rng = random.Random(seed)
    lines = [bytes(rng.choice(b"abc \t") for _ in range(rng.randint(0, 80))) for _ in range(200)]
    good = b"\r\n".join(lines) + b"\r\n"
    assert _accepted(good)
    for _ in range(200):
        i = rng.randrange(len(good) + 1)
        raw = good[:i] + bytes([rng.choice(b"\r\n\0")]) + good[i:]
        assert _accepted(raw) == _by_definition(raw), i
