"""The overview page: this billing period's usage against the monthly limit (80/90/100 % marks,
as the quota notices use) and the last 30 days of deliveries and bounces from the stats rollups."""

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


@router.get("/")
async def overview(request: Request, who: Viewer = Depends(viewer)) -> Response:
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    async with who.ctx.pool.acquire() as conn:
        account = await accounts.summary(conn, await accounts.get(conn, who.principal.account_name), today)
        req = stats.StatsRequest(days[0], today)
        by_day = await stats.grouped(conn, who.account_id, req, "date")
        total = await stats.totals(conn, who.account_id, req)
    delivered = {dt.date.fromisoformat(r["date"]): int(r["stats"]["delivery_count"]) for r in by_day}
    bounced = {dt.date.fromisoformat(r["date"]): int(r["stats"]["bounce_count"]) for r in by_day}
    limit = int(account["monthly_limit"])
    used = int(account["used_this_period"])
    percent = 100.0 * used / limit if limit else 0.0
    chart = daily_bars(days, [Series("delivered", delivered), Series("bounced", bounced)],
                       f"Delivered and bounced per day, {days[0]} to {today}")
    rows = [(d, delivered.get(d, 0), bounced.get(d, 0)) for d in reversed(days)]
    return render(request, who, "overview.html", title="Overview", account=account, used=used, limit=limit,
                  percent=percent, bar_percent=min(100.0, percent), marks=MARKS,
                  reached=[m for m in MARKS if percent >= m], chart=chart, rows=rows, total=total)
