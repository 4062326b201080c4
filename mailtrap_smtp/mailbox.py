"""What an email address may be: the one check SMTP (MAIL/RCPT) and the HTTP API both apply.

Syntax is RFC 5321 §4.1.2 (dot-string or quoted local part, LDH domain or address literal),
extended for internationalised addresses by RFC 6531 §3.3: `atext` and `qtextSMTP` admit any
non-ASCII character, and a domain may be written in U-labels. Lengths are RFC 5321 §4.5.3.1
limits, counted in octets of the UTF-8 form, not characters (64 before the @, 255 after it, 254 in
all: the path is 256 with its angle brackets).

Domains are compared as A-labels (IDNA 2008, RFC 5891, with the UTS #46 non-transitional mapping,
as `domains.normalize_domain` stores sending domains): `bücher.example`, `Bücher.example` and
`xn--bcher-kva.example` are one domain, for the sender-domain check and for the MX lookup alike.

Beyond the grammar, a non-ASCII character that cannot be read safely is refused in a local part:
controls (C0/C1), format characters such as bidirectional overrides and zero-width spaces (except
the joiners ZWJ/ZWNJ that some scripts need, RFC 5892 Appendix A.1/A.2), spaces of every kind,
private-use, surrogate and unassigned code points. A U-label domain must pass IDNA 2008 itself
(which refuses symbols, a leading combining mark, mixed-direction labels: RFC 5893).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import unicodedata

import idna

LOCAL_MAX = 64  # octets, RFC 5321 §4.5.3.1.1
DOMAIN_MAX = 255  # octets, §4.5.3.1.2
MAILBOX_MAX = 254  # octets: the path (§4.5.3.1.3, 256) without its angle brackets
LABEL_MAX = 63

_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_UTF8_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]"  # RFC 6531 §3.3: atext =/ UTF8-non-ascii
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_UTF8_DOT_STRING = re.compile(rf"{_UTF8_ATEXT}+(?:\.{_UTF8_ATEXT}+)*")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_UTF8_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# Unicode general categories never allowed in a local part (see the module docstring).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
_JOINERS = frozenset({"\u200c", "\u200d"})


class Problem(enum.Enum):
    """Why an address is refused; each adapter words it (replies.py, the API's texts)."""

    SYNTAX = "syntax"
    TOO_LONG = "too_long"  # an RFC 5321 §4.5.3.1 octet limit
    NEEDS_SMTPUTF8 = "needs_smtputf8"  # non-ASCII where internationalised mail was not declared


@functools.lru_cache(maxsize=4096)
def _to_ascii(domain: str) -> str | None:
    """IDNA 2008 + UTS #46 of a non-ASCII domain, or None when it has none. Cached: the idna
    package is pure Python (tens of microseconds a name), and one domain is asked for at MAIL,
    RCPT, the From: check and delivery."""
    try:
        return str(idna.encode(domain, uts46=True, transitional=False).decode("ascii"))
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def a_label(domain: str) -> str:
    """`domain` in lower-case A-labels (its comparison and DNS form); an ASCII or unconvertible
    domain comes back lower-cased (it then matches no A-label it is not)."""
    text = domain.rstrip(".")
    if text.isascii():
        return text.lower()
    return _to_ascii(text) or text.lower()


def suppression_form(address: str) -> str:
    """The address as suppressions store and compare it (always through SQL `lower()`).

    The domain in lower-case A-labels when it is not ASCII, as RCPT and delivery compare it, so
    `a@bücher.example` and `a@xn--bcher-kva.example` are one suppression; the local part as given
    (RFC 6531 §3.2: it has no other form) but, when it is not ASCII, lower-cased here with Unicode's
    mapping. Suppressions ignore case, as they always have for ASCII: PostgreSQL's `lower()` folds
    only ASCII under the C locale and all of Unicode under a UTF-8 one, so a non-ASCII local part
    reaches it already lower-case and matches alike on every database. An ASCII address comes back
    unchanged (its spelling is what the Suppression object shows).
    """
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower()
    if not local.isascii():
        local = local.lower()
    return f"{local}@{domain if domain.isascii() else a_label(domain)}"


def local_part_is_ascii(address: str) -> bool:
    """Whether the address can travel without SMTPUTF8 once its domain is in A-labels (RFC 6531 §3.2:
    only the domain can be converted; a non-ASCII local part has no ASCII form)."""
    return address.rpartition("@")[0].isascii()


def valid_domain(domain: str, *, utf8: bool = False) -> bool:
    """An LDH domain, an address literal (RFC 5321 §4.1.3), or with `utf8` a U-label domain that
    IDNA 2008 can convert (RFC 6531 §3.3: `sub-domain =/ U-label`)."""
    ascii = domain.isascii()
    if not domain or (len(domain) if ascii else len(domain.encode("utf-8", "surrogatepass"))) > DOMAIN_MAX:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        return _valid_literal(domain[1:-1])
    if not ascii:
        converted = _to_ascii(domain) if utf8 else None
        if converted is None:
            return False
        domain = converted
    labels = domain.split(".")
    return all(len(label) <= LABEL_MAX and _LABEL.fullmatch(label) for label in labels)


def _valid_literal(inner: str) -> bool:
    try:
        if inner[:5].upper() == "IPV6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def _safe_characters(text: str) -> bool:
    return all(c.isascii() or c in _JOINERS or unicodedata.category(c) not in _UNSAFE_CATEGORIES
               for c in text)


def _valid_local(local: str, *, utf8: bool) -> bool:
    if local.isascii():
        return bool(_DOT_STRING.fullmatch(local) or _QUOTED.fullmatch(local))
    if not utf8 or not _safe_characters(local):
        return False
    return bool(_UTF8_DOT_STRING.fullmatch(local) or _UTF8_QUOTED.fullmatch(local))


def problem(address: str, *, utf8: bool) -> Problem | None:
    """Why `address` (local@domain, no angle brackets) is not a mailbox we accept, or None.

    `utf8`: the sender declared internationalised mail (SMTP's SMTPUTF8 parameter, RFC 6531 §3.4;
    always so for the JSON API, whose text is Unicode), so non-ASCII is allowed where RFC 6531
    allows it.
    """
    ascii = address.isascii()
    if not utf8 and not ascii:
        return Problem.NEEDS_SMTPUTF8
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return Problem.SYNTAX
    if ascii:
        local_octets, octets = len(local), len(address)
    else:  # surrogatepass: a lone surrogate (possible in JSON text) is measured, then refused as syntax
        local_octets = len(local.encode("utf-8", "surrogatepass"))
        octets = len(address.encode("utf-8", "surrogatepass"))
    if local_octets > LOCAL_MAX or octets > MAILBOX_MAX:
        return Problem.TOO_LONG
    if not _valid_local(local, utf8=utf8) or not valid_domain(domain, utf8=utf8):
        return Problem.SYNTAX
    return None


def valid_mailbox(address: str, *, utf8: bool = False) -> bool:
    return problem(address, utf8=utf8) is None
