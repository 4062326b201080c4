"""DKIM, in three jobs: keys and their DNS record (`keys`), the key-encryption-key file and private
keys encrypted at rest with it (`kek`), and signing (`signer`). The names other modules use are
importable from here."""

from __future__ import annotations

from .kek import decrypt_private_key, encrypt_private_key, load_or_create_kek
from .keys import ALGORITHMS, ED25519_SHA256, RSA_SHA256, DkimError, dns_txt_value, generate_key
from .signer import SIGNED_HEADERS, SigningKey, canonicalize_body_relaxed, sign

__all__ = [
    "ALGORITHMS",
    "ED25519_SHA256",
    "RSA_SHA256",
    "SIGNED_HEADERS",
    "DkimError",
    "SigningKey",
    "canonicalize_body_relaxed",
    "decrypt_private_key",
    "dns_txt_value",
    "encrypt_private_key",
    "generate_key",
    "load_or_create_kek",
    "sign",
]
