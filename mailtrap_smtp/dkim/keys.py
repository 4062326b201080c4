"""DKIM keys and the DNS record that publishes each one's public half (RFC 6376 §3.6.1, RFC 8463 §4.2).

Nothing in this module logs, and no exception message contains key material.
"""

from __future__ import annotations

import base64
import re
from typing import TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"
#: Signing algorithms we produce.  rsa-sha1 is deliberately absent: RFC 8301
#: §3.1 says signers MUST NOT use it.
ALGORITHMS: tuple[str, ...] = (RSA_SHA256, ED25519_SHA256)

# k= tag of the key record for each a= algorithm (RFC 6376 §3.6.1, RFC 8463 §4.2).
_KEY_TYPE = {RSA_SHA256: "rsa", ED25519_SHA256: "ed25519"}

_RSA_KEY_BITS = 2048  # RFC 8301 §3.2: signers SHOULD use at least 2048 bits.

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class DkimError(Exception):
    """A DKIM key, key file or message could not be used."""


def check_algorithm(algorithm: str) -> None:
    if algorithm not in _KEY_TYPE:
        raise DkimError(f"unsupported DKIM algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")


def public_b64(private_key: PrivateKey) -> str:
    """The ``p=`` value of the key record that publishes this private key's public half."""
    pub = private_key.public_key()
    if isinstance(pub, ed25519.Ed25519PublicKey):
        # RFC 8463 §4.2: p= is the base64 of the raw 32-byte Ed25519 public
        # key, not a SubjectPublicKeyInfo.
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        # RFC 6376 §3.6.1: for k=rsa, p= is the base64 of an ASN.1 DER
        # SubjectPublicKeyInfo (what OpenSSL calls a "PUBLIC KEY").
        raw = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(raw).decode("ascii")


def generate_key(algorithm: str) -> tuple[bytes, str]:
    """Generate a DKIM key pair.

    Returns ``(private_key_pem, public_b64)``: the private key as unencrypted
    PKCS#8 PEM and the value for the DNS record's ``p=`` tag.
    """
    check_algorithm(algorithm)
    key: PrivateKey
    if algorithm == RSA_SHA256:
        key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_KEY_BITS)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, public_b64(key)


def dns_txt_value(algorithm: str, public_b64: str) -> str:
    """The TXT record value to publish at ``<selector>._domainkey.<domain>``."""
    check_algorithm(algorithm)
    if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", public_b64):
        raise DkimError("public key is not a base64 string")
    # RFC 6376 §3.6.1: v= MUST be first when present; k= defaults to rsa but
    # is spelled out so the record is self-describing.
    return f"v=DKIM1; k={_KEY_TYPE[algorithm]}; p={public_b64}"
