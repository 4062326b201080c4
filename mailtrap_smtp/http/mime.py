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
import email.utils
import json
import re
import uuid
from collections.abc import Sequence
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from typing import TypeAlias

from .models import Address, Attachment, Mail

MAX_LINE = 998  # RFC 5322 §2.1.1
# The legacy (compat32) classes: they take header values as given instead of parsing each one into
# a structured header (most of EmailMessage's cost); the fields that need encoding are written by
# `fold` and `_address`. CRLF line ends (RFC 5322 §2.1), and no ">From " mangling of body lines.
_POLICY = compat32.clone(linesep="\r\n", mangle_from_=False)
CUSTOM_VARIABLES_MAX = 1000  # bytes of JSON; larger is ignored, as over SMTP (MAILTRAP_COMPAT.md §2.5)
# Fields the builder writes itself from the JSON; a `headers` entry may not replace them.
RESERVED = frozenset({"from", "to", "cc", "bcc", "subject", "reply-to", "mime-version", "content-type",
                      "content-transfer-encoding", "x-mt-category", "x-mt-custom-variables"})


class BuildError(Exception):
    """The mail cannot be built; `messages` are Mailtrap-style error texts (400)."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)


def _address(a: Address) -> str:
    # formataddr encodes a non-ASCII display name as an RFC 2047 encoded word and quotes specials.
    name, addr = a.name or "", a.email or ""
    if addr.isascii():
        return email.utils.formataddr((name, addr), charset="utf-8")
    # An internationalised address (RFC 6531) has no ASCII form: it is written in UTF-8 as it is
    # (RFC 6532 §3.2; RFC 2047 §5 forbids encoded words in an addr-spec), the name still encoded.
    return f"{email.utils.formataddr((name, ''), charset='utf-8')[:-2]}<{addr}>" if name else addr


def fold(name: str, value: str, *, utf8: bool = False) -> bytes | None:
    """`Name: value` CRLF, folded before spaces so no line passes 998 octets; None if impossible.

    Non-ASCII is written as RFC 2047 encoded words, or with `utf8` as UTF-8 itself (RFC 6532 §3.2,
    for the address fields of an internationalised address; the limit is then in octets, §3.4).
    """
    if not value.isascii() and not utf8:
        value = email.header.Header(value, "utf-8", header_name=name).encode(maxlinelen=76)
        value = value.replace("\n", "")  # encoded words already carry their own folding spaces
    line = f"{name}: {value}".encode()
    out: list[bytes] = []
    while len(line) > MAX_LINE:
        cut = line.rfind(b" ", 1, MAX_LINE + 1)  # a space is never inside a UTF-8 sequence
        if cut <= len(name) + 1:
            return None
        out.append(line[:cut])
        line = line[cut:]
    out.append(line)
    return b"\r\n".join(out) + b"\r\n"


def _decoded_content(a: Attachment) -> bytes:
    text = "".join((a.content or "").split())  # wrapped base64 (RFC 2045 §6.8) is accepted
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BuildError([f"attachment '{a.filename}' content is not valid base64"]) from None


def _mime_type(a: Attachment) -> tuple[str, str]:
    maintype, _, subtype = (a.type or "application/octet-stream").partition(";")[0].strip().partition("/")
    return maintype, subtype


def _base64(data: bytes) -> str:
    # binascii in C, 76 characters a line (RFC 2045 §6.8), instead of email's line-by-line encoder.
    return base64.encodebytes(data).decode("ascii")


def _seven_bit(body: str) -> bool:
    return body.isascii() and max(map(len, body.splitlines() or [""])) <= MAX_LINE


def _text(body: str, subtype: str) -> Message:
    """7bit when the text is ASCII in short lines (read as is), else UTF-8 in base64 (no line can
    pass 998 characters then: RFC 5322 §2.1.1)."""
    if _seven_bit(body):
        return MIMEText(body, subtype, "us-ascii")
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(_base64(body.encode("utf-8")))
    return part


def _boundary() -> str:
    # A random boundary (RFC 2046 §5.1.1) spares the generator its search of every part for a
    # collision; 128 random bits never occur in the parts by chance.
    return f"=_{uuid.uuid4().hex}"


def _multipart(subtype: str, parts: list[Message]) -> Message:
    return MIMEMultipart(subtype, boundary=_boundary(), _subparts=parts)


def _part(a: Attachment, disposition: str) -> Message:
    maintype, subtype = _mime_type(a)
    part = MIMEBase(maintype, subtype)
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(_base64(_decoded_content(a)))
    filename = a.filename or ""
    part.add_header("Content-Disposition", disposition,
                    filename=filename if filename.isascii() else ("utf-8", "", filename))  # RFC 2231
    if a.content_id:
        part["Content-ID"] = f"<{a.content_id}>"
    return part


def _tree(mail: Mail) -> Message:
    attachments = mail.attachments or []
    inline = [a for a in attachments if a.disposition == "inline"]
    html: Message | None = _text(mail.html, "html") if mail.html else None
    if html is not None and inline:
        html = _multipart("related", [html, *(_part(a, "inline") for a in inline)])
        inline = []
    text = _text(mail.text, "plain") if mail.text else None
    if text is not None and html is not None:
        body: Message = _multipart("alternative", [text, html])
    else:
        body = text or html  # type: ignore[assignment]  # mail_problems() ensured one of them
    rest = [_part(a, "inline") for a in inline] + [_part(a, "attachment") for a in attachments
                                                    if a.disposition != "inline"]
    if rest:
        body = _multipart("mixed", [body, *rest])
    return body


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


def _addressing(mail: Mail) -> list[bytes]:
    assert mail.sender is not None  # mail_problems() ran first
    fields = [("From", _address(mail.sender))]
    if mail.to:
        fields.append(("To", ", ".join(_address(a) for a in mail.to)))
    if mail.cc:
        fields.append(("Cc", ", ".join(_address(a) for a in mail.cc)))
    if mail.reply_to is not None:
        fields.append(("Reply-To", _address(mail.reply_to)))
    if mail.subject:
        fields.append(("Subject", mail.subject))
    out = []
    for name, value in fields:
        # Only an internationalised address leaves _address non-ASCII; a Subject is encoded.
        line = fold(name, value, utf8=name != "Subject")
        if line is None:
            raise BuildError([f"'{name.lower()}' is too long"])
        out.append(line)
    return out


# What the MIME tree (its own MIME-Version/Content-Type fields and every part) is made of: the
# text, the html and the attachments. The addressing and `headers` fields are not part of it.
BodyKey: TypeAlias = tuple[str | None, str | None, tuple[tuple[str | None, ...], ...]]


class BodyCache:
    """The serialised MIME trees of one batch call, by `BodyKey`: a batch's requests share their
    `base` content and differ only in recipients, so the tree is generated once per call instead of
    once per request (the generator is most of a build's cost). Scoped to one call, so nothing is
    kept beyond it; messages built from one entry share its multipart boundary, which RFC 2046
    §5.1.1 asks only to be absent from the parts they enclose.
    """

    def __init__(self) -> None:
        self._trees: dict[BodyKey, bytes] = {}

    def tree(self, mail: Mail) -> bytes:
        key: BodyKey = (mail.text, mail.html, tuple(
            (a.content, a.filename, a.type, a.disposition, a.content_id) for a in mail.attachments or ()))
        raw = self._trees.get(key)
        if raw is None:  # a BuildError is not kept: every request with that content gets it
            raw = self._trees[key] = _serialised_tree(mail)
        return raw


def _serialised_tree(mail: Mail) -> bytes:
    if not mail.attachments:
        return _text_tree(mail)
    return _tree(mail).as_bytes(policy=_POLICY)


# The generator's line ends (email.generator.NLCRE): each is written as CRLF.
_NEWLINES = re.compile(r"\r\n|\r|\n")


def _text_leaf(body: str, subtype: str) -> bytes:
    if _seven_bit(body):
        crlf_body = _NEWLINES.sub("\r\n", body)
        return (f'Content-Type: text/{subtype}; charset="us-ascii"\r\nMIME-Version: 1.0\r\n'
                f"Content-Transfer-Encoding: 7bit\r\n\r\n{crlf_body}").encode("ascii")
    head = (f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii")
    return head + base64.encodebytes(body.encode("utf-8")).replace(b"\n", b"\r\n")


def _text_tree(mail: Mail) -> bytes:
    """What `_tree(mail).as_bytes(policy=_POLICY)` writes for a mail without attachments, byte for
    byte (tests/test_http_mime.py compares the two), written directly: the generator's line-by-line
    writing and header folding were most of an /api/send request's Python time."""
    text = _text_leaf(mail.text, "plain") if mail.text else None
    html = _text_leaf(mail.html, "html") if mail.html else None
    if text is None or html is None:
        leaf = text or html
        assert leaf is not None  # mail_problems() ensured one of them
        return leaf
    b = _boundary().encode("ascii")
    # The Content-Type field folds before boundary= exactly as compat32 folds it at 78 columns.
    head = b'Content-Type: multipart/alternative;\r\n boundary="' + b + b'"\r\nMIME-Version: 1.0\r\n\r\n'
    return b"".join([head, b"--", b, b"\r\n", text, b"\r\n--", b, b"\r\n", html, b"\r\n--", b, b"--\r\n"])


def build(mail: Mail, bodies: BodyCache | None = None) -> bytes:
    """The message as CRLF bytes, ready for `Submission.submit` (which adds Date and Message-ID).
    `bodies`: the batch's cache of MIME trees, if the mail is one of a batch."""
    extra = [*_addressing(mail), *_fields(mail)]
    raw = _serialised_tree(mail) if bodies is None else bodies.tree(mail)
    head, sep, body = raw.partition(b"\r\n\r\n")
    return b"".join([head, b"\r\n", *extra, b"\r\n", body]) if sep else raw + b"".join(extra)


def envelope_recipients(mail: Mail) -> list[str]:
    """To, then Cc, then Bcc: the order `message_ids` follow (MAILTRAP_COMPAT.md §2.6)."""
    return [a.email for a in (*(mail.to or []), *(mail.cc or []), *(mail.bcc or [])) if a.email]
