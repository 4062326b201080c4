"""MAIL FROM / RCPT TO argument parsing: strict RFC 5321 §4.1.2 paths, §4.5.3.1 length limits.

No SMTPUTF8 (not offered): any non-ASCII octet in a path is refused with `NON_ASCII_ADDRESS`.
Control characters, CR, LF and NUL never pass (the session refuses CR/NUL before we get here;
the grammar below admits no control character at all).
"""

from __future__ import annotations

import ipaddress
import re

from .. import replies
from ..replies import Reply

LOCAL_MAX = 64  # §4.5.3.1.1
DOMAIN_MAX = 255  # §4.5.3.1.2
PATH_MAX = 256  # §4.5.3.1.3, including the angle brackets
LABEL_MAX = 63

_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_SOURCE_ROUTE = re.compile(r"@[^,:]+(?:,@[^,:]+)*:")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]+")


def valid_domain(domain: str) -> bool:
    if not domain or len(domain) > DOMAIN_MAX:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        inner = domain[1:-1]
        try:
            if inner[:5].upper() == "IPV6:":
                ipaddress.IPv6Address(inner[5:])
            else:
                ipaddress.IPv4Address(inner)
        except ValueError:
            return False
        return True
    labels = domain.split(".")
    return all(len(label) <= LABEL_MAX and _LABEL.fullmatch(label) for label in labels)


def valid_mailbox(mailbox: str) -> bool:
    local, at, domain = mailbox.rpartition("@")
    if not at or not local or len(local) > LOCAL_MAX:
        return False
    if not (_DOT_STRING.fullmatch(local) or _QUOTED.fullmatch(local)):
        return False
    return valid_domain(domain)


def parse_command_path(arg: bytes, prefix: bytes) -> tuple[str, list[tuple[str, str | None]]] | Reply:
    """`FROM:<path> params` / `TO:<path> params` → (mailbox or "" for <>, [(KEY, value)])."""
    if not arg[: len(prefix)].upper() == prefix:
        return replies.SYNTAX
    rest = arg[len(prefix):].lstrip(b" ")
    if not rest.startswith(b"<"):
        return replies.RECIPIENT_SYNTAX
    end = rest.find(b">")
    if end < 0:
        return replies.RECIPIENT_SYNTAX
    raw_path, raw_params = rest[1:end], rest[end + 1:]
    if not raw_path.isascii():
        return replies.NON_ASCII_ADDRESS
    if end + 1 > PATH_MAX:
        return replies.RECIPIENT_SYNTAX
    path = raw_path.decode("ascii")
    m = _SOURCE_ROUTE.match(path)
    if m:  # §4.1.1.3 / Appendix C: accept and ignore source routes
        path = path[m.end():]
    if path and not valid_mailbox(path):
        return replies.RECIPIENT_SYNTAX
    params: list[tuple[str, str | None]] = []
    if raw_params and not raw_params.startswith(b" "):
        return replies.RECIPIENT_SYNTAX
    if not raw_params.isascii():
        return replies.BAD_PARAMETER
    for item in raw_params.decode("ascii").split():
        key, eq, value = item.partition("=")
        if not _KEYWORD.fullmatch(key) or (eq and not _VALUE.fullmatch(value)):
            return replies.BAD_PARAMETER  # RFC 3463 X.5.4: invalid command arguments
        params.append((key.upper(), value if eq else None))
    return path, params
