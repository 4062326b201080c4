"""The dashboard's session cookie and CSRF tokens: sealed with keys derived from the operator's
key-encryption key, so every process of every node opens what another sealed.

The cookie holds who logged in (the admin token, or the fingerprint of the operator password) and
the id of its server-side session (`core/dashboard_sessions.py`), AES-256-GCM-encrypted with its
expiry time. Each request opens it and checks it again: the session must still be open in
PostgreSQL (not logged out, within the idle and absolute timeouts), and the token is checked with
`auth.Authenticator` (the fingerprint against the password now set), so logging out, a revoked or
downgraded token, or a new operator password ends the session at once, for every copy of the cookie.
A CSRF token is an HMAC of the session cookie (or, before login, of a random pre-login cookie):
a forged form from another site can read neither (OWASP "signed double-submit cookie").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "mts_dash"
LOGIN_COOKIE = "mts_dash_login"
_AAD = b"mailtrap-smtp dashboard session"


def _derive(secret: bytes, label: bytes) -> bytes:
    # One key per use, from a fixed label (HKDF-style separation, as email_logs.RawUrls does).
    return hmac.new(secret, label, hashlib.sha256).digest()


class SessionKeys:
    def __init__(self, secret: bytes) -> None:
        # Without the operator's key (an API built by hand in a test), sessions live in one process only.
        base = secret or os.urandom(32)
        self._aead = AESGCM(_derive(base, b"mailtrap-smtp dashboard session key v1"))
        self._csrf = _derive(base, b"mailtrap-smtp dashboard csrf key v1")

    def seal(self, subject: str, session_id: str, max_seconds: float, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + max_seconds)
        nonce = os.urandom(12)
        body = json.dumps({"t": subject, "s": session_id, "e": expires}).encode()
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, body, _AAD)).decode().rstrip("=")

    def open(self, cookie: str | None, now: float | None = None) -> tuple[str, str] | None:
        """The subject and session id of a cookie sealed here and not expired, else None."""
        if not cookie or len(cookie) > 1024:
            return None
        try:
            blob = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            data = json.loads(self._aead.decrypt(blob[:12], blob[12:], _AAD))
        except (ValueError, InvalidTag):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("e"), int):
            return None
        subject, session_id = data.get("t"), data.get("s")
        if not isinstance(subject, str) or not isinstance(session_id, str):
            return None
        return (subject, session_id) if data["e"] > (time.time() if now is None else now) else None

    def csrf(self, bound_to: str) -> str:
        return hmac.new(self._csrf, bound_to.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, bound_to: str | None, given: str | None) -> bool:
        return bool(bound_to) and bool(given) and hmac.compare_digest(self.csrf(str(bound_to)), str(given))


def new_login_nonce() -> str:
    return base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
