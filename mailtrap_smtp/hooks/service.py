"""The outbox part of a process (`serve`, roles all and hooks): the runner and its consumers."""

from __future__ import annotations

from typing import Any

import asyncpg

from ..config import Config
from ..outbox import Consumer, OutboxRunner
from .delivery import WebhookDelivery, make_client


class HooksService:
    """Runs every outbox consumer of this process on one runner, with one HTTP pool for webhooks."""

    def __init__(self, cfg: Config, pool: asyncpg.Pool[Any], *, verify: Any = True, signer: Any = None) -> None:
        self.cfg = cfg
        self.pool = pool
        self.signer = signer  # DKIM signing of operator emails (signing.KeyStore); None: those are not run
        self.client = make_client(cfg.webhooks, verify)
        self.runner = OutboxRunner(pool, self.consumers(), concurrency=cfg.outbox.concurrency,
                                   lease_seconds=cfg.outbox.lease_seconds, poll_seconds=cfg.outbox.poll_seconds)

    def consumers(self) -> list[Consumer]:
        """Every consumer family; new ones (suppressions, stats, notifications) are added here."""
        from ..consumers.auto_suppressions import AutoSuppressions
        from ..consumers.quota_notices import QuotaNotices
        from ..consumers.stats_rollup import StatsRollup, SubmissionRollup
        from ..consumers.webhook_alerts import WebhookAlerts

        # Any: a TransactionalConsumer declares `kind` as a ClassVar, which mypy does not accept for
        # the Protocol's plain attribute, though the runner only reads it.
        found: list[Any] = [WebhookDelivery(self.cfg.webhooks, self.pool, self.client), AutoSuppressions(),
                                 StatsRollup(), SubmissionRollup()]
        if self.signer is not None:
            found += [QuotaNotices(self.cfg, self.signer), WebhookAlerts(self.cfg, self.signer)]
        return found

    async def start(self) -> None:
        await self.runner.start()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        try:
            await self.runner.stop(grace_seconds)
        finally:
            await self.client.aclose()
