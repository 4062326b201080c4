"""Credential tokens: generated here, shown once, stored only as a digest.

A token looks like `mts_<public id>_<secret>`. The public id (8 hex characters) finds the row;
the secret carries 192 bits from `secrets`. Because the whole token is high-entropy, a plain
SHA-256 digest is enough to make a stolen table useless (no dictionary to try), and it costs
microseconds on the AUTH path where a password KDF would cost tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "mts"
_TOKEN = re.compile(r"^mts_([0-9a-f]{8})_([A-Za-z0-9_-]{32})$")


@dataclass(frozen=True)
class NewToken:
    token: str  # shown to the operator once, never stored
    public_id: str
    digest: bytes


def generate() -> NewToken:
    public_id = secrets.token_hex(4)
    token = f"{PREFIX}_{public_id}_{secrets.token_urlsafe(24)}"
    return NewToken(token=token, public_id=public_id, digest=digest(token))


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def public_id_of(token: str) -> str | None:
    """The row key of a well-formed token, or None for anything else (never raises)."""
    m = _TOKEN.match(token)
    return m.group(1) if m else None


def matches(token: str, stored_digest: bytes) -> bool:
    # Constant time, so response timing says nothing about how much of a guess was right.
    return hmac.compare_digest(digest(token), stored_digest)
