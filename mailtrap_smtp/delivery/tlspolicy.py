"""The outbound TLS policy of one delivery: DANE, MTA-STS, the operator's requirement, or opportunistic.

One job: given the recipient domain and its MX targets, decide how each target may be used, then
connect accordingly and say what applied. Precedence, per MX host (RFC 8461 §2, RFC 7672 §1.3):

1. DANE (`delivery.dane`, delivery/dane.py) when the MX RRset and the host's TLSA RRset are
   DNSSEC-authenticated: TLS mandatory, the certificate checked against TLSA, never clear text.
   A TLSA lookup that fails makes that host unusable (RFC 7672 §2.2); a secure RRset without a
   usable record still makes TLS mandatory, unauthenticated.
2. MTA-STS (`delivery.mta_sts`, delivery/mtasts.py): `enforce` → only MX hosts matching the
   policy, certificate verified (Web PKI or `delivery.tls_ca_file`) for the MX name, no clear text:
   with none usable, a temporary failure. `testing` → the same attempt, and if it fails, delivery as
   without a policy, recording why it failed (RFC 8461 §5).
3. Otherwise the operator's `require_tls` rules, or opportunistic STARTTLS (delivery/client.py).

Routes (`delivery.routes`) are the operator's explicit choice of next hop: no DANE, no MTA-STS.
The outcome goes into the delivery event as `details.tls_policy`: `policy` (none / opportunistic /
required / mta-sts / dane), `version`, and `mode`, `failure`, `note` where they apply.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.asyncresolver

from .. import metrics
from ..config import Config
from . import bounces, client, dane, mtasts

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """Some targets, in MX order, and how they may be used."""

    targets: list[client.Target]
    policy: str  # "dane" | "mta-sts" | "required" | "opportunistic"
    require_tls: bool
    tls_context: ssl.SSLContext | None = None
    check_peer: Callable[[client.Target, Any], str | None] | None = None


@dataclass
class Plan:
    attempts: list[Attempt]
    info: dict[str, Any] = field(default_factory=dict)
    fallback: Attempt | None = None  # MTA-STS testing: used when every attempt failed
    refusal: str = ""                 # nothing may be tried: the temporary failure's reason


class TlsPolicy:
    def __init__(self, cfg: Config, resolver: dns.asyncresolver.Resolver, *,
                 verify_context: ssl.SSLContext | None, https_port: int = 443, pool: Any = None) -> None:
        self.delivery_cfg = cfg.delivery
        self.resolver = resolver
        self.verify_context = verify_context or client.verifying_context()
        self._dane_resolver: dns.asyncresolver.Resolver | None = None  # made on first use, if dane is on
        self.mta_sts = mtasts.PolicyCache(resolver, self.verify_context, port=https_port, pool=pool,
                                          timeout=min(self.delivery_cfg.connect_timeout_seconds, 30.0))

    async def plan(self, domain: str, targets: list[client.Target], *, require_tls: bool,
                   routed: bool) -> Plan:
        base = "required" if require_tls else "opportunistic"
        if routed or not targets:
            return Plan([Attempt(targets, base, require_tls)])
        info: dict[str, Any] = {}
        per_host = await self._dane(domain, targets, info) if self.delivery_cfg.dane else {}
        policy: mtasts.Policy | None = None
        if self.delivery_cfg.mta_sts:
            policy, note = await self.mta_sts.policy(domain)
            if policy is not None and policy.mode != "none":
                info.update(mode=policy.mode, note=note)
        attempts: list[Attempt] = []
        fallback_targets: list[client.Target] = []
        for t in targets:
            if t.name in per_host:
                attempt = per_host[t.name]
            elif policy is not None and policy.mode in ("enforce", "testing"):
                fallback_targets.append(t)
                if not policy.matches(t.name):
                    continue  # RFC 8461 §4.1: never a host the policy does not list
                attempt = Attempt([t], "mta-sts", True, self.verify_context)
            else:
                attempt = Attempt([t], base, require_tls)
            _append(attempts, attempt)
        plan = Plan(attempts, info)
        if policy is not None and policy.mode == "testing" and fallback_targets:
            plan.fallback = Attempt(fallback_targets, base, require_tls)
        if not attempts and plan.fallback is None:
            plan.refusal = (f"MTA-STS policy of {domain} (enforce) lists none of its MX hosts"
                            if policy is not None else f"no usable MX host for {domain} (DANE)")
        return plan

    async def _dane(self, domain: str, targets: list[client.Target], info: dict[str, Any]) -> dict[str, Attempt]:
        if self._dane_resolver is None:
            self._dane_resolver = dane.validating(self.resolver)
        if not await dane.mx_secure(self._dane_resolver, domain):
            return {}
        out: dict[str, Attempt] = {}
        for name in dict.fromkeys(t.name for t in targets):
            status, records = await dane.tlsa_records(self._dane_resolver, name)
            hosts = [t for t in targets if t.name == name]
            if status == "error":
                # RFC 7672 §2.2: a host whose TLSA RRset cannot be looked up is not used at all.
                out[name] = Attempt(hosts, "dane", True, check_peer=_refuse("TLSA lookup failed"))
            elif status == "secure":
                records = dane.usable(records)
                check = _dane_check(records) if records else None
                out[name] = Attempt(hosts, "dane", True, client.opportunistic_context(), check)
        if out:
            info["dane_hosts"] = sorted(out)
        return out

    async def open(self, plan: Plan, *, helo: str, connect_timeout: float,
                   command_timeout: float) -> client.RemoteSession:
        """The first session any attempt gives, its `tls_policy` filled in; ConnectFailed if none."""
        if plan.refusal:
            err = client.ConnectFailed(plan.refusal, bounces.TLS_REQUIRED)
            err.tls_policy = {"policy": "mta-sts", **plan.info, "failure": plan.refusal}
            log.warning("TLS policy not met, delivery deferred: %s", plan.refusal)
            raise err
        last: client.ConnectFailed | None = None
        for attempt in [*plan.attempts, *([plan.fallback] if plan.fallback else [])]:
            try:
                session = await client.open_session(
                    attempt.targets, helo=helo, require_tls=attempt.require_tls,
                    verify_context=self.verify_context if attempt.require_tls else None,
                    connect_timeout=connect_timeout, command_timeout=command_timeout,
                    tls_context=attempt.tls_context, check_peer=attempt.check_peer)
            except client.ConnectFailed as e:
                last = e
                continue
            session.tls_policy = _outcome(plan, attempt, session, last)
            metrics.DELIVERY_TLS_POLICY.labels(session.tls_policy["policy"]).inc()
            return session
        assert last is not None
        tried = [a.policy for a in plan.attempts] + (["mta-sts"] if plan.fallback else [])
        strict = [p for p in tried if p in ("dane", "mta-sts")]
        last.tls_policy = {"policy": (strict or tried)[0], **plan.info, "failure": last.reply}
        if strict:
            # The operator's view of a downgrade attempt or a broken recipient setup: mail waits.
            log.warning("TLS policy %s not met, delivery deferred: %s", strict[0], last.reply)
        raise last


def _append(attempts: list[Attempt], attempt: Attempt) -> None:
    """Consecutive targets with the same rules form one attempt (one open_session over them)."""
    prev = attempts[-1] if attempts else None
    if prev is not None and prev.policy == attempt.policy and prev.require_tls == attempt.require_tls \
            and prev.check_peer is attempt.check_peer and prev.tls_context is attempt.tls_context \
            and attempt.policy != "dane":
        prev.targets.extend(attempt.targets)
    else:
        attempts.append(attempt)


def _dane_check(records: list[dane.Tlsa]) -> Callable[[client.Target, Any], str | None]:
    def check(target: client.Target, ssl_object: Any) -> str | None:
        if ssl_object is None:
            return "no TLS session"
        problem = dane.check_chain(records, dane.peer_chain(ssl_object), target.name)
        return f"DANE: {problem}" if problem else None
    return check


def _refuse(reason: str) -> Callable[[client.Target, Any], str | None]:
    return lambda _t, _s: f"DANE: {reason}"


def _outcome(plan: Plan, attempt: Attempt, session: client.RemoteSession,
             failed: client.ConnectFailed | None) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": attempt.policy if session.tls_version else "none",
                           "version": session.tls_version, **plan.info}
    if attempt is plan.fallback:
        # RFC 8461 §5 testing: delivered as without a policy, and why the policy failed recorded.
        out["policy"] = "mta-sts"
        out["failure"] = failed.reply if failed is not None else "no MX host matches the policy"
    return out
