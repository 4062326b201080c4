"""POST /api/send and POST /api/batch (MAILTRAP_COMPAT.md §2.5-2.7): translate the JSON into a MIME
message (`mime.py`) and hand it to THE submission use case, exactly as SMTP DATA does. Nothing here
decides what may be sent: the rules are `models.mail_problems`, `Submission.submit` and the
outcome table of `errors.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from .. import domainops, idempotency, metrics, permissions
from ..auth import DB_ERRORS
from ..core.templates import TemplateNotFound
from ..outcomes import Outcome, Rejected
from ..submission import Envelope, domain_of
from ..templating import TemplateError
from . import errors, mime
from .context import ApiContext
from .models import (
    MAX_BATCH_REQUESTS,
    BatchBody,
    BatchItem,
    BatchResponse,
    ErrorResponse,
    Mail,
    SendResponse,
    mail_problems,
    merged,
)
from .principal import Caller, context, rate_headers, send_caller

log = logging.getLogger(__name__)
router = APIRouter()

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 413, 415, 429, 500, 503)
}


class MailtrapJSON(JSONResponse):
    media_type = "application/json; charset=utf-8"  # what Mailtrap sends (§2.6)


async def prepare(ctx: ApiContext, caller: Caller, mail: Mail,
                  bodies: mime.BodyCache | None = None) -> tuple[Mail, bytes] | errors.SendError:
    """The mail checked (Mailtrap's rules), its template rendered, built into MIME (`bodies`: the
    batch's shared MIME trees); or the 400."""
    problems = mail_problems(mail)
    if problems:
        return errors.send_error(400, *problems)
    if mail.template_uuid is not None:
        rendered = await _rendered(ctx, caller, mail)
        if isinstance(rendered, errors.SendError):
            return rendered
        mail = rendered
    try:
        return mail, mime.build(mail, bodies)
    except mime.BuildError as e:
        return errors.send_error(400, *e.messages)


async def send_one(ctx: ApiContext, caller: Caller, mail: Mail, ip: str | None,
                   bodies: mime.BodyCache | None = None) -> list[str] | errors.SendError:
    """Accept one mail; its recipients' ids (To, Cc, Bcc order) or the error to answer with."""
    prepared = await prepare(ctx, caller, mail, bodies)
    if isinstance(prepared, errors.SendError):
        return prepared
    mail, raw = prepared
    principal, submission = caller.principal, ctx.submission
    assert mail.sender is not None and mail.sender.email is not None
    sender = mail.sender.email
    try:
        domain_id = await submission.sender_domain(principal, domain_of(sender))
        if domain_id is None:
            owned = await _owned(ctx, principal.account_id, domain_of(sender))
            # 403 only for a domain this token could send from once verified; a domain outside the
            # account or the token's scope is 401, as Mailtrap answers (COMPAT §2.6).
            if owned is not None and permissions.in_scope(principal, owned):
                return errors.DOMAIN_NOT_VERIFIED
            return errors.UNAUTHORIZED
        # smtputf8: JSON text is Unicode, so the API's mail is internationalised by nature (RFC 6531 §3.4).
        envelope = Envelope(mail_from=sender, sender_domain_id=domain_id,
                            recipients=mime.envelope_recipients(mail), client_ip=ip, smtputf8=True)
        accepted = await submission.submit(principal, envelope, raw)
    except Rejected as r:
        metrics.MESSAGES_REJECTED.labels(r.outcome.name).inc()
        return errors.for_outcome(r.outcome)
    metrics.MESSAGES_ACCEPTED.labels(principal.stream).inc()
    metrics.RECIPIENTS_ACCEPTED.labels(principal.stream).inc(accepted.recipients)
    return [str(i) for i in accepted.recipient_ids]


async def _rendered(ctx: ApiContext, caller: Caller, mail: Mail) -> Mail | errors.SendError:
    """The mail with the template's subject, text, html and category rendered from its variables."""
    assert mail.template_uuid is not None
    try:
        r = await ctx.templates.render(caller.principal.account_id, mail.template_uuid, mail.template_variables)
    except TemplateNotFound:
        return errors.TEMPLATE_NOT_FOUND
    except TemplateError as e:
        return errors.send_error(400, str(e))
    except DB_ERRORS:
        log.warning("API send: database unavailable", exc_info=True)
        return errors.for_outcome(Outcome.TEMPORARILY_UNAVAILABLE)
    return mail.model_copy(update={"subject": r.subject, "text": r.text, "html": r.html,
                                   "category": r.category or None, "template_uuid": None})


async def _owned(ctx: ApiContext, account_id: int, domain: str) -> int | None:
    try:
        return await domainops.owned_by(ctx.pool, account_id, domain)
    except DB_ERRORS:
        log.warning("API send: database unavailable", exc_info=True)
        raise Rejected(Outcome.TEMPORARILY_UNAVAILABLE) from None


def success_headers(caller: Caller, charged: int) -> dict[str, str]:
    # Advisory, as of this request's authentication (the commit itself re-checks the limit).
    quota = max(0, caller.principal.quota_remaining_at_auth - charged)
    return {**rate_headers(caller.rate), "X-Quota-Remaining": str(quota)}


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


async def once(request: Request, caller: Caller, run: Callable[[], Awaitable[MailtrapJSON]]) -> MailtrapJSON:
    """`run()` at most once per `Idempotency-Key` of this token (`idempotency.py`); without the
    header, just `run()`."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return await run()
    if not idempotency.valid_key(key):
        raise errors.ApiError(errors.IDEMPOTENCY_KEY_INVALID, rate_headers(caller.rate))
    pool, credential_id = context(request).pool, caller.principal.credential_id
    try:
        claimed = await idempotency.claim(pool, credential_id, key)
    except Rejected as r:
        raise errors.ApiError(errors.for_outcome(r.outcome), rate_headers(caller.rate)) from None
    if claimed.claim is idempotency.Claim.REPLAY:
        assert claimed.status is not None
        return MailtrapJSON(claimed.response, status_code=claimed.status,
                            headers={**rate_headers(caller.rate), "Idempotent-Replayed": "true"})
    if claimed.claim is idempotency.Claim.IN_FLIGHT:
        raise errors.ApiError(errors.IDEMPOTENCY_IN_FLIGHT, rate_headers(caller.rate))
    try:
        response = await run()
    except errors.ApiError as e:
        if e.error.status >= 500:  # "try again": the retry must run
            await _settle(pool, credential_id, key, None)
        else:
            await _settle(pool, credential_id, key, (e.error.status, e.error.body()))
        raise
    except BaseException:
        await _settle(pool, credential_id, key, None)
        raise
    await _settle(pool, credential_id, key, (response.status_code, json.loads(bytes(response.body))))
    return response


async def _settle(pool: Any, credential_id: int, key: str, answer: tuple[int, Any] | None) -> None:
    try:
        if answer is None:
            await idempotency.release(pool, credential_id, key)
        else:
            await idempotency.finish(pool, credential_id, key, *answer)
    except DB_ERRORS:
        # The key stays in flight: repeats get 409 until it expires, never a second message.
        log.warning("idempotency key not settled", exc_info=True)


@router.post("/api/send", response_model=SendResponse, responses=_ERROR_RESPONSES, response_class=MailtrapJSON)
async def send(mail: Mail, request: Request, caller: Caller = Depends(send_caller)) -> MailtrapJSON:
    async def run() -> MailtrapJSON:
        result = await send_one(context(request), caller, mail, client_ip(request))
        if isinstance(result, errors.SendError):
            raise errors.ApiError(result, rate_headers(caller.rate))
        body = SendResponse(message_ids=result)
        return MailtrapJSON(body.model_dump(), headers=success_headers(caller, len(result)))

    return await once(request, caller, run)


@router.post("/api/batch", response_model=BatchResponse, responses=_ERROR_RESPONSES, response_class=MailtrapJSON)
async def batch(body: BatchBody, request: Request, caller: Caller = Depends(send_caller)) -> MailtrapJSON:
    return await once(request, caller, lambda: _batch(body, request, caller))


async def _batch(body: BatchBody, request: Request, caller: Caller) -> MailtrapJSON:
    if not body.requests:
        raise errors.ApiError(errors.send_error(400, "empty field: 'requests'"), rate_headers(caller.rate))
    if len(body.requests) > MAX_BATCH_REQUESTS:
        raise errors.ApiError(errors.send_error(400, f"'requests' must have at most {MAX_BATCH_REQUESTS} items"),
                              rate_headers(caller.rate))
    ctx, ip = context(request), client_ip(request)
    mails = [merged(body.base, r) for r in body.requests]
    # Concurrently, so the group commit (store.messages.AcceptBatcher) stores them in as few
    # statements as it can; each is still accepted or refused on its own, first come first served.
    bodies = mime.BodyCache()
    results = await asyncio.gather(*(send_one(ctx, caller, m, ip, bodies) for m in mails))
    items = [BatchItem(success=False, errors=list(r.messages)) if isinstance(r, errors.SendError)
             else BatchItem(success=True, message_ids=r) for r in results]
    charged = sum(len(r) for r in results if not isinstance(r, errors.SendError))
    response = BatchResponse(responses=items)
    return MailtrapJSON(response.model_dump(exclude_none=True), headers=success_headers(caller, charged))
