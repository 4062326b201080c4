"""Email templates: the list, create one, edit one with a preview rendered by the template engine
(`templates.Templates.render`) from sample variables; the HTML preview is a sandboxed frame."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from ...core.templates import Rendered, TemplateInvalid, TemplateNotFound, Templates
from ...templating import TemplateError
from ..principal import context
from .web import PREFIX, Missing, Viewer, back, parse_int, posted, render, text, viewer

router = APIRouter(prefix=PREFIX)
FIELDS = ("name", "subject", "category", "body_text", "body_html")


def _templates(request: Request) -> Templates:
    return context(request).templates  # the process's one (it caches compiled templates)


def _values(form: FormData) -> dict[str, Any]:
    return {k: (text(form, k) if k in ("name", "subject", "category") else text(form, k) or None) for k in FIELDS}


@router.get("/templates")
async def templates_page(request: Request, who: Viewer = Depends(viewer)) -> Response:
    found = await _templates(request).list_all(who.account_id)
    return render(request, who, "templates.html", title="Templates", templates=found, error=None, values={})


@router.post("/templates")
async def create(request: Request, who: Viewer = Depends(viewer)) -> Response:
    form = await posted(request, who)
    try:
        made = await _templates(request).create(who.account_id, _values(form))
    except TemplateInvalid as e:
        found = await _templates(request).list_all(who.account_id)
        return render(request, who, "templates.html", 422, title="Templates", templates=found, error=str(e),
                      values=_values(form))
    return back(f"/templates/{made.id}", "Template created.")


async def _edit(request: Request, who: Viewer, template_id: str, *, variables: str = "{}",
                error: str | None = None, status: int = 200) -> Response:
    try:
        found = await _templates(request).get(who.account_id, parse_int(template_id))
    except TemplateNotFound:
        raise Missing from None
    preview: Rendered | None = None
    try:
        preview = await _templates(request).render(who.account_id, found.uuid, json.loads(variables or "{}"))
    except (ValueError, TemplateError) as e:
        error = error or f"Preview: {e}"
    return render(request, who, "template.html", status, title=found.name, template=found, preview=preview,
                  variables=variables, error=error)


@router.get("/templates/{template_id}")
async def edit_page(template_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    return await _edit(request, who, template_id, variables=request.query_params.get("variables", "{}"))


@router.post("/templates/{template_id}")
async def update(template_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    form = await posted(request, who)
    try:
        await _templates(request).update(who.account_id, parse_int(template_id), _values(form))
    except TemplateNotFound:
        raise Missing from None
    except TemplateInvalid as e:
        return await _edit(request, who, template_id, variables=text(form, "variables", "{}"), error=str(e),
                           status=422)
    return await _edit(request, who, template_id, variables=text(form, "variables", "{}"))
