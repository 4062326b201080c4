"""Sending stats (MAILTRAP_COMPAT §7.2): totals, and by domain, category, mailbox provider or date,
over `start_date`…`end_date` (inclusive), read from the daily rollups.

Rates are fractions between 0 and 1: delivery and bounce rates of the emails that reached a final
outcome in the range (delivered + bounced), open, click and spam rates of those delivered. The
grouped answers carry the SDK's key (`sending_domain_id`, `category`, `email_service_provider`,
`date`) and, for domains, the current OAS's `domain_id` too.

Sent and rejected (`per_day`, the dashboard's chart) are not in the API's answers: Mailtrap's
shape is exactly the ten keys, and SDKs that build a struct from them (the Ruby SDK's
`Struct.new(..., keyword_init: true)`) refuse a key they do not know.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..store import stats as store
from ..store.types import Conn, Record
from .suppressions import Invalid

MAX_DAYS = 3660  # ten years: a range longer than that is a mistake, not a question


class MissingParameter(Invalid):
    """A required parameter is absent: Mailtrap's 400 `{"error":"Missing required parameter: <name>"}`."""

    def __init__(self, name: str) -> None:
        super().__init__({name: ["is missing"]})
        self.name = name


# Request groupings → (the store's grouping, the key in each answer item).
GROUPINGS = {"domains": ("domain", "sending_domain_id"), "categories": ("category", "category"),
             "email_service_providers": ("provider", "email_service_provider"), "date": ("date", "date")}


@dataclass(frozen=True)
class StatsRequest:
    start: dt.date
    end: dt.date
    domain_ids: Sequence[int] | None = None
    streams: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    providers: Sequence[str] | None = None


def _date(params: Mapping[str, Sequence[str]], name: str) -> dt.date:
    values = params.get(name)
    if not values or not values[-1]:
        raise MissingParameter(name)
    try:
        return dt.date.fromisoformat(values[-1]) if len(values[-1]) == 10 else _bad(name)
    except ValueError:
        return _bad(name)


def _bad(name: str) -> dt.date:
    raise Invalid({name: ["must be a date (YYYY-MM-DD)"]})


def _list(params: Mapping[str, Sequence[str]], *names: str) -> list[str] | None:
    values = [v for n in names for v in params.get(n, ())]
    return values or None


def parse_query(params: Mapping[str, Sequence[str]]) -> StatsRequest:
    """A StatsRequest from query parameters (`start_date`, `end_date`, `sending_domain_ids[]` or the
    OAS's `domain_ids[]`, `sending_streams[]`, `categories[]`, `email_service_providers[]`)."""
    start, end = _date(params, "start_date"), _date(params, "end_date")
    if end < start:
        raise Invalid({"end_date": ["must not be before start_date"]})
    if (end - start).days > MAX_DAYS:
        raise Invalid({"end_date": [f"must be at most {MAX_DAYS} days after start_date"]})
    raw_ids = _list(params, "sending_domain_ids[]", "domain_ids[]", "sending_domain_ids", "domain_ids")
    try:
        ids = None if raw_ids is None else [int(v) for v in raw_ids]
    except ValueError:
        raise Invalid({"sending_domain_ids": ["must be integers"]}) from None
    streams = _list(params, "sending_streams[]", "sending_streams")
    if streams is not None and any(s not in ("transactional", "bulk") for s in streams):
        raise Invalid({"sending_streams": ["must be one of: transactional, bulk"]})
    return StatsRequest(start, end, ids, streams, _list(params, "categories[]", "categories"),
                        _list(params, "email_service_providers[]", "email_service_providers"))


def _rate(n: int, of: int) -> float:
    return n / of if of else 0.0


def as_stats(row: Record) -> dict[str, Any]:
    """The ten `*_count` / `*_rate` keys of §7.2."""
    d, b = int(row["delivery_count"]), int(row["bounce_count"])
    o, c, s = int(row["open_count"]), int(row["click_count"]), int(row["spam_count"])
    return {"delivery_count": d, "delivery_rate": _rate(d, d + b), "bounce_count": b, "bounce_rate": _rate(b, d + b),
            "open_count": o, "open_rate": _rate(o, d), "click_count": c, "click_rate": _rate(c, d),
            "spam_count": s, "spam_rate": _rate(s, d)}


def _range(account_id: int, req: StatsRequest) -> store.Range:
    return store.Range(account_id, req.start, req.end, req.domain_ids, req.streams, req.categories, req.providers)


async def totals(conn: Conn, account_id: int, req: StatsRequest) -> dict[str, Any]:
    (row,) = await store.totals(conn, _range(account_id, req))
    return as_stats(row)


async def grouped(conn: Conn, account_id: int, req: StatsRequest, grouping: str) -> list[dict[str, Any]]:
    """`[{"<key>": value, "stats": {...}}]` for one of GROUPINGS (`NotFound`-free: unknown → KeyError)."""
    group, key = GROUPINGS[grouping]
    out = []
    for row in await store.totals(conn, _range(account_id, req), group):
        value = row["key"]
        item: dict[str, Any] = {key: value.isoformat() if isinstance(value, dt.date) else value}
        if key == "sending_domain_id":
            item["domain_id"] = value
        item["stats"] = as_stats(row)
        out.append(item)
    return out


@dataclass(frozen=True)
class Day:
    """One day's counts as the dashboard shows them (see consumers/stats_rollup.py for the terms)."""

    sent: int
    delivered: int
    bounced: int
    rejected: int


async def per_day(conn: Conn, account_id: int, start: dt.date, end: dt.date) -> dict[dt.date, Day]:
    """The days of `start`…`end` (inclusive) that have any count, from the daily rollups."""
    rows = await store.totals(conn, store.Range(account_id, start, end), "date")
    return {r["key"]: Day(int(r["sent_count"]), int(r["delivery_count"]), int(r["bounce_count"]),
                          int(r["rejected_count"])) for r in rows}
