"""MAIL FROM / RCPT TO arguments: `<path>` and its parameters (RFC 5321 §4.1.2, RFC 6531 §3.3).

What a mailbox may be is `mailbox.py` (the one check, shared with the HTTP API); this module only
cuts the command's argument into the path and its ESMTP parameters and words the refusals.
A non-ASCII octet in a path is refused unless the transaction declared SMTPUTF8 (RFC 6531 §3.4):
`SMTPUTF8_REQUIRED`, 553 5.6.7 (RFC 6531 §3.5), or `NON_ASCII_ADDRESS` where SMTPUTF8 is not
offered at all (the inbound listener). Declared, the path must be valid UTF-8 (Python's strict
decoder refuses overlong forms, encoded surrogates and truncated sequences, RFC 3629 §3).
Control characters, CR, LF and NUL never pass (the session refuses CR/NUL before we get here; the
grammar admits no control character at all).
"""

from __future__ import annotations

import re

from .. import mailbox, replies
from ..replies import Reply

PATH_MAX = 256  # §4.5.3.1.3, including the angle brackets

_SOURCE_ROUTE = re.compile(r"@[^,:]+(?:,@[^,:]+)*:")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]+")

Params = list[tuple[str, str | None]]

# How each refusal of `mailbox.problem` is worded, for MAIL (sender) and RCPT (recipient).
_SENDER_REPLIES = {
    mailbox.Problem.SYNTAX: replies.SENDER_SYNTAX,
    mailbox.Problem.TOO_LONG: replies.SENDER_TOO_LONG,
    mailbox.Problem.NEEDS_SMTPUTF8: replies.SMTPUTF8_REQUIRED,
}
_RECIPIENT_REPLIES = {
    mailbox.Problem.SYNTAX: replies.RECIPIENT_SYNTAX,
    mailbox.Problem.TOO_LONG: replies.RECIPIENT_TOO_LONG,
    mailbox.Problem.NEEDS_SMTPUTF8: replies.SMTPUTF8_REQUIRED,
}


def split_command_path(arg: bytes, prefix: bytes) -> tuple[bytes, Params] | Reply:
    """`FROM:<path> params` / `TO:<path> params` → (the path's raw bytes, [(KEY, value)])."""
    if not arg[: len(prefix)].upper() == prefix:
        return replies.SYNTAX
    rest = arg[len(prefix):].lstrip(b" ")
    if not rest.startswith(b"<"):
        return replies.RECIPIENT_SYNTAX
    end = rest.find(b">")
    if end < 0:
        return replies.RECIPIENT_SYNTAX
    raw_path, raw_params = rest[1:end], rest[end + 1:]
    params: Params = []
    if raw_params and not raw_params.startswith(b" "):
        return replies.RECIPIENT_SYNTAX
    if not raw_params.isascii():
        return replies.BAD_PARAMETER
    for item in raw_params.decode("ascii").split():
        key, eq, value = item.partition("=")
        if not _KEYWORD.fullmatch(key) or (eq and not _VALUE.fullmatch(value)):
            return replies.BAD_PARAMETER  # RFC 3463 X.5.4: invalid command arguments
        params.append((key.upper(), value if eq else None))
    return raw_path, params


def parse_path(raw_path: bytes, *, utf8: bool | None, sender: bool = False) -> str | Reply:
    """The mailbox of a path ("" for <>), or the refusal.

    `utf8`: True when the transaction declared SMTPUTF8, False when it did not, None when this
    server does not offer SMTPUTF8 (then a non-ASCII path is `NON_ASCII_ADDRESS`).
    """
    words = _SENDER_REPLIES if sender else _RECIPIENT_REPLIES
    if not raw_path.isascii():
        if utf8 is None:
            return replies.NON_ASCII_ADDRESS
        if not utf8:
            return replies.SMTPUTF8_REQUIRED
    if len(raw_path) + 2 > PATH_MAX:  # octets (RFC 5321 §4.5.3.1.3), not characters
        return words[mailbox.Problem.TOO_LONG]
    try:
        path = raw_path.decode("utf-8")
    except UnicodeDecodeError:
        return replies.SENDER_NOT_UTF8 if sender else replies.RECIPIENT_NOT_UTF8
    m = _SOURCE_ROUTE.match(path)
    if m:  # §4.1.1.3 / Appendix C: accept and ignore source routes
        path = path[m.end():]
    problem = mailbox.problem(path, utf8=bool(utf8)) if path else None
    return words[problem] if problem is not None else path


def parse_command_path(arg: bytes, prefix: bytes, *, utf8: bool | None = None) -> tuple[str, Params] | Reply:
    """`split_command_path` then `parse_path`: (mailbox or "" for <>, [(KEY, value)])."""
    split = split_command_path(arg, prefix)
    if isinstance(split, Reply):
        return split
    raw_path, params = split
    path = parse_path(raw_path, utf8=utf8, sender=prefix == b"FROM:")
    return path if isinstance(path, Reply) else (path, params)
