"""Token generation and lookup; billing periods from the anchor day."""

from __future__ import annotations

import datetime as dt

import pytest

from mailtrap_smtp import quota, tokens


def test_tokens_are_unique_high_entropy_and_found_by_public_id() -> None:
    seen = {tokens.generate().token for _ in range(200)}
    assert len(seen) == 200
    new = tokens.generate()
    assert tokens.public_id_of(new.token) == new.public_id
    secret = new.token.split("_", 2)[2]
    assert len(secret) == 32  # 24 random bytes = 192 bits
    assert tokens.matches(new.token, new.digest)
    assert not tokens.matches(new.token[:-1] + ("A" if new.token[-1] != "A" else "B"), new.digest)
    assert new.token.encode() not in new.digest


@pytest.mark.parametrize("bad", ["", "api", "mts_1234567_" + "a" * 32, "mts_1234567g_" + "a" * 32,
                                 "mts_12345678_" + "a" * 31, "mts_12345678_" + "a" * 31 + "\n",
                                 "mts_12345678_" + "a" * 31 + "\x00", "x" * 10000])
def test_malformed_tokens_have_no_public_id(bad: str) -> None:
    assert tokens.public_id_of(bad) is None


@pytest.mark.parametrize(
    ("anchor", "today", "start", "end"),
    [
        (1, dt.date(2026, 11, 26), dt.date(2026, 11, 1), dt.date(2026, 12, 1)),
        (15, dt.date(2026, 11, 14), dt.date(2026, 10, 15), dt.date(2026, 11, 15)),
        (15, dt.date(2026, 11, 15), dt.date(2026, 11, 15), dt.date(2026, 12, 15)),
        (31, dt.date(2027, 2, 27), dt.date(2027, 1, 31), dt.date(2027, 2, 28)),
        (31, dt.date(2027, 2, 28), dt.date(2027, 2, 28), dt.date(2027, 3, 31)),
        (10, dt.date(2027, 1, 5), dt.date(2026, 12, 10), dt.date(2027, 1, 10)),
        (30, dt.date(2028, 2, 29), dt.date(2028, 2, 29), dt.date(2028, 3, 30)),
    ],
)
def test_billing_period_resets_on_anchor_day(anchor: int, today: dt.date, start: dt.date, end: dt.date) -> None:
    assert quota.period_start(anchor, today) == start
    assert quota.period_end(anchor, today) == end
