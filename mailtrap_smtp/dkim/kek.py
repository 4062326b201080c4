"""The key-encryption key (KEK) file, and the encryption of DKIM private keys at rest with it.

The KEK is kept in a 0600 file, so a database dump alone does not leak signing keys. Nothing in
this module logs, and no exception message contains key material.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..atomicfile import write_atomically
from .keys import DkimError

_KEK_LEN = 32  # AES-256
_BLOB_VERSION = 1
_NONCE_LEN = 12  # the GCM nonce size recommended by NIST SP 800-38D
_GCM_TAG_LEN = 16


def _read_kek(path: Path) -> bytes:
    # The checks use fstat() on the descriptor we read from, so they apply to
    # the file actually read, not to whatever a rename swapped in between a
    # stat() and an open().  Symlinks are followed on purpose: secret stores
    # (Kubernetes secrets, some credential managers) present files through
    # symlinks, and it is the target's mode that protects the key.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise DkimError(f"cannot open DKIM key-encryption key file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DkimError(f"DKIM key-encryption key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise DkimError(
                f"DKIM key-encryption key file {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
                f"it must not be accessible by group or others (run: chmod 600 {path})"
            )
        if st.st_size != _KEK_LEN:
            raise DkimError(f"DKIM key-encryption key file {path} is {st.st_size} bytes; expected exactly {_KEK_LEN}")
        data = b""
        while len(data) < _KEK_LEN + 1:  # one byte more, to notice a file that grew
            chunk = os.read(fd, _KEK_LEN + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) != _KEK_LEN:
        raise DkimError(f"DKIM key-encryption key file {path} changed size while being read")
    return data


def load_or_create_kek(path: Path) -> bytes:
    """Return the 32-byte key-encryption key stored at *path*, creating it if absent.

    A new file is written to a temporary name with mode 0600, fsynced, then
    hard-linked into place, so no reader ever sees a partial key and two
    processes racing to create it agree on one key (the loser of the link
    race reads the winner's file).  Missing parent directories are created
    with mode 0700.  An existing file that is accessible by group or others,
    or is not exactly 32 bytes, is refused with :class:`DkimError` rather
    than used or replaced: replacing it would make every stored private key
    undecryptable.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():  # a dangling symlink is refused, not written through
        return _read_kek(path)
    key = os.urandom(_KEK_LEN)
    try:
        write_atomically(path, key, private=True, replace=False)
    except FileExistsError:
        # Another process created it first: use theirs.
        return _read_kek(path)
    except OSError as e:
        raise DkimError(f"cannot create DKIM key-encryption key file {path}: {e.strerror}") from None
    return key


def _aesgcm(kek: bytes) -> AESGCM:
    if len(kek) != _KEK_LEN:
        raise DkimError(f"key-encryption key must be {_KEK_LEN} bytes")
    return AESGCM(kek)


def encrypt_private_key(kek: bytes, pem: bytes, aad: bytes) -> bytes:
    """Encrypt a private key PEM for storage.

    The blob is ``version (1 byte) || nonce (12 bytes) || AES-256-GCM ciphertext+tag``.
    *aad* (e.g. ``b"example.com:s1"``) is authenticated but not stored, so a
    blob copied to another domain/selector row fails to decrypt.
    """
    nonce = os.urandom(_NONCE_LEN)  # random 96-bit nonces: safe for far more than 2**32 keys per KEK
    return bytes([_BLOB_VERSION]) + nonce + _aesgcm(kek).encrypt(nonce, pem, aad)


def decrypt_private_key(kek: bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`encrypt_private_key`; raises :class:`DkimError` on any mismatch."""
    aes = _aesgcm(kek)
    if len(blob) < 1 + _NONCE_LEN + _GCM_TAG_LEN:
        raise DkimError("encrypted DKIM key is truncated")
    if blob[0] != _BLOB_VERSION:
        raise DkimError(f"unsupported encrypted DKIM key format version {blob[0]}")
    nonce = blob[1 : 1 + _NONCE_LEN]
    try:
        return aes.decrypt(nonce, blob[1 + _NONCE_LEN :], aad)
    except InvalidTag:
        raise DkimError(
            "cannot decrypt DKIM private key: wrong key-encryption key, or the blob "
            "belongs to another domain/selector, or it was corrupted"
        ) from None
