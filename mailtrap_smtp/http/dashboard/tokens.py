"""API tokens: the account's tokens with their grants and last use, create one (streams, domains,
level; the token is shown on the answer page only), revoke one. Rules: `core.credentials`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ... import domainops, permissions
from ...core import credentials
from ...core.refusal import Refused
from .web import PREFIX, Missing, Viewer, back, posted, render, text, viewer

router = APIRouter(prefix=PREFIX)


async def _page(request: Request, who: Viewer, *, issued: credentials.Issued | None = None,
                error: str | None = None, status: int = 200) -> Response:
    async with who.ctx.pool.acquire() as conn:
        found = await credentials.list_for(conn, who.account_id)
    domains = await domainops.list_domains(who.ctx.pool, who.principal.account_name)
    return render(request, who, "tokens.html", status, title="API tokens", tokens=found, domains=domains,
                  streams=permissions.STREAMS, levels=[lvl.value for lvl in permissions.Level], issued=issued,
                  error=error)


@router.get("/tokens")
async def tokens_page(request: Request, who: Viewer = Depends(viewer)) -> Response:
    return await _page(request, who)


@router.post("/tokens")
async def create(request: Request, who: Viewer = Depends(viewer)) -> Response:
    form = await posted(request, who)
    streams = [s for s in form.getlist("streams") if isinstance(s, str)]
    ids = [int(d) for d in form.getlist("domain_ids") if isinstance(d, str) and d.isdigit()]
    level = text(form, "level", "send")
    try:
        wanted = permissions.make_grant(streams, level, ids or None)
        if not permissions.may_grant(who.principal, wanted):
            raise Refused("a token cannot hand out a stream it does not hold")
        async with who.ctx.pool.acquire() as conn:
            issued = await credentials.issue_for(conn, who.account_id, streams=streams, level=level,
                                                 domain_ids=ids or None, name=text(form, "name").strip() or None)
    except (Refused, permissions.GrantError) as e:
        return await _page(request, who, error=str(e), status=422)
    return await _page(request, who, issued=issued)


@router.post("/tokens/{token_id}/revoke")
async def revoke(token_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    await posted(request, who)
    try:
        async with who.ctx.pool.acquire() as conn:
            await credentials.revoke(conn, token_id, who.account_id)
    except Refused:
        raise Missing from None
    return back("/tokens", f"Revoked {token_id}.")
