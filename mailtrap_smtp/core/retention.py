"""Retention (`retention.raw_message_days`, `retention.log_days`) and the right to erasure
(`account erase-recipient`): what is deleted, when, and the report of what was removed.

`RetentionSweeper` runs the sweep every `retention.interval_seconds` on one process of a node
(several nodes may sweep at once: batches skip rows another sweeper holds).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any

from .. import supervise
from ..config import RetentionConfig
from ..mailbox import valid_mailbox
from ..store import accounts as accounts_store
from ..store import retention as store
from ..store.types import Conn
from .refusal import Kind, Refused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swept:
    bodies: int
    messages: int
    events: int


async def sweep(conn: Conn, cfg: RetentionConfig, now: dt.datetime) -> Swept:
    """One pass: bodies of finished messages older than raw_message_days, then finished messages
    (with their recipients and events) and other events older than log_days. 0 days: kept."""
    bodies = messages = events = 0
    if cfg.raw_message_days > 0:
        before = now - dt.timedelta(days=cfg.raw_message_days)
        while (n := await store.delete_raw_batch(conn, before)) > 0:
            bodies += n
    if cfg.log_days > 0:
        before = now - dt.timedelta(days=cfg.log_days)
        while True:
            m, e = await store.delete_logs_batch(conn, before)
            messages, events = messages + m, events + e
            if m == 0 and e == 0:
                break
    return Swept(bodies, messages, events)


async def erase_recipient(pool: Any, account_name: str, email: str) -> dict[str, int]:
    """Remove the address from every stored message, log and suppression of the account; what was removed."""
    if not valid_mailbox(email):
        raise Refused(f"not an email address: {email!r}")
    account = await accounts_store.get_by_name(pool, account_name)
    if account is None:
        raise Refused(f"no account named {account_name!r}", kind=Kind.NOT_FOUND)
    return asdict(await store.erase_recipient(pool, int(account["id"]), email))


class RetentionSweeper:
    def __init__(self, cfg: RetentionConfig, pool: Any) -> None:
        self.cfg, self.pool = cfg, pool
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.cfg.raw_message_days > 0 or self.cfg.log_days > 0:
            self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self, grace: float) -> None:
        if self._task is not None:
            await supervise.cancel([self._task])  # bounded: the database may be stalled
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                swept = await sweep(self.pool, self.cfg, dt.datetime.now(dt.UTC))
                if swept != Swept(0, 0, 0):
                    log.info("retention: %d bodies, %d messages and %d events deleted", swept.bodies,
                             swept.messages, swept.events)
            except Exception:
                log.exception("retention sweep failed; retried next round")
            await asyncio.sleep(self.cfg.interval_seconds)
