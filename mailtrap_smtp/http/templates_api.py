"""Email templates over the templates use case (`templates.Templates`), on two path families
(MAILTRAP_COMPAT.md §7.3):

- the legacy `/api/accounts/{account_id}/email_templates[/{id}]` (the Python SDK's
  `email_templates_api`): list (a bare array), create and update with `{"email_template": {…}}`,
  bare objects;
- the SDK 2.11 `templates_api`'s `/api/accounts/{account_id}/templates[/{id}]` (Mailtrap calls them
  experimental): flat bodies, every object in a `{"data": …}` envelope, and the list in pages
  (`per_page`, default 50, at most 100; `token`, the page number from 1) with a `pagination` object.

Templates belong to the account: reading needs a read or admin token, changing them an admin token
of every domain.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from ..core.templates import EmailTemplate, TemplateInvalid, TemplateNotFound
from . import errors
from .models import PaginationOut, TemplateBody, TemplateData, TemplateOut, TemplatePage
from .principal import Caller, context, manage_caller
from .scope import account_access

router = APIRouter()
PATH = "/api/accounts/{account_id}/email_templates"
PAGED = "/api/accounts/{account_id}/templates"
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 100  # larger values are capped, as Mailtrap documents


def _out(t: EmailTemplate) -> TemplateOut:
    return TemplateOut(id=t.id, uuid=str(t.uuid), name=t.name, subject=t.subject, category=t.category,
                       body_text=t.body_text, body_html=t.body_html, created_at=t.created_at.isoformat(),
                       updated_at=t.updated_at.isoformat())



def _values(body: TemplateBody) -> dict[str, object]:
    if body.email_template is None:
        raise errors.ApiError(errors.manage_invalid({"email_template": ["can't be blank"]}))
    return dict(body.email_template)


async def _create(request: Request, caller: Caller, account_id: int, values: dict[str, object]) -> TemplateOut:
    account_access(caller, account_id, change=True)
    try:
        return _out(await context(request).templates.create(account_id, values))
    except TemplateInvalid as e:
        raise errors.ApiError(errors.manage_invalid(e.errors)) from None


async def _get(request: Request, caller: Caller, account_id: int, template_id: int) -> TemplateOut:
    account_access(caller, account_id)
    try:
        return _out(await context(request).templates.get(account_id, template_id))
    except TemplateNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None


async def _update(request: Request, caller: Caller, account_id: int, template_id: int,
                  values: dict[str, object]) -> TemplateOut:
    account_access(caller, account_id, change=True)
    try:
        return _out(await context(request).templates.update(account_id, template_id, values))
    except TemplateNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    except TemplateInvalid as e:
        raise errors.ApiError(errors.manage_invalid(e.errors)) from None


async def _delete(request: Request, caller: Caller, account_id: int, template_id: int) -> Response:
    account_access(caller, account_id, change=True)
    try:
        await context(request).templates.delete(account_id, template_id)
    except TemplateNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    return Response(status_code=204)


# Legacy paths.

@router.get(PATH, response_model=list[TemplateOut])
async def list_templates(account_id: int, request: Request,
                         caller: Caller = Depends(manage_caller)) -> list[TemplateOut]:
    account_access(caller, account_id)
    return [_out(t) for t in await context(request).templates.list_all(account_id)]


@router.post(PATH, response_model=TemplateOut, status_code=201)
async def create_template(account_id: int, body: TemplateBody, request: Request,
                          caller: Caller = Depends(manage_caller)) -> TemplateOut:
    return await _create(request, caller, account_id, _values(body))


@router.get(PATH + "/{template_id}", response_model=TemplateOut)
async def get_template(account_id: int, template_id: int, request: Request,
                       caller: Caller = Depends(manage_caller)) -> TemplateOut:
    return await _get(request, caller, account_id, template_id)


@router.patch(PATH + "/{template_id}", response_model=TemplateOut)
async def update_template(account_id: int, template_id: int, body: TemplateBody, request: Request,
                          caller: Caller = Depends(manage_caller)) -> TemplateOut:
    return await _update(request, caller, account_id, template_id, _values(body))


@router.delete(PATH + "/{template_id}", status_code=204)
async def delete_template(account_id: int, template_id: int, request: Request,
                          caller: Caller = Depends(manage_caller)) -> Response:
    return await _delete(request, caller, account_id, template_id)


# The SDK 2.11 `templates_api` paths: flat bodies, `{"data": …}` envelopes, pages.

def _page_url(request: Request, per_page: int, token: int | None) -> str | None:
    return None if token is None else str(request.url.replace(query=f"per_page={per_page}&token={token}"))


@router.get(PAGED, response_model=TemplatePage)
async def page_templates(account_id: int, request: Request, per_page: int = Query(DEFAULT_PER_PAGE, ge=1),
                         token: int = Query(1, ge=1), caller: Caller = Depends(manage_caller)) -> TemplatePage:
    account_access(caller, account_id)
    per_page = min(per_page, MAX_PER_PAGE)
    found, more = await context(request).templates.page(account_id, token, per_page)
    if not found and token > 1:
        raise errors.ApiError(errors.MANAGE_PAGE_OUT_OF_RANGE)
    prev_token, next_token = (token - 1 if token > 1 else None), (token + 1 if more else None)
    current = _page_url(request, per_page, token)
    first = _page_url(request, per_page, 1)
    assert current is not None and first is not None
    return TemplatePage(data=[_out(t) for t in found], pagination=PaginationOut(
        token=token, prev_token=prev_token, next_token=next_token, first_url=first,
        prev_url=_page_url(request, per_page, prev_token), current_url=current,
        next_url=_page_url(request, per_page, next_token)))


@router.post(PAGED, response_model=TemplateData, status_code=201)
async def create_paged(account_id: int, request: Request, body: dict[str, Any] = Body(...),
                       caller: Caller = Depends(manage_caller)) -> TemplateData:
    return TemplateData(data=await _create(request, caller, account_id, body))


@router.get(PAGED + "/{template_id}", response_model=TemplateData)
async def get_paged(account_id: int, template_id: int, request: Request,
                    caller: Caller = Depends(manage_caller)) -> TemplateData:
    return TemplateData(data=await _get(request, caller, account_id, template_id))


@router.patch(PAGED + "/{template_id}", response_model=TemplateData)
async def update_paged(account_id: int, template_id: int, request: Request, body: dict[str, Any] = Body(...),
                       caller: Caller = Depends(manage_caller)) -> TemplateData:
    return TemplateData(data=await _update(request, caller, account_id, template_id, body))


@router.delete(PAGED + "/{template_id}", status_code=204)
async def delete_paged(account_id: int, template_id: int, request: Request,
                       caller: Caller = Depends(manage_caller)) -> Response:
    return await _delete(request, caller, account_id, template_id)
