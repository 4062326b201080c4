"""JSON mail → MIME message bytes, with the standard library's `email` package. Pure: no I/O.

Structure (RFC 2045-2049, RFC 2387): text → text/plain; html → text/html; both →
multipart/alternative; inline attachments → multipart/related around the html part, each with
`Content-ID: <content_id>`; other attachments → multipart/mixed. `to` and `cc` become header
fields, `bcc` only envelope recipients. `headers` are written verbatim (RFC 2047 encoded words only
when a value is not ASCII), folded only at existing spaces, which unfolding restores exactly
(RFC 5322 §2.2.3). `category` and `custom_variables` travel as the `X-MT-Category` /
`X-MT-Custom-Variables` fields that submission reads and strips, the same path as SMTP.
"""

from __future__ import annotations

import base64
import binascii
import email.header
import json
from collections.abc import Sequence
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP

from .models import Address, Attachment, Mail

MAX_LINE = 998  # RFC 5322 §2.1.1
CUSTOM_VARIABLES_MAX = 1000  # bytes of JSON; larger is ignored, as over SMTP (MAILTRAP_COMPAT.md §2.5)
# Fields the builder writes itself from the JSON; a `headers` entry may not replace them.
RESERVED = frozenset({"from", "to", "cc", "bcc", "subject", "reply-to", "mime-version", "content-type",
                      "content-transfer-encoding", "x-mt-category", "x-mt-custom-variables"})


class BuildError(Exception):
    """The mail cannot be built; `messages` are Mailtrap-style error texts (400)."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)


def _header_address(a: Address) -> HeaderAddress:
    local, _, domain = (a.email or "").rpartition("@")
    return HeaderAddress(display_name=a.name or "", username=local, domain=domain)


def fold(name: str, value: str) -> bytes | None:
    """`Name: value` CRLF, folded before spaces so no line passes 998 characters; None if impossible."""
    if not value.isascii():
        value = email.header.Header(value, "utf-8", header_name=name).encode(maxlinelen=76)
        value = value.replace("\n", "")  # encoded words already carry their own folding spaces
    line = f"{name}: {value}"
    out: list[str] = []
    while len(line) > MAX_LINE:
        cut = line.rfind(" ", 1, MAX_LINE + 1)
        if cut <= len(name) + 1:
            return None
        out.append(line[:cut])
        line = line[cut:]
    out.append(line)
    return ("\r\n".join(out) + "\r\n").encode("ascii")


def _decoded_content(a: Attachment) -> bytes:
    text = "".join((a.content or "").split())  # wrapped base64 (RFC 2045 §6.8) is accepted
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BuildError([f"attachment '{a.filename}' content is not valid base64"]) from None


def _mime_type(a: Attachment) -> tuple[str, str]:
    maintype, _, subtype = (a.type or "application/octet-stream").partition(";")[0].strip().partition("/")
    return maintype, subtype


def _body(mail: Mail) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    if mail.text:
        msg.set_content(mail.text)
        if mail.html:
            msg.add_alternative(mail.html, subtype="html")
    elif mail.html:
        msg.set_content(mail.html, subtype="html")
    return msg


def _attach(msg: EmailMessage, attachments: Sequence[Attachment]) -> None:
    inline = [a for a in attachments if a.disposition == "inline"]
    html = msg.get_body(("html",)) if mail_has_html(msg) else None
    for a in inline:
        maintype, subtype = _mime_type(a)
        cid = f"<{a.content_id}>" if a.content_id else None
        if html is not None:
            html.add_related(_decoded_content(a), maintype, subtype, cid=cid, filename=a.filename,
                             disposition="inline")
        else:
            msg.add_attachment(_decoded_content(a), maintype, subtype, cid=cid, filename=a.filename,
                               disposition="inline")
    for a in attachments:
        if a.disposition != "inline":
            maintype, subtype = _mime_type(a)
            cid = f"<{a.content_id}>" if a.content_id else None
            msg.add_attachment(_decoded_content(a), maintype, subtype, cid=cid, filename=a.filename)


def mail_has_html(msg: EmailMessage) -> bool:
    return msg.get_body(("html",)) is not None


def _fields(mail: Mail) -> list[bytes]:
    out: list[bytes] = []
    problems: list[str] = []

    def add(name: str, value: str, problem: str) -> None:
        line = fold(name, value)
        if line is None:
            problems.append(problem)
        else:
            out.append(line)

    for name, value in (mail.headers or {}).items():
        if name.lower() in RESERVED:
            problems.append(f"header '{name}' is not allowed: it is set from the mail's fields")
        else:
            add(name, value, f"header '{name}' is too long")
    if mail.category:
        add("X-MT-Category", mail.category, "'category' is invalid")
    if mail.custom_variables:
        encoded = json.dumps(mail.custom_variables, separators=(", ", ": "))
        if len(encoded) <= CUSTOM_VARIABLES_MAX:  # larger is ignored, as over SMTP
            add("X-MT-Custom-Variables", encoded, "'custom_variables' is invalid")
    if problems:
        raise BuildError(problems)
    return out


def build(mail: Mail) -> bytes:
    """The message as CRLF bytes, ready for `Submission.submit` (which adds Date and Message-ID)."""
    msg = _body(mail)
    if mail.attachments:
        _attach(msg, mail.attachments)
    assert mail.sender is not None  # mail_problems() ran first
    msg["From"] = _header_address(mail.sender)
    if mail.to:
        msg["To"] = [_header_address(a) for a in mail.to]
    if mail.cc:
        msg["Cc"] = [_header_address(a) for a in mail.cc]
    if mail.reply_to is not None:
        msg["Reply-To"] = _header_address(mail.reply_to)
    if mail.subject:
        msg["Subject"] = mail.subject
    extra = _fields(mail)
    raw = msg.as_bytes(policy=SMTP)
    head, sep, body = raw.partition(b"\r\n\r\n")
    return b"".join([head, b"\r\n", *extra, b"\r\n", body]) if sep else raw + b"".join(extra)


def envelope_recipients(mail: Mail) -> list[str]:
    """To, then Cc, then Bcc: the order `message_ids` follow (MAILTRAP_COMPAT.md §2.6)."""
    return [a.email for a in (*(mail.to or []), *(mail.cc or []), *(mail.bcc or [])) if a.email]
