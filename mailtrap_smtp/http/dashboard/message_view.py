"""How a stored message is shown: its header fields, text and HTML parts (parsed with the standard
library), and the answers for its HTML part and its raw download. Pure but for the answers."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from starlette.responses import Response

# The message's own HTML: no script, no network (images only inline), in a sandbox of its own
# (CSP `sandbox`, and the frame's `sandbox` attribute), so nothing in a message reaches the dashboard.
MESSAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


def _parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _part(raw: bytes, subtype: str) -> str | None:
    part = _parsed(raw).get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
        return None


def html_part(raw: bytes) -> str | None:
    return _part(raw, "html")


def text_part(raw: bytes) -> str | None:
    return _part(raw, "plain")


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """The header fields in order, as sent (RFC 5322 §2.2: unfolded for display)."""
    return [(k, " ".join(str(v).split())) for k, v in _parsed(raw).raw_items()]


def as_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def html_answer(html: str) -> Response:
    return Response(html, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": MESSAGE_CSP, "X-Frame-Options": "SAMEORIGIN"})


def eml_answer(raw: bytes, name: str) -> Response:
    return Response(raw, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="{name}.eml"'})
