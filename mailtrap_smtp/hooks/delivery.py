"""Webhook delivery: the outbox consumer that POSTs each webhook's events in signed batches.

Every webhook has its own cursor (`webhook:<id>`), so one that fails or is slow never delays
another, and its events go out in log order, one batch at a time. A batch is at most
`webhooks.batch_size` (500) events. A full one goes at once; one that is not full when read waits
until `flush_seconds` after its first event (the cursor is not claimed before; events arriving
meanwhile join it, up to the limit), so a batch is posted within `flush_seconds` of its first
event. Only HTTP 200 acknowledges: then the cursor moves past the batch, in the same transaction
as the delivery-log row. Anything else (another status, no answer within `timeout_seconds`, a
refused connection, an unsafe target) is a failure: logged, and the cursor is not claimed again
before `retry_seconds`; the retry reads from the same position (the same events, with the same
`event_id`s, perhaps a few more). When the batch has failed
`retry_limit` retries, the webhook is set `active = false` with a `webhook_deactivated` event,
and only an explicit update resumes it (from where it stopped: nothing is dropped).

A process killed during a POST leaves its lease to run out; the next holder posts the batch again
(at least once; receivers deduplicate on `event_id`, MAILTRAP_COMPAT §5.2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import httpx

from .. import metrics
from ..config import WebhooksConfig
from ..core import event_names
from ..events import Event
from ..outbox import Cursor, Step
from ..store import events as events_store
from ..store import webhooks as store
from ..store.outbox import EventFilter
from ..store.types import Conn, Record
from .targets import GuardedTransport

log = logging.getLogger(__name__)

CONTENT_TYPES = {"json": "application/json", "jsonlines": "application/jsonl"}


def redacted_url(url: str) -> str:
    """The URL without credentials or query (either may hold a secret): safe to log and store."""
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{p.scheme}://{host}{f':{p.port}' if p.port else ''}{p.path}"


def sign(secret: str, body: bytes) -> str:
    """`Mailtrap-Signature`: lowercase hex HMAC-SHA256 of the raw body (§5.1)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(payloads: list[dict[str, Any]], payload_format: str) -> bytes:
    if payload_format == "jsonlines":
        return b"".join(json.dumps(p, separators=(",", ":")).encode() + b"\n" for p in payloads)
    return json.dumps({"events": payloads}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Attempt:
    status: int | None
    latency_ms: int
    error: str | None

    @property
    def acknowledged(self) -> bool:
        return self.status == 200


def make_client(cfg: WebhooksConfig, verify: Any = True) -> httpx.AsyncClient:
    """The process's one connection pool for every webhook (redirects are not followed: a 3xx is
    not a 200, and following it would bypass the URL check)."""
    # httpx logs every request's full URL at INFO, query string included (a query token is a
    # credential, §5.1): its loggers say only what goes wrong.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return httpx.AsyncClient(transport=GuardedTransport(allow_private=cfg.allow_private_targets, verify=verify),
                             timeout=httpx.Timeout(cfg.timeout_seconds), follow_redirects=False, trust_env=False)


async def post(client: httpx.AsyncClient, url: str, body: bytes, content_type: str, signature: str,
               timeout_seconds: float) -> Attempt:
    """One POST; never raises for what the network or the receiver does."""
    started = time.monotonic()
    url, auth = _split_credentials(url)
    try:
        response = await client.post(url, content=body, timeout=timeout_seconds,
                                     auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                                     headers={"Content-Type": content_type, "Mailtrap-Signature": signature,
                                              "User-Agent": "mailtrap-smtp-webhooks"})
        await response.aclose()
    except httpx.TimeoutException:
        return Attempt(None, _ms(started), f"no response within {timeout_seconds:g} s")
    except httpx.HTTPError as e:
        # httpx's messages name no URL, but a credential must never reach a log: keep the class
        # and the first line of the reason only.
        reason = str(e).splitlines()[0] if str(e) else ""
        return Attempt(None, _ms(started), f"{type(e).__name__}: {reason}"[:300])
    status = response.status_code
    return Attempt(status, _ms(started), None if status == 200 else f"HTTP {status}")


def _split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """user:password@ in the URL become Basic auth (RFC 7617) given apart from the URL, which
    httpx and our log lines may then show."""
    p = urlsplit(url)
    if p.username is None and p.password is None:
        return url, None
    netloc = p.netloc.rpartition("@")[2]
    return p._replace(netloc=netloc).geturl(), httpx.BasicAuth(unquote(p.username or ""), unquote(p.password or ""))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def event_filter(webhook: Record) -> EventFilter:
    return EventFilter(account_id=webhook["account_id"], types=event_names.our_types(list(webhook["event_types"])),
                       stream=webhook["sending_stream"], domain_id=webhook["domain_id"])


class WebhookDelivery:
    """The `webhook` consumer family of the outbox (cursors `webhook:<id>`)."""

    kind = store.KIND
    singleton = False
    from_beginning = False

    def __init__(self, cfg: WebhooksConfig, pool: asyncpg.Pool[Any], client: httpx.AsyncClient) -> None:
        self.cfg = cfg
        self.pool = pool
        self.client = client

    async def step(self, cursor: Cursor) -> Step:
        webhook = await store.get(self.pool, int(cursor.key))
        if webhook is None or not webhook["active"]:
            # A cursor left by a webhook that is gone (its account was deleted) or off: never claim it
            # again, or every poll would find its events waiting.
            await store.orphaned(self.pool, int(cursor.key), gone=webhook is None)
            return Step.IDLE
        page = await cursor.read(self.cfg.batch_size, event_filter(webhook))
        batch = [(e, p) for e in page.events if (p := event_names.webhook_payload(e)) is not None]
        more = Step.MORE if page.full else Step.IDLE
        if not batch:
            if page.end > cursor.position:
                await cursor.advance(page.end)  # nothing for this webhook in what was scanned
            return more
        now = cursor.now()
        if not page.full and cursor.failures == 0 and self.cfg.flush_seconds > 0:
            due = batch[0][0].created_at + dt.timedelta(seconds=self.cfg.flush_seconds)
            if due > now:
                await cursor.release(not_before=due)
                return Step.IDLE
        body = encode([p for _, p in batch], webhook["payload_format"])
        attempt = await post(self.client, webhook["url"], body, CONTENT_TYPES[webhook["payload_format"]],
                             sign(webhook["signing_secret"], body), self.cfg.timeout_seconds)
        first, last = batch[0][0], batch[-1][0]
        metrics.WEBHOOK_LATENCY.observe(attempt.latency_ms / 1000)
        metrics.WEBHOOK_POSTS.labels("acknowledged" if attempt.acknowledged else "failed").inc()

        async def log_attempt(tx: Conn) -> None:
            await store.record_attempt(tx, webhook["id"], at=now, events=len(batch), first_event_id=first.event_id,
                                       last_event_id=last.event_id, status=attempt.status,
                                       latency_ms=attempt.latency_ms, error=attempt.error,
                                       acknowledged=attempt.acknowledged)

        if attempt.acknowledged:
            await cursor.advance(page.end, log_attempt, events=len(batch))
            metrics.WEBHOOK_EVENTS.inc(len(batch))
            return more
        await cursor.release(not_before=now + dt.timedelta(seconds=self.cfg.retry_seconds),
                             failed=attempt.error or "failed", effect=self._on_failure(webhook, now, log_attempt))
        return Step.IDLE

    def _on_failure(self, webhook: Record, now: dt.datetime, log_attempt: Any) -> Any:
        async def effect(tx: Conn, failures: int) -> None:
            await log_attempt(tx)
            target = redacted_url(webhook["url"])
            if failures <= self.cfg.retry_limit:
                log.info("webhook %d (%s): attempt %d failed; retry in %.0f s", webhook["id"], target, failures,
                         self.cfg.retry_seconds)
                return
            if await store.deactivate(tx, webhook["id"], now):
                metrics.WEBHOOKS_DEACTIVATED.inc()
                await events_store.record(tx, Event.WEBHOOK_DEACTIVATED, account_id=webhook["account_id"],
                                          details={"webhook_id": webhook["id"], "attempts": failures,
                                                   "url": target})
                log.warning("webhook %d (%s) deactivated after %d failed attempts; resume it with an update",
                            webhook["id"], target, failures)

        return effect

