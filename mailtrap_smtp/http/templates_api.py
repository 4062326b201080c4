"""Email templates under Mailtrap's legacy paths `/api/accounts/{account_id}/email_templates[/{id}]`
(MAILTRAP_COMPAT.md §7.3, the Python SDK's `templates_api`): list (a bare array), create, get,
update (PATCH), delete, over the templates use case (`templates.Templates`). Templates belong to
the account: reading needs a read or admin token, changing them an admin token of every domain.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from .. import permissions
from ..core.templates import EmailTemplate, TemplateInvalid, TemplateNotFound
from . import errors
from .models import TemplateBody, TemplateOut
from .principal import Caller, context, manage_caller

router = APIRouter()
PATH = "/api/accounts/{account_id}/email_templates"


def _out(t: EmailTemplate) -> TemplateOut:
    return TemplateOut(id=t.id, uuid=str(t.uuid), name=t.name, subject=t.subject, category=t.category,
                       body_text=t.body_text, body_html=t.body_html, created_at=t.created_at.isoformat(),
                       updated_at=t.updated_at.isoformat())


def _allowed(caller: Caller, account_id: int, *, change: bool) -> None:
    if account_id != caller.principal.account_id:
        raise errors.ApiError(errors.MANAGE_FORBIDDEN)
    who = caller.principal
    if not (permissions.may_manage(who) if change else permissions.may_read(who)):
        raise errors.ApiError(errors.MANAGE_FORBIDDEN)


def _values(body: TemplateBody) -> dict[str, object]:
    if body.email_template is None:
        raise errors.ApiError(errors.manage_invalid({"email_template": ["can't be blank"]}))
    return dict(body.email_template)


@router.get(PATH, response_model=list[TemplateOut])
async def list_templates(account_id: int, request: Request,
                         caller: Caller = Depends(manage_caller)) -> list[TemplateOut]:
    _allowed(caller, account_id, change=False)
    return [_out(t) for t in await context(request).templates.list_all(account_id)]


@router.post(PATH, response_model=TemplateOut, status_code=201)
async def create_template(account_id: int, body: TemplateBody, request: Request,
                          caller: Caller = Depends(manage_caller)) -> TemplateOut:
    _allowed(caller, account_id, change=True)
    try:
        return _out(await context(request).templates.create(account_id, _values(body)))
    except TemplateInvalid as e:
        raise errors.ApiError(errors.manage_invalid(e.errors)) from None


@router.get(PATH + "/{template_id}", response_model=TemplateOut)
async def get_template(account_id: int, template_id: int, request: Request,
                       caller: Caller = Depends(manage_caller)) -> TemplateOut:
    _allowed(caller, account_id, change=False)
    try:
        return _out(await context(request).templates.get(account_id, template_id))
    except TemplateNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None


@router.patch(PATH + "/{template_id}", response_model=TemplateOut)
async def update_template(account_id: int, template_id: int, body: TemplateBody, request: Request,
                          caller: Caller = Depends(manage_caller)) -> TemplateOut:
    _allowed(caller, account_id, change=True)
    try:
        return _out(await context(request).templates.update(account_id, template_id, _values(body)))
    except TemplateNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    except TemplateInvalid as e:
        raise errors.ApiError(errors.manage_invalid(e.errors)) from None


@router.delete(PATH + "/{template_id}", status_code=204)
async def delete_template(account_id: int, template_id: int, request: Request,
                          caller: Caller = Depends(manage_caller)) -> Response:
    _allowed(caller, account_id, change=True)
    try:
        await context(request).templates.delete(account_id, template_id)
    except TemplateNotFound:
        raise errors.ApiError(errors.MANAGE_NOT_FOUND) from None
    return Response(status_code=204)
