"""SASL responses for AUTH PLAIN (RFC 4616) and LOGIN: decoding and identity rules, no I/O.

Both mechanisms send base64 responses (RFC 4954 §4), decoded by the one `decode`. An identity
(PLAIN's authorization and authentication identities, LOGIN's user name) that holds CR, LF or NUL
is refused outright, whatever the secret: it could only be meant to shape a log line or a header.
"""

from __future__ import annotations

import binascii
import enum
import re

_FORBIDDEN = re.compile(rb"[\r\n\x00]")


class Refusal(enum.Enum):
    BAD_IDENTITY = "bad_identity"


BAD_IDENTITY = Refusal.BAD_IDENTITY


def decode(response: bytes) -> bytes | None:
    """The decoded response ("=" is the empty one, RFC 4954 §4), or None if it is not base64."""
    if response == b"=":
        return b""
    try:
        return binascii.a2b_base64(response, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def identity_ok(identity: bytes) -> bool:
    return _FORBIDDEN.search(identity) is None


def plain(decoded: bytes) -> bytes | Refusal | None:
    """The password of `authzid NUL authcid NUL passwd` (RFC 4616 §2); None if malformed (not three
    fields: a NUL in an identity or the password, refused as a wrong secret); BAD_IDENTITY for CR or
    LF in an identity."""
    fields = decoded.split(b"\0")
    if len(fields) != 3:
        return None
    authzid, authcid, passwd = fields
    if not identity_ok(authzid) or not identity_ok(authcid):
        return BAD_IDENTITY
    return passwd
