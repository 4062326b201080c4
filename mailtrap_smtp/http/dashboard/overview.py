"""The overview page: this billing period's usage against the monthly limit (80/90/100 % marks,
as the quota notices use) and the last 30 days of recipients sent, delivered, bounced and rejected
from the stats rollups (the terms: consumers/stats_rollup.py)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ...core import accounts, stats
from .chart import Series, daily_bars
from .web import PREFIX, Viewer, render, viewer

router = APIRouter(prefix=PREFIX)
MARKS = (80, 90, 100)  # the quota notices' thresholds (issue 12)
DAYS = 30
SERIES = ("sent", "delivered", "bounced", "rejected")  # the fields of core.stats.Day, in the chart's order


@router.get("/")
async def overview(request: Request, who: Viewer = Depends(viewer)) -> Response:
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    async with who.ctx.pool.acquire() as conn:
        account = await accounts.summary(conn, await accounts.get(conn, who.principal.account_name), today)
        total = await stats.totals(conn, who.account_id, stats.StatsRequest(days[0], today))
        by_day = await stats.per_day(conn, who.account_id, days[0], today)
    series = [Series(name, {d: getattr(c, name) for d, c in by_day.items()}) for name in SERIES]
    limit = int(account["monthly_limit"])
    used = int(account["used_this_period"])
    percent = 100.0 * used / limit if limit else 0.0
    chart = daily_bars(days, series, f"Sent, delivered, bounced and rejected per day, {days[0]} to {today}")
    empty = stats.Day(0, 0, 0, 0)
    rows = [(d, by_day.get(d, empty)) for d in reversed(days)]
    return render(request, who, "overview.html", title="Overview", account=account, used=used, limit=limit,
                  percent=percent, bar_percent=min(100.0, percent), marks=MARKS,
                  reached=[m for m in MARKS if percent >= m], chart=chart, rows=rows, total=total,
                  series=SERIES, sent=sum(c.sent for c in by_day.values()),
                  rejected=sum(c.rejected for c in by_day.values()))
