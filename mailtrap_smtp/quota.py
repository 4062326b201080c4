"""Billing periods: which monthly period a moment falls in, given the account's anchor day."""

from __future__ import annotations

import calendar
import datetime as dt
import functools


def _anchor_in(year: int, month: int, anchor_day: int) -> dt.date:
    # An anchor of 31 means "the last day" in shorter months.
    return dt.date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


@functools.lru_cache(maxsize=256)  # pure; called for every accepted message
def period_start(anchor_day: int, today: dt.date) -> dt.date:
    this_month = _anchor_in(today.year, today.month, anchor_day)
    if today >= this_month:
        return this_month
    year, month = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
    return _anchor_in(year, month, anchor_day)


def period_end(anchor_day: int, today: dt.date) -> dt.date:
    """First day of the next period (exclusive end)."""
    start = period_start(anchor_day, today)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return _anchor_in(year, month, anchor_day)


def current_period(anchor_day: int) -> dt.date:
    return period_start(anchor_day, dt.datetime.now(dt.UTC).date())
