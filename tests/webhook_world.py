"""Accounts, domains and messages whose life produces real events, for the webhook tests."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailtrap_smtp.store import accounts, domains, messages, queue


@dataclass
class World:
    pool: asyncpg.Pool[Any]
    account_id: int
    domain_id: int
    domain_name: str

    @classmethod
    async def create(cls, pool: asyncpg.Pool[Any], name: str = "acme") -> World:
        acct = await accounts.create(pool, name, monthly_limit=1_000_000, max_message_size=10_000_000)
        dom = await domains.create(pool, acct["id"], f"{name}.test", verification_token="t", dns_skipped=True)
        return cls(pool, acct["id"], dom["id"], dom["name"])

    async def add_domain(self, name: str) -> int:
        dom = await domains.create(self.pool, self.account_id, name, verification_token="t", dns_skipped=True)
        return int(dom["id"])

    async def send(self, recipients: int = 1, *, stream: str = "transactional", category: str | None = None,
                   custom_variables: dict[str, Any] | None = None, domain_id: int | None = None) -> list[int]:
        """Accept one message to `recipients` addresses; the recipients' ids, in order."""
        mid = uuid.uuid4()
        await messages.accept(self.pool, messages.NewMessage(
            id=mid, account_id=self.account_id, credential_id=None, domain_id=domain_id or self.domain_id,
            stream=stream, mail_from=f"app@{self.domain_name}", header_from=None, subject="s",
            message_id_header=None, category=category, custom_variables=custom_variables, client_ip=None,
            raw=b"Subject: s\r\n\r\nhi\r\n", recipients=[f"r{i}@dest.test" for i in range(recipients)],
        ), dt.date.today().replace(day=1))
        rows = await self.pool.fetch("SELECT id FROM recipients WHERE message_id = $1 ORDER BY id", mid)
        return [r["id"] for r in rows]

    async def finish(self, recipient_ids: list[int], kind: str = queue.DELIVERED, reply: str = "250 2.0.0 Ok",
                     details: dict[str, Any] | None = None) -> None:
        """Record a delivery (or bounce) of each recipient, with its event, as the workers do."""
        await queue.record_outcomes(self.pool, "test-worker", [
            queue.Outcome(r, kind, reply, dict(details or {})) for r in recipient_ids], 3600)

    async def defer(self, recipient_id: int, reply: str, details: dict[str, Any]) -> None:
        """Record a transient failure of one recipient, claimed first as a worker does."""
        claimed = await queue.claim(self.pool, "test-worker", 1000, 60)
        assert recipient_id in {c.id for c in claimed}
        await queue.record_outcomes(self.pool, "test-worker", [
            queue.Outcome(recipient_id, queue.DEFERRED, reply, details, 60)], 3600)
        await queue.release(self.pool, "test-worker")

    async def delivered(self, n: int, **send: Any) -> list[int]:
        """n messages of one recipient each, delivered one transaction after another."""
        out: list[int] = []
        for _ in range(n):
            rids = await self.send(1, **send)
            await self.finish(rids)
            out += rids
        return out

    async def event_ids(self, type_: str = "delivery") -> list[str]:
        rows = await self.pool.fetch(
            "SELECT event_id FROM events WHERE type = $1 AND account_id = $2 ORDER BY xid, id", type_,
            self.account_id)
        return [str(r["event_id"]) for r in rows]
