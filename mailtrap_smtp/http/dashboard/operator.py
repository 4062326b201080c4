"""The operator's view (logged in with the operator password): every account with its plan and this
period's usage, and every sending domain with its state. Read only: changes are an account admin's
(its pages) or the CLI's."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ... import domainops
from ...core import accounts
from .web import PREFIX, Operator, operator, render

router = APIRouter(prefix=PREFIX)


@router.get("/operator")
async def operator_page(request: Request, who: Operator = Depends(operator)) -> Response:
    today = dt.datetime.now(dt.UTC).date()
    async with who.ctx.pool.acquire() as conn:
        found = await accounts.summaries(conn, today)
    domains = await domainops.list_domains(who.ctx.pool)
    names = {d["account_id"]: a["name"] for a in found for d in domains if d["name"] in a["domains"]}
    return render(request, who, "operator.html", title="Every account", accounts=found, domains=domains,
                  owners=names)
