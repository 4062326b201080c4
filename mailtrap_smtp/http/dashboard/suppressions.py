"""Suppressions: search by address (the use case's cursor, `last_id`), add one, remove one, import
a CSV file into one domain. Rules and refusals: `core.suppressions`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ... import domainops
from ...core import suppressions
from ...core.suppressions import Invalid, NotFound
from .web import PREFIX, Missing, Viewer, back, posted, render, text, upload, viewer

router = APIRouter(prefix=PREFIX)
MAX_CSV_BYTES = 5 * 1024 * 1024  # the API's request limit applies first; this bounds the decode


async def _page(request: Request, who: Viewer, error: str | None = None, status: int = 200) -> Response:
    q = request.query_params
    email = q.get("email", "").strip() or None
    try:
        last_id = suppressions.parse_id(q["after"]) if q.get("after") else None
    except NotFound:
        raise Missing from None
    async with who.ctx.pool.acquire() as conn:
        found = await suppressions.search(conn, who.account_id, email=email, last_id=last_id)
    domains = await domainops.list_domains(who.ctx.pool, who.principal.account_name)
    after = found[-1]["id"] if len(found) == suppressions.MAX_LIST else None
    return render(request, who, "suppressions.html", status, title="Suppressions", found=found, email=email or "",
                  domains=domains, streams=suppressions.STREAMS, error=error, after=after)


@router.get("/suppressions")
async def suppressions_page(request: Request, who: Viewer = Depends(viewer)) -> Response:
    return await _page(request, who)


def _domain_id(value: str) -> int | str:
    return int(value) if value.isdigit() else value  # the use case refuses what is not one of ours


@router.post("/suppressions")
async def add(request: Request, who: Viewer = Depends(viewer)) -> Response:
    form = await posted(request, who)
    entry = suppressions.Entry(text(form, "email").strip(), _domain_id(text(form, "domain_id")),
                               text(form, "sending_stream", "any"))
    try:
        async with who.ctx.pool.acquire() as conn:
            await suppressions.add_one(conn, who.account_id, entry)
    except (Invalid, NotFound) as e:
        return await _page(request, who, str(e), 422)
    return back("/suppressions", f"Suppressed {entry.email}.")


@router.post("/suppressions/import")
async def import_csv(request: Request, who: Viewer = Depends(viewer)) -> Response:
    form = await posted(request, who)
    file = upload(form, "file")
    try:
        data = await file.read(MAX_CSV_BYTES + 1) if file is not None else b""
    finally:
        await form.close()
    domain = _domain_id(text(form, "domain_id"))
    try:
        if len(data) > MAX_CSV_BYTES:
            raise Invalid({"file": ["is larger than 5 MiB"]})
        if not isinstance(domain, int):
            raise NotFound("no such sending domain")
        try:  # strictly: a replaced byte (U+FFFD) would make a valid-looking, wrong address
            csv_text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Invalid({"file": ["is not UTF-8 text"]}) from None
        async with who.ctx.pool.acquire() as conn:
            added = await suppressions.import_csv(conn, who.account_id, csv_text,
                                                  domain_id=domain, sending_stream=text(form, "sending_stream", "any"))
    except (Invalid, NotFound) as e:
        return await _page(request, who, str(e), 422)
    return back("/suppressions", f"Imported {len(added)} addresses.")


@router.post("/suppressions/{suppression_id}/delete")
async def delete(suppression_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    await posted(request, who)
    try:
        async with who.ctx.pool.acquire() as conn:
            gone = await suppressions.delete(conn, who.account_id, suppressions.parse_id(suppression_id))
    except NotFound:
        raise Missing from None
    return back("/suppressions", f"Removed {gone['email']}.")
