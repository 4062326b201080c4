"""The operator's dashboard password: set with the CLI, checked at the dashboard's login.

Only a scrypt hash (RFC 7914; n=2^15, r=8, p=1, a random 16-byte salt) is kept, in a private file
in the data directory (every process of the node reads it; with several nodes, copy it). Its
`fingerprint` goes into an operator's session, so setting a new password (or clearing it) ends
every session opened with the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from ..atomicfile import write_atomically
from ..config import Config
from .refusal import Refused

FILE_NAME = "dashboard-operator-password.json"
MIN_LENGTH = 12  # NIST SP 800-63B §5.1.1.2 asks at least 8; an operator's view of every account asks more
MAX_LENGTH = 1024
_N, _R, _P = 2**15, 8, 1


def path_for(cfg: Config) -> Path:
    return cfg.data_dir / FILE_NAME


def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def set_password(path: Path, password: str) -> None:
    """Keep the hash of a new password (replacing the old one). Refused when too short or too long."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise Refused(f"the operator password must be {MIN_LENGTH} to {MAX_LENGTH} characters")
    salt = os.urandom(16)
    record = {"scheme": "scrypt", "n": _N, "r": _R, "p": _P, "salt": salt.hex(),
              "hash": _hash(password, salt, _N, _R, _P).hex()}
    write_atomically(path, json.dumps(record).encode(), private=True)


def clear(path: Path) -> bool:
    """Remove the password (no operator login then); False if there was none."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def fingerprint(path: Path) -> str | None:
    """Names the password currently set (None: none is): changes whenever it is set again."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def check(path: Path, password: str) -> str | None:
    """The fingerprint of the password set, if `password` is it; else None."""
    try:
        data = path.read_bytes()
        record = json.loads(data)
        salt, expected = bytes.fromhex(record["salt"]), bytes.fromhex(record["hash"])
        n, r, p = int(record["n"]), int(record["r"]), int(record["p"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if len(password) > MAX_LENGTH or not hmac.compare_digest(_hash(password, salt, n, r, p), expected):
        return None
    return hashlib.sha256(data).hexdigest()
