"""Dashboard sessions kept by the server: opened at login, checked on every page against the idle
and absolute timeouts (`[dashboard]`), ended at logout, so that a copy of the cookie is worth
nothing once its session ended (OWASP Session Management: server-side invalidation).

The id is 256 random bits; only its SHA-256 is stored, so a read of the table opens no session.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os

from ..config import DashboardConfig
from ..store import dashboard_sessions as store
from ..store.types import Conn


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


async def open_session(conn: Conn, account_id: int | None, cfg: DashboardConfig,
                       now: dt.datetime | None = None) -> str:
    """A new session of `account_id` (None: the operator); its id, for the cookie."""
    session_id = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    await store.create(conn, _digest(session_id), account_id, cfg.session_max_seconds, now)
    return session_id


async def alive(conn: Conn, session_id: str, account_id: int | None, cfg: DashboardConfig,
                now: dt.datetime | None = None) -> bool:
    """Whether the session is open, of this account, and within both timeouts (its use is noted)."""
    return await store.alive(conn, _digest(session_id), account_id, cfg.session_idle_seconds, now)


async def end(conn: Conn, session_id: str) -> None:
    await store.delete(conn, _digest(session_id))
