"""`/unsubscribe/{token}`: the one-click unsubscribe URL of bulk messages (RFC 8058, `list_unsubscribe.py`).

POST with the body `List-Unsubscribe=One-Click` (RFC 8058 §3.1: sent as multipart/form-data or
application/x-www-form-urlencoded, no cookies or authorization) unsubscribes: 200. GET only shows
a page whose form makes that POST: mail scanners and link previewers fetch URLs they find, so a GET
must never change anything (RFC 8058 §1, RFC 9110 §9.2.1 "safe"). A token that is not ours (bad
MAC, not a token, a message no longer stored) is 404 with the API's JSON body and nothing recorded.
"""

from __future__ import annotations

import email.parser
import email.policy
import urllib.parse

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..core import unsubscribe
from ..list_unsubscribe import ListUnsubscribe
from . import errors
from .principal import context

router = APIRouter()

_KEY, _VALUE = "List-Unsubscribe", "One-Click"
# The token is in the URL: keep it out of caches and Referer headers.
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; form-action 'self'"}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><p>Stop receiving these messages at this address?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form></body></html>
"""
_DONE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribed</title></head>
<body><p>You are unsubscribed.</p></body></html>
"""
BAD_BODY = errors.send_error(400, "Body must be List-Unsubscribe=One-Click")


def _links(request: Request) -> ListUnsubscribe:
    links = context(request).list_unsubscribe
    if links is None:
        raise errors.ApiError(errors.NOT_FOUND)
    return links


def one_click_body(content_type: str, body: bytes) -> bool:
    """Whether the body is the form field `List-Unsubscribe=One-Click`, in either encoding §3.1 allows."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        try:
            fields = urllib.parse.parse_qs(body.decode("ascii"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return False
        return fields.get(_KEY) == [_VALUE]
    if ctype == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not msg.is_multipart():
            return False
        values = [part.get_payload(decode=True) for part in msg.iter_parts()
                  if part.get_param("name", header="content-disposition") == _KEY]
        return values == [_VALUE.encode("ascii")]
    return False


@router.get("/unsubscribe/{token}")
async def page(request: Request, token: str) -> HTMLResponse:
    if not unsubscribe.valid(_links(request).key(), token):
        raise errors.ApiError(errors.NOT_FOUND)
    return HTMLResponse(_PAGE, headers=_HEADERS)


@router.post("/unsubscribe/{token}")
async def post(request: Request, token: str) -> HTMLResponse:
    key = _links(request).key()
    if not unsubscribe.valid(key, token):
        raise errors.ApiError(errors.NOT_FOUND)
    if not one_click_body(request.headers.get("content-type", ""), await request.body()):
        raise errors.ApiError(BAD_BODY)
    if not await unsubscribe.one_click(context(request).pool, key, token):
        raise errors.ApiError(errors.NOT_FOUND)
    return HTMLResponse(_DONE, headers=_HEADERS)
