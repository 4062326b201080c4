"""Authentication use case: token → credential (account, stream), plus the limits checked at AUTH time.

Protocol-neutral (no SMTP here): a refusal is `Rejected` with an `Outcome` of the one vocabulary
(`outcomes.py`), which each adapter maps in its own table (`replies.OUTCOME_REPLIES`,
`http/errors.OUTCOMES`).

* `Authenticator.authenticate(token, stream=..., sending=...)`: looks the credential up by the
  token's public id, compares digests in constant time, applies the token's grant (`permissions`:
  a token without the right to send on the front door's stream is NOT_PERMITTED), and refuses an
  account already at its monthly limit when the session is for sending.
* `SessionSlots`: at most `limits.connections_per_account` concurrent authenticated sessions per
  account, counted cluster-wide with PostgreSQL advisory locks (see `store/smtp_limits.py`).

The brute-force brake per client IP (`smtp/peers.py:FailureTable`) is keyed on the client IP only
(never on the account or user name), so a real user on another IP is never locked out; it is shared
by the processes of one node, and with N nodes an attacker gets at most N times the budget, which
still bounds guessing of 192-bit tokens to nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from . import permissions, quota, tokens
from .outcomes import Outcome, Rejected
from .permissions import Level
from .store import credentials as credentials_store
from .store import db, smtp_limits
from .store import usage as usage_store
from .store.health import HEALTH, within

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors that mean "the database is not there right now", as opposed to a bug.
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError,
    db.Unavailable,  # a statement cut off by the statement bound, or never sent (store/messages.py)
)


@dataclass(frozen=True)
class Principal:
    """Who is sending: the credential and the plan facts the per-message path needs (no DB look-ups)."""

    credential_id: int
    account_id: int
    account_name: str
    stream: str  # the stream this session sends on (`permissions.stream_for`), stored with its messages
    monthly_limit: int
    max_message_size: int
    billing_anchor_day: int
    # Recipients the account could still send when it authenticated: advisory only (the commit
    # re-checks atomically), saves the per-session look-up the RCPT check would otherwise make.
    quota_remaining_at_auth: int = 0
    # The account's sending domains (lower-case name -> id) that passed the sender-domain policy
    # and are in the token's scope when it authenticated, fetched by the AUTH query itself; None
    # when not loaded (no policy given, or more than `SenderPolicy.preload_limit` such domains),
    # and the MAIL / From: check then looks the domain up. Same freshness as the per-session cache
    # the SMTP session keeps anyway: a change (approval, suspension, end of a grace period, the
    # token's scope) applies to the next session.
    sending_domains: Mapping[str, int] | None = field(default=None, compare=False, repr=False)
    # The token's grant (see `permissions`; a Principal satisfies `permissions.Scoped`). The
    # defaults are those of a token from before grants: a send token on `stream`, every domain.
    streams: frozenset[str] = frozenset()  # empty: {stream}
    domain_ids: frozenset[int] | None = None  # None: every domain of the account
    level: Level = Level.SEND
    # The account adds RFC 8058 one-click List-Unsubscribe headers to its bulk messages.
    list_unsubscribe: bool = False
    # Every message of the account is REQUIRETLS (RFC 8689; `account require-tls`, migration 0012).
    require_tls: bool = False

    def __post_init__(self) -> None:
        if not self.streams:
            object.__setattr__(self, "streams", frozenset({self.stream}))


@dataclass(frozen=True)
class SenderPolicy:
    """The sender-domain rules of `domains.sending_domain`, so AUTH can preload the allowed domains."""

    require_approval: bool
    grace_seconds: float | None = None
    preload_limit: int = 32  # accounts with more domains are looked up per domain instead


def _token_text(secret: str) -> str | None:
    # Tokens are printable ASCII; anything else (NUL, CR, LF, non-ASCII) is malformed, never looked up.
    if not secret.isascii() or not secret.isprintable():
        return None
    return secret


@dataclass(frozen=True)
class _Door:
    """What the front door asked `authenticate` for."""

    stream: str | None
    sending: bool


class Authenticator:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def authenticate(self, secret: str, *, stream: str | None = None, sending: bool = True,
                           sender_policy: SenderPolicy | None = None, slots: SessionSlots | None = None,
                           ) -> tuple[Principal, int | None]:
        """(principal, session slot), or `Rejected` with the outcome.

        `stream`: the stream the front door serves (an SMTP listener's `stream`, the HTTP host),
        None for a door serving the token's own (`permissions.stream_for`). With `sending` (a
        session that submits mail), a token that may not send on that stream is NOT_PERMITTED and
        an account at its monthly limit is QUOTA_EXCEEDED; without (management and read requests),
        neither is checked here and the caller asks `permissions` per request.

        With `slots`, success also holds one of the account's session slots (released with
        `slots.release`), or the outcome is TOO_MANY_CONNECTIONS; without, the slot is None."""
        token = _token_text(secret)
        public_id = tokens.public_id_of(token) if token is not None else None
        if token is None or public_id is None:
            raise Rejected(Outcome.CREDENTIAL_UNKNOWN)
        try:
            if slots is not None:
                # One round trip in the usual case, on the slots' own connection: pending slot
                # releases, the credential, account, this period's usage, the sending domains and
                # a session slot, in one statement.
                found = await slots.run(
                    lambda conn, held, unlock: self._lookup(conn, token, public_id, _Door(stream, sending),
                                                            sender_policy, slots, held, unlock))
            else:
                async with self._pool.acquire() as conn:
                    found = await self._lookup(conn, token, public_id, _Door(stream, sending), sender_policy,
                                               None, (), ())
        except DB_ERRORS as e:
            HEALTH.unavailable("authentication", e)  # logged once per outage, not once per AUTH
            raise Rejected(Outcome.AUTH_UNAVAILABLE) from None
        # Raised out here, not in `_lookup`: `slots.run` drops its connection on any exception.
        if isinstance(found, Outcome):
            raise Rejected(found)
        return found

    async def _lookup(self, conn: Any, token: str, public_id: str, door: _Door,
                      sender_policy: SenderPolicy | None, slots: SessionSlots | None,
                      held: Sequence[int], unlock: Sequence[int],
                      ) -> Outcome | tuple[Principal, int | None]:
        today = dt.datetime.now(dt.UTC).date()
        limit = sender_policy.preload_limit + 1 if sender_policy is not None else 0
        row = await credentials_store.find_for_auth(
            conn, public_id, today, domain_limit=limit,
            require_approval=sender_policy.require_approval if sender_policy else False,
            grace_seconds=sender_policy.grace_seconds if sender_policy else None,
            slot_limit=slots.limit if slots is not None else 0, held_slots=held, unlock_slots=unlock,
        )
        if row is None:
            return Outcome.CREDENTIAL_UNKNOWN
        account_id = int(row["account_id"])
        # Non-NULL only when `slots` asked for one (slot_limit > 0); from here it is held.
        slot = None if row["slot"] is None else int(row["slot"])
        if slots is not None and slot is not None:
            slots.hold(account_id, slot)

        def give_back() -> None:
            if slots is not None and slot is not None:
                slots.release(account_id, slot)

        if not tokens.matches(token, bytes(row["digest"])):
            give_back()
            return Outcome.CREDENTIAL_INVALID
        grant = permissions.Grant(
            frozenset(row["streams"]),
            None if row["all_domains"] else frozenset(int(i) for i in row["scope_ids"] or ()),
            Level(row["level"]),
        )
        stream = permissions.stream_for(grant, door.stream)
        if door.sending and (stream is None or not permissions.may_send(grant, stream)):
            give_back()
            return Outcome.NOT_PERMITTED
        if stream is None:  # not sending: the door's stream is only a default
            stream = permissions.stream_for(grant, None)
        assert stream is not None
        anchor = int(row["billing_anchor_day"])
        period = quota.period_start(anchor, today)
        usage_period = row["usage_period"]
        if usage_period is None or usage_period < period:
            used = 0  # no row for this period (the latest one is older): nothing used yet
        elif usage_period == period:
            used = int(row["usage_used"])
        else:  # a later row than this period's (the anchor day moved): read this period's
            used = await usage_store.used(conn, account_id, period)
        domains: dict[str, int] | None = None
        if sender_policy is not None:
            ids, names = row["domain_ids"] or [], row["domain_names"] or []
            if len(ids) <= sender_policy.preload_limit:
                domains = {str(name): int(id_) for name, id_ in zip(names, ids, strict=True)}
        principal = Principal(
            credential_id=row["id"], account_id=account_id, account_name=row["account_name"],
            stream=stream, streams=grant.streams, domain_ids=grant.domain_ids, level=grant.level,
            monthly_limit=int(row["monthly_limit"]),
            max_message_size=int(row["max_message_size"]),
            billing_anchor_day=anchor,
            quota_remaining_at_auth=int(row["monthly_limit"]) - used,
            sending_domains=domains, list_unsubscribe=bool(row["list_unsubscribe"]),
            require_tls=bool(row["require_tls"]),
        )
        if door.sending and principal.quota_remaining_at_auth <= 0:
            give_back()
            return Outcome.QUOTA_EXCEEDED
        if slots is not None and slot is None:
            return Outcome.TOO_MANY_CONNECTIONS
        if row["touch_due"]:
            # Coarse on purpose (see `credentials.touch`): a write at most once a minute.
            await credentials_store.touch(conn, principal.credential_id)
        return principal, slot


class SessionSlots:
    """Per-account session slots of this process, backed by advisory locks on one dedicated connection.

    Slots are taken by the AUTH statement itself (`Authenticator.authenticate` with `slots`), which
    runs on this connection. Releasing is deferred: the keys of ended sessions are unlocked by the
    next AUTH statement of this process, or by a flush `FLUSH_DELAY` seconds later if none comes,
    so a busy front end spends no round trip on it. Until then the slot still counts for other
    processes (for this process, the pending key is free to take again at once).
    """

    FLUSH_DELAY = 0.02
    # Bounds on the waits of this connection's life: taking it from the pool, unlocking at close.
    ACQUIRE_TIMEOUT = 5.0
    CLOSE_TIMEOUT = 2.0

    def __init__(self, pool: Any, limit: int) -> None:
        self._pool = pool
        self.limit = min(limit, 0xFFFF)  # slot numbers live in 16 bits of the lock key
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._held: dict[int, set[int]] = {}
        self._pending: list[int] = []
        self._flush: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    async def run(self, fn: Callable[[Any, Sequence[int], Sequence[int]], Awaitable[T]]) -> T:
        """`fn(conn, held_keys, keys_to_unlock)` on the dedicated connection, one at a time."""
        async with self._lock:
            for attempt in (1, 2):
                if self._conn is not None and not db.is_alive(self._conn):
                    await self._drop_connection()  # died with a PostgreSQL restart: its locks went with it
                if self._conn is None:
                    self._conn = await self._pool.acquire(timeout=self.ACQUIRE_TIMEOUT)
                unlock, self._pending = self._pending, []
                held = [smtp_limits.slot_key(a, s) for a, slots in self._held.items() for s in slots]
                started = time.monotonic()
                try:
                    result = await fn(self._conn, held, unlock)
                except BaseException as e:
                    # The statement's effect on the locks is unknown: drop the connection, and with it
                    # every lock it held, so the books match PostgreSQL's again.
                    await self._drop_connection()
                    # A connection that failed is safe to replace and run on once more: everything the
                    # statement did that lasts beyond it (session slots, unlocks) lived on that
                    # connection and ended with it; the rest is reads and an idempotent `touch`.
                    if attempt == 1 and isinstance(e, Exception) and db.connection_lost(e):
                        log.info("session slots: the connection was dead (%s); retrying on a fresh one",
                                 type(e).__name__)
                        continue
                    raise
                HEALTH.available(started)
                return result
            raise AssertionError("unreachable")

    def hold(self, account_id: int, slot: int) -> None:
        self._held.setdefault(account_id, set()).add(slot)

    def release(self, account_id: int, slot: int) -> None:
        held = self._held.get(account_id)
        if held is None or slot not in held:
            return  # lost with a dropped connection: PostgreSQL already released it
        held.discard(slot)
        if not held:
            self._held.pop(account_id, None)
        self._pending.append(smtp_limits.slot_key(account_id, slot))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.FLUSH_DELAY, self._start_flush)

    def held_count(self, account_id: int) -> int:
        return len(self._held.get(account_id, ()))

    def _start_flush(self) -> None:
        self._flush = None
        task = asyncio.get_running_loop().create_task(self._release_pending())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _release_pending(self) -> None:
        async with self._lock:
            keys, self._pending = self._pending, []
            if not keys or self._conn is None:
                return
            try:
                await smtp_limits.release_slots(self._conn, keys)
            except Exception as e:  # any failure: asyncpg has raised InternalClientError here
                # Dropping the connection releases every lock it held, these keys included.
                if isinstance(e, DB_ERRORS) or isinstance(e, asyncpg.InternalClientError):
                    HEALTH.unavailable("session slots", e)
                else:
                    log.exception("session slots: release failed")
                await self._drop_connection()

    async def _drop_connection(self) -> None:
        # Locks die with the connection; forget them all so the books match PostgreSQL's.
        conn, self._conn = self._conn, None
        self._held.clear()
        self._pending.clear()
        if conn is not None:
            try:
                conn.terminate()
            except Exception:  # already detached from its dead connection
                log.debug("terminating a broken connection failed", exc_info=True)
            try:
                await within(self.CLOSE_TIMEOUT, self._pool.release(conn))
            except Exception:  # best effort on an already broken connection
                log.debug("releasing a broken connection failed", exc_info=True)

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        async with self._lock:
            conn, self._conn = self._conn, None
            self._held.clear()
            self._pending.clear()
            if conn is None:
                return
            try:
                # Unlock before handing the connection back to the pool, where it lives on.
                await within(self.CLOSE_TIMEOUT, smtp_limits.unlock_all(conn))
            except Exception:
                # Unknown lock state (or the database is gone): the connection must not go back
                # to the pool holding locks; terminated, it gives them all up.
                log.debug("unlocking session slots failed; terminating their connection", exc_info=True)
                try:
                    conn.terminate()
                except Exception:
                    log.debug("terminating the session-slot connection failed", exc_info=True)
            try:
                await within(self.CLOSE_TIMEOUT, self._pool.release(conn))
            except Exception:
                log.debug("releasing the session-slot connection failed", exc_info=True)
