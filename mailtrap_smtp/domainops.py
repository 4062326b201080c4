"""Sending-domain use cases: add (with DKIM keys), verify over DNS, approve, re-check, rotate keys.

The DNS questions themselves live in `domains.py` (pure); this module decides what the answers
mean for a domain's state and records it, with its event, in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import dkim, domains, metrics, supervise
from .config import Config
from .core import accounts as accounts_uc
from .core.refusal import Kind, Refused
from .events import Event
from .signing import key_aad
from .store import accounts as accounts_store
from .store import domains as domains_store
from .store import events as events_store
from .store.types import Conn, Record

log = logging.getLogger(__name__)

# Two selectors per algorithm: the signing key on one, the next key on the other (docs/domains.md §7).
SELECTORS = domains.DKIM_SELECTORS
# Why a DKIM record is listed but not required, by the state of the key it carries.
KEY_NOTES = {
    "next": "next key: published ahead, signs after `dkim rotate`",
    "pending": "rotation under way: signs once DNS serves this key",
    "retired": "previous key: keep it a few days for messages still in transit",
}
IDLE_NOTE = "delegates this selector now, so later rotations need no DNS change"
Clock = Callable[[], dt.datetime]
# Domains re-checked at once by one node (each check is ~5 concurrent DNS queries).
RECHECK_CONCURRENCY = 8


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DomainOpError(Refused):
    """A user mistake or a refused operation, one line."""


@dataclass(frozen=True)
class DomainReport:
    domain: Record
    records: list[domains.ExpectedRecord]
    checks: list[domains.RecordCheck] | None = None


def _new_verification_token() -> str:
    # A DNS label that starts with a letter and cannot collide with the customer's own names.
    return "mt" + secrets.token_hex(6)


async def add_domain(pool: Conn, cfg: Config, kek: bytes, account_name: str, name: str, *,
                     skip_dns: bool = False, force: bool = False) -> DomainReport:
    try:
        domain_name = domains.normalize_domain(name, force=force)
    except domains.DomainNameError as e:
        raise DomainOpError(str(e)) from None
    account = await accounts_store.get_by_name(pool, account_name)
    if account is None:
        raise DomainOpError(f"no account named {account_name!r}", kind=Kind.NOT_FOUND)
    algorithms = ["rsa-sha256"] + (["ed25519-sha256"] if cfg.dkim.ed25519 else [])
    # Each algorithm's two selectors: the signing key and the next key, published together from the
    # start (Mailtrap's dkim1/dkim2), so the first rotation needs no DNS change. Key generation is CPU
    # work (RSA-2048 takes ~50 ms); keep the event loop free.
    generated = await asyncio.to_thread(lambda: [(alg, *dkim.generate_key(alg)) for alg in algorithms
                                                 for _ in _STATES])
    async with _transaction(pool) as conn:
        try:
            row = await domains_store.create(conn, account["id"], domain_name,
                                             verification_token=_new_verification_token(), dns_skipped=skip_dns)
        except KeyError:
            raise DomainOpError(f"domain {domain_name} already exists", kind=Kind.CONFLICT) from None
        for (alg, pem, public), selector, state in zip(generated, _slots(algorithms), _STATES * len(algorithms),
                                                       strict=True):
            await domains_store.add_key(
                conn, row["id"], selector=selector, algorithm=alg,
                private_key_enc=dkim.encrypt_private_key(kek, pem, key_aad(domain_name, selector)),
                public_key=public, state=state,
            )
    return DomainReport(await _get(pool, domain_name), await expected_for(pool, cfg, await _get(pool, domain_name)))


_STATES = ("active", "next")  # the states of an algorithm's two keys on a new domain, by selector


def _slots(algorithms: Sequence[str]) -> list[str]:
    return [sel for alg in algorithms for sel in SELECTORS[alg]]


@contextlib.asynccontextmanager
async def _transaction(pool: Conn) -> Any:
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def _get(conn: Conn, name: str) -> Record:
    try:
        lookup = domains.normalize_domain(name, force=True)
    except domains.DomainNameError as e:
        raise DomainOpError(str(e)) from None
    row = await domains_store.get_by_name(conn, lookup)
    if row is None:
        raise DomainOpError(f"no domain named {lookup}", kind=Kind.NOT_FOUND)
    return row


async def get_domain(conn: Conn, name: str) -> Record:
    """The domain named `name` (any spelling: IDN, case, trailing dot); DomainOpError if there is none."""
    return await _get(conn, name)


async def show_domain(conn: Conn, cfg: Config, name: str) -> DomainReport:
    """The domain and the records it must publish, as `add` reported them, at any time (no DNS query)."""
    domain = await _get(conn, name)
    return DomainReport(domain, await expected_for(conn, cfg, domain))


async def list_domains(conn: Conn, account_name: str | None = None) -> list[Record]:
    account_id = (await accounts_uc.get(conn, account_name))["id"] if account_name else None
    return await domains_store.list_all(conn, account_id)


async def operator_records(conn: Conn, cfg: Config, domain: Record) -> list[dict[str, str]]:
    """With a key-hosting zone (domains.dkim_cname_zone), the DKIM records the operator publishes
    there for this domain's keys; none otherwise (the customer publishes the keys themselves)."""
    if not cfg.domains.dkim_cname_zone:
        return []
    out = []
    for k in await domains_store.slot_keys(conn, domain["id"]):
        name, rtype, value = dkim_publication(cfg, domain["name"], k)
        out.append({"selector": k["selector"], "type": rtype, "name": name, "value": value})
    return out


async def expected_for(conn: Conn, cfg: Config, domain: Record) -> list[domains.ExpectedRecord]:
    """The records this domain must publish: THE list every view shows (CLI, API, dashboard) and every
    check asks DNS for.

    One DKIM record per selector, carrying the key that selector holds now (`slot_keys`): the
    signing key (required), the next key, a rotation's pending key, or the previous key kept for mail
    in transit (listed, not required; `note` says which). With a key-hosting zone
    (domains.dkim_cname_zone) a selector that never held a key still gets its CNAME up front
    (informational, key "dkim-cname:<selector>"), so the operator can rotate keys by publishing in
    its own zone, without asking the customer to touch DNS again.
    """
    keys = await domains_store.slot_keys(conn, domain["id"])
    dkim_pairs = [(k["selector"], dkim.dns_txt_value(k["algorithm"], k["public_key"])) for k in keys]
    records = domains.expected_records(
        domain["name"], verification_token=domain["verification_token"], dkim=dkim_pairs,
        return_path_host=cfg.return_path_host, spf_include=cfg.spf_include, ownership=cfg.domains.ownership,
        dkim_cname_zone=cfg.domains.dkim_cname_zone, dmarc_rua=cfg.domains.dmarc_rua,
        link_host=cfg.link_host if cfg.domains.link_record else "",
    )
    informational = {f"dkim:{k['selector']}": KEY_NOTES[k["state"]] for k in keys if k["state"] != "active"}
    records = [dataclasses.replace(r, required=False, note=informational[r.key]) if r.key in informational else r
               for r in records]
    zone = cfg.domains.dkim_cname_zone.strip().strip(".").lower()
    if zone:
        used = {k["selector"] for k in keys}
        idle = [sel for sel in _slots([a for a in SELECTORS if any(k["algorithm"] == a for k in keys)])
                if sel not in used]
        last_dkim = max((i for i, r in enumerate(records) if r.key.startswith("dkim:")), default=0)
        records[last_dkim + 1:last_dkim + 1] = [
            domains.ExpectedRecord(f"dkim-cname:{sel}", "CNAME", f"{sel}._domainkey.{domain['name']}",
                                   domains.dkim_cname_target(sel, domain["name"], zone), required=False,
                                   mailtrap_key=domains.dkim_mailtrap_key(sel), note=IDLE_NOTE)
            for sel in idle
        ]
    return records


def dkim_publication(cfg: Config, domain_name: str, key: Record | dict[str, Any]) -> tuple[str, str, str]:
    """(name, type, value) of the TXT record that serves `key`'s public half.

    Without a key-hosting zone the customer publishes it at <selector>._domainkey.<domain>; with one,
    the operator publishes it in its zone, at the target of the customer's CNAME.
    """
    zone = cfg.domains.dkim_cname_zone.strip().strip(".").lower()
    name = (domains.dkim_cname_target(key["selector"], domain_name, zone) if zone
            else f"{key['selector']}._domainkey.{domain_name}")
    return name, "TXT", dkim.dns_txt_value(key["algorithm"], key["public_key"])


@dataclass(frozen=True)
class Transition:
    state: str
    verified_at: dt.datetime | None
    failing_since: dt.datetime | None
    event: Event | None


def next_state(domain: Record | dict[str, Any], checks: Sequence[domains.RecordCheck], now: dt.datetime,
               grace: dt.timedelta) -> Transition:
    """What a DNS check result means for a domain's state (pure, so the clock can be injected).

    unverified --all pass--> verified --a record fails--> failing --grace over, still failing--> suspended
    (failing or suspended --all pass--> verified again). Informational records (required=False) never count.

    A DNS error (timeout, SERVFAIL) is never the customer's fault: when the only problems are errors the
    check is inconclusive and the state does not change, in either direction. A record that is
    definitely missing or wrong (an authoritative NXDOMAIN/NODATA or a wrong value) still counts even
    if another record's lookup failed.

    A domain added with --skip-dns-verification (development) is never demoted by a check; once all its
    records pass it becomes an ordinary DNS-managed domain (the caller clears the flag).
    """
    state, verified_at, failing_since = domain["state"], domain["verified_at"], domain["failing_since"]
    required = [c for c in checks if c.record.required]
    failed = [c for c in required if c.status in ("missing", "mismatch")]
    errors = [c for c in required if c.status not in ("pass", "missing", "mismatch")]
    unchanged = Transition(state, verified_at, failing_since, None)
    if not failed and errors:
        return unchanged
    if not failed:
        if state == "verified":
            return Transition(state, verified_at, None, None)
        return Transition("verified", now, None, Event.DOMAIN_VERIFIED)
    if _get_flag(domain, "dns_skipped"):
        return unchanged
    if state == "verified":
        return Transition("failing", verified_at, now, Event.DOMAIN_FAILING)
    if state == "failing":
        if failing_since is None:  # not written by this code, but never leave a failing domain without a clock
            return Transition(state, verified_at, now, None)
        if now - failing_since >= grace:
            return Transition("suspended", verified_at, failing_since, Event.DOMAIN_SUSPENDED)
    return unchanged


def _get_flag(domain: Record | dict[str, Any], key: str) -> bool:
    try:
        return bool(domain[key])
    except KeyError:
        return False


def _check_json(checks: Sequence[domains.RecordCheck]) -> list[dict[str, Any]]:
    return [{"key": c.record.key, "type": c.record.type, "name": c.record.name, "value": c.record.value,
             "required": c.record.required, "status": c.status, "found": list(c.found), "detail": c.detail}
            for c in checks]


async def verify_domain(pool: Conn, cfg: Config, resolver: Any, name: str, *,
                        now: dt.datetime | None = None) -> DomainReport:
    """Check DNS now, record the result and any state change with its event."""
    domain = await _get(pool, name)
    records = await expected_for(pool, cfg, domain)
    checks = await domains.check_records(records, resolver)
    now = now or utcnow()
    grace = dt.timedelta(seconds=cfg.domains.grace_period_seconds)
    async with _transaction(pool) as conn:
        # Decide on the row as it is now, locked: another node's re-check of the same domain may have
        # committed while we were asking DNS, and each transition must be recorded (with its event) once.
        locked = await domains_store.lock(conn, domain["id"])
        if locked is None:
            raise DomainOpError(f"domain {domain['name']} was removed", kind=Kind.NOT_FOUND)
        t = next_state(locked, checks, now, grace)
        await domains_store.set_check_result(conn, domain["id"], state=t.state, checked_at=now,
                                             result=_check_json(checks), verified_at=t.verified_at,
                                             failing_since=t.failing_since)
        if t.state == "verified" and locked["dns_skipped"] and domains.all_required_pass(checks):
            await domains_store.clear_dns_skipped(conn, domain["id"])
        failing = [c.record.key for c in checks if c.record.required and c.status != "pass"]
        if t.event is not None:
            await events_store.record(conn, t.event, account_id=domain["account_id"], domain_id=domain["id"],
                                      details={"domain": domain["name"], "from": locked["state"], "to": t.state,
                                               "failing_records": failing})
    result = "error" if any(c.status == "error" for c in checks if c.record.required) else (
        "pass" if domains.all_required_pass(checks) else "fail")
    metrics.DOMAIN_CHECKS.labels(result).inc()
    if t.event is not None:
        log_fn = log.warning if t.event in (Event.DOMAIN_FAILING, Event.DOMAIN_SUSPENDED) else log.info
        log_fn("domain %s: %s -> %s (failing records: %s)", domain["name"], locked["state"], t.state,
               ", ".join(failing) or "none")
    elif t.state == "failing":
        # Keep saying so while the grace period runs, so the log shows it before sending stops.
        deadline = (t.failing_since or now) + grace
        log.warning("domain %s: records still failing (%s); sending stops at %s unless fixed",
                    domain["name"], ", ".join(failing) or "inconclusive check", deadline.isoformat())
    if await activate_published_keys(pool, cfg, resolver, domain["name"], checks):
        records = await expected_for(pool, cfg, await _get(pool, name))
    return DomainReport(await _get(pool, name), records, checks)


async def approve_domain(pool: Conn, name: str) -> Record:
    domain = await _get(pool, name)
    async with _transaction(pool) as conn:
        await domains_store.approve(conn, domain["id"])
        if domain["approved_at"] is None:
            await events_store.record(conn, Event.DOMAIN_APPROVED, account_id=domain["account_id"],
                                      domain_id=domain["id"], details={"domain": domain["name"]})
    return await _get(pool, name)


async def rotate_dkim(pool: Conn, cfg: Config, kek: bytes, resolver: Any, name: str) -> tuple[str, list[Record]]:
    """Advance a key rotation by one safe step and say what happened.

    Step 1 makes the next key (created with the domain, published ahead) the rotation's 'pending'
    key, or, when there is none, creates one on each algorithm's idle selector (not signing). Step 2
    (at once when DNS already serves it; else the same command run again, or the periodic re-check)
    activates a pending key only once DNS serves its exact public key, so there is never a moment
    when signatures don't verify.
    """
    domain = await _get(pool, name)
    keys = await domains_store.keys(pool, domain["id"], ("active", "pending", "next"))
    if not any(k["state"] == "pending" for k in keys):
        waiting_next = [k for k in keys if k["state"] == "next"]
        # Turned on since the domain was added: Ed25519 gets its first key (the create step below)
        # before the next keys take their turn.
        new_algorithm = cfg.dkim.ed25519 and not any(k["algorithm"] == "ed25519-sha256" for k in keys)
        if waiting_next and not new_algorithm:
            # The next key, published ahead since `domain add`, becomes this rotation's key.
            async with _transaction(pool) as conn:
                await domains_store.lock(conn, domain["id"])
                await domains_store.set_key_state(conn, [k["id"] for k in waiting_next], "pending")
            keys = await domains_store.keys(pool, domain["id"], ("active", "pending", "next"))
    pending = [k for k in keys if k["state"] == "pending"]
    if pending:
        activated = await activate_published_keys(pool, cfg, resolver, domain["name"])
        if activated:
            return "activated", activated
        return "waiting", pending
    active = {k["algorithm"]: k for k in keys if k["state"] == "active"}
    # An algorithm whose idle selector holds its next key rotates by that key, not by a new one.
    algorithms = [alg for alg in active if not any(k["algorithm"] == alg and k["state"] == "next" for k in keys)]
    if not active:
        algorithms = ["rsa-sha256"]
    if cfg.dkim.ed25519 and "ed25519-sha256" not in active:
        algorithms.append("ed25519-sha256")  # enabled since the domain was added: start signing with it too
    generated = await asyncio.to_thread(lambda: [(alg, *dkim.generate_key(alg)) for alg in algorithms])
    created = []
    async with _transaction(pool) as conn:
        # Two rotations started at once must not both add a key: the second one waits on the lock
        # and then finds the first one's pending keys.
        await domains_store.lock(conn, domain["id"])
        racing = await domains_store.keys(conn, domain["id"], ("pending",))
        if racing:
            return "waiting", racing
        for alg, pem, public in generated:
            current = active.get(alg)
            first, second = SELECTORS[alg]
            selector = second if current is not None and current["selector"] == first else first
            # A key signs only once DNS serves it; the exception is a domain with no key at all
            # (nothing verifies today anyway), which gets one to sign with at once.
            created.append(await domains_store.add_key(
                conn, domain["id"], selector=selector, algorithm=alg,
                private_key_enc=dkim.encrypt_private_key(kek, pem, key_aad(domain["name"], selector)),
                public_key=public, state="pending" if active else "active",
            ))
    return "created", created


async def activate_published_keys(pool: Conn, cfg: Config, resolver: Any, name: str,
                                  checks: Sequence[domains.RecordCheck] | None = None) -> list[Record]:
    domain = await _get(pool, name)
    keys = await domains_store.keys(pool, domain["id"])
    pending = {f"dkim:{k['selector']}": k for k in keys if k["state"] == "pending"}
    if not pending:
        return []
    if checks is None:
        records = [r for r in await expected_for(pool, cfg, domain) if r.key in pending]
        checks = await domains.check_records(records, resolver)
    activated = []
    for c in checks:
        key = pending.get(c.record.key)
        if key is not None and c.status == "pass":
            async with _transaction(pool) as conn:
                await domains_store.activate_key(conn, key["id"])
                await events_store.record(conn, Event.DKIM_ROTATED, account_id=domain["account_id"],
                                          domain_id=domain["id"],
                                          details={"selector": key["selector"], "algorithm": key["algorithm"]})
            activated.append(key)
    return activated


class DomainRechecker:
    """Re-checks every DNS-verified domain periodically, so broken records are noticed and acted on."""

    def __init__(self, cfg: Config, pool: Conn, resolver: Any, *, clock: Clock = utcnow) -> None:
        self.cfg, self.pool, self.resolver, self.clock = cfg, pool, resolver, clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._checking = False
        self._idle = asyncio.Event()  # set while no round is under way
        self._idle.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = supervise.spawn("domain-rechecker", self._run())

    async def stop(self, grace: float) -> None:
        """Stop; a round under way may finish for up to `grace` seconds, the wait between rounds
        ends at once. Worth waiting for: a round has already claimed its domains (stamped them as
        checked), so the ones it does not reach wait a whole interval for the next round."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if self._checking and grace > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._idle.wait()
        task.cancel()
        # Bounded: cancelled mid-statement on a stalled server, asyncpg waits for the server.
        await asyncio.wait({task}, timeout=2.0)

    async def run_once(self) -> int:
        """Check every domain that is due; return how many were checked."""
        now = self.clock()
        due = await domains_store.claim_due_for_check(
            self.pool, now=now,
            checked_before=now - dt.timedelta(seconds=self.cfg.domains.recheck_interval_seconds),
            failing_since_before=now - dt.timedelta(seconds=self.cfg.domains.grace_period_seconds))
        # A few checks at a time: each is a handful of independent DNS queries, mostly waiting.
        limit = asyncio.Semaphore(RECHECK_CONCURRENCY)

        async def check(name: str) -> None:
            async with limit:
                try:
                    await verify_domain(self.pool, self.cfg, self.resolver, name, now=now)
                except Exception:
                    log.exception("re-check of %s failed", name)

        await asyncio.gather(*(check(row["name"]) for row in due))
        metrics.DOMAINS_FAILING.set(await domains_store.count_in_state(self.pool, "failing"))
        return len(due)

    async def _run(self) -> None:
        # Wake often enough to notice a grace period ending, rarely enough to be free.
        interval = min(60.0, float(self.cfg.domains.recheck_interval_seconds))

        async def round_() -> float:
            self._checking = True
            self._idle.clear()
            try:
                await self.run_once()
            finally:
                self._checking = False
                self._idle.set()
            return interval

        # A failed round (the database gone) is retried with backoff and logged once per outage;
        # stop() ends the loop (cancelling it between rounds).
        await supervise.keep_running("domain re-check", round_)


async def owned_by(pool: Conn, account_id: int, name: str) -> int | None:
    """The id of `name` if it is a sending domain of the account, whatever its state (a domain it may
    not send from yet is refused differently from one that is not its own: MAILTRAP_COMPAT.md §2.6)."""
    row = await domains_store.get_by_name(pool, name.lower())
    return int(row["id"]) if row is not None and int(row["account_id"]) == account_id else None


async def domain_of_account(pool: Conn, account_id: int, domain_id: int) -> Record | None:
    return await domains_store.get_for_account(pool, account_id, domain_id)


async def delete_domain(pool: Conn, account_id: int, domain_id: int) -> bool:
    """Remove one of the account's domains (its keys with it); False if it has no such domain."""
    async with pool.acquire() as conn:
        return await domains_store.delete(conn, account_id, domain_id)
