"""VERP return paths: make and check `bounces+TAG@<return-path host>` for one message and recipient.

The envelope sender of a delivered message is where every later non-delivery report and the
bounce of a remote MTA that accepted first goes (RFC 5321 §4.5.5 / §6.1). Encoding the message and
the recipient in the local part ("variable envelope return path") tells us, without trusting
anything in the report's body, which recipient failed. The tag carries a truncated HMAC-SHA256
(RFC 2104; truncation as in RFC 2104 §5) over both, so a report to a guessed or altered address is
recognised as forged and ignored.

The tag is base32 (RFC 4648 §6): remote MTAs may fold the case of local parts although RFC 5321
§2.4 says they must not, and base32 decodes the same in either case. Its length keeps the whole
local part at 60 octets, under the limit of 64 (RFC 5321 §4.5.3.1.1).

Pure: no storage, no clock; the key is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass

PREFIX = "bounces"
KEY_LEN = 32
_MAC_LEN = 8           # 64 bits: a forger must guess online, one SMTP transaction per try
_PAYLOAD_LEN = 16 + 8  # message UUID + recipient id
_TAG_LEN = 52          # base32 of 32 bytes without its "====" padding
_DOMAIN = b"mailtrap-smtp verp v1\x00"  # separates these MACs from any other use of the key


@dataclass(frozen=True)
class Tag:
    """Who a return path names: one recipient row of one message."""

    message_id: uuid.UUID
    recipient_id: int


def _mac(key: bytes, payload: bytes) -> bytes:
    if len(key) < 16:
        raise ValueError("the VERP key must be at least 16 bytes")
    return hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_LEN]


def _payload(tag: Tag) -> bytes:
    if not 0 <= tag.recipient_id < 2**63:
        raise ValueError(f"recipient id out of range: {tag.recipient_id}")
    return tag.message_id.bytes + tag.recipient_id.to_bytes(8, "big")


def encode_tag(key: bytes, tag: Tag) -> str:
    """The TAG part alone (lower-case base32)."""
    payload = _payload(tag)
    return base64.b32encode(payload + _mac(key, payload)).decode("ascii").rstrip("=").lower()


def make(key: bytes, tag: Tag, host: str) -> str:
    """The return path `bounces+TAG@host` for this message and recipient."""
    host = host.strip().rstrip(".").lower()
    if not host or "@" in host:
        raise ValueError(f"not a host name: {host!r}")
    return f"{PREFIX}+{encode_tag(key, tag)}@{host}"


def decode_tag(key: bytes, text: str) -> Tag | None:
    """The Tag of a TAG string if its MAC is valid, else None (never raises on any input)."""
    if len(text) != _TAG_LEN or not text.isascii():
        return None
    try:
        raw = base64.b32decode(text + "====", casefold=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b32encode(raw).decode("ascii").rstrip("=") != text.upper():
        return None  # the unused low bits of the last character set: one tag, one spelling
    payload, mac = raw[:_PAYLOAD_LEN], raw[_PAYLOAD_LEN:]
    if len(mac) != _MAC_LEN or not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    recipient_id = int.from_bytes(payload[16:], "big")
    if recipient_id >= 2**63:
        return None
    return Tag(uuid.UUID(bytes=payload[:16]), recipient_id)


def check(key: bytes, address: str) -> Tag | None:
    """The Tag named by a return path address (any host), or None if it is not a valid one.

    The host is not part of the MAC: the listener only receives mail for hosts that CNAME to it,
    and the MAC alone already binds the tag to one message and recipient.
    """
    addr = address.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    local, at, host = addr.rpartition("@")
    if not at or not host:
        return None
    if len(local) > 2 and local[0] == local[-1] == '"':
        local = local[1:-1]  # a quoted local part that needed no quoting (RFC 5321 §4.1.2)
    prefix, plus, text = local.partition("+")
    if not plus or prefix.lower() != PREFIX:
        return None
    return decode_tag(key, text)
