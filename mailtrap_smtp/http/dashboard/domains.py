"""Sending domains: the list with each state, add a domain, one domain's records (name, type,
value, per-record status from the last check, a copy button), "verify now", why a record is not
required (the next DKIM key, a rotation's key, the previous key, the link record reserved for click
tracking), and a banner while failing or suspended. Rules: `domainops`."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ... import domainops
from ...core.refusal import Refused
from ...store.types import Record
from ..domain_view import domain_out
from .web import PREFIX, Missing, Viewer, back, parse_int, posted, render, text, viewer

router = APIRouter(prefix=PREFIX)


async def _domain(who: Viewer, domain_id: str) -> Record:
    row = await domainops.domain_of_account(who.ctx.pool, who.account_id, parse_int(domain_id))
    if row is None:
        raise Missing
    return row


async def _list(request: Request, who: Viewer, error: str | None = None, status: int = 200) -> Response:
    rows = await domainops.list_domains(who.ctx.pool, who.principal.account_name)
    return render(request, who, "domains.html", status, title="Sending domains", domains=rows, error=error)


@router.get("/domains")
async def domains_page(request: Request, who: Viewer = Depends(viewer)) -> Response:
    return await _list(request, who)


@router.post("/domains")
async def add_domain(request: Request, who: Viewer = Depends(viewer)) -> Response:
    form = await posted(request, who)
    ctx = who.ctx
    try:
        report = await domainops.add_domain(ctx.pool, ctx.cfg, ctx.kek, who.principal.account_name,
                                            text(form, "domain_name"))
    except Refused as e:
        return await _list(request, who, str(e), 422)
    return back(f"/domains/{report.domain['id']}", "Domain added: publish its records, then verify.")


@router.get("/domains/{domain_id}")
async def domain_page(domain_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    ctx = who.ctx
    row = await _domain(who, domain_id)
    records = await domainops.expected_for(ctx.pool, ctx.cfg, row)
    view = domain_out(row, records, require_approval=ctx.cfg.domains.require_approval, may_manage=True)
    grace_end = None
    if row["state"] == "failing" and row["failing_since"] is not None:
        grace_end = row["failing_since"] + dt.timedelta(seconds=ctx.cfg.domains.grace_period_seconds)
    rows = list(zip(view.dns_records, records, strict=True))
    return render(request, who, "domain.html", title=str(row["name"]), domain=row, view=view, records=rows,
                  grace_end=grace_end)


@router.post("/domains/{domain_id}/verify")
async def verify(domain_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    row = await _domain(who, domain_id)
    await posted(request, who)
    ctx = who.ctx
    await domainops.verify_domain(ctx.pool, ctx.cfg, ctx.resolver, str(row["name"]))
    return back(f"/domains/{row['id']}", "Checked the DNS just now.")
