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

What the message asked (RFC 8689, `messages.tls_required`) changes the plan:
* REQUIRETLS (§4.2.1): each MX host must be authenticated (a DNSSEC-validated MX RRset, or listed by
  the domain's MTA-STS policy; a route is the operator's own choice), its certificate verified (DANE
  where it applies, else the Web PKI or `delivery.tls_ca_file` for the MX name), and it must offer
  REQUIRETLS after STARTTLS; then MAIL carries `REQUIRETLS`. Hosts are tried in MX order; when none
  qualifies the message is returned (5.7.30 no REQUIRETLS, 5.7.10 no protected session), never
  sent in clear or to a host without REQUIRETLS. Only a host that could not be reached at all (or
  an MTA-STS policy that could not be fetched) makes it wait instead.
* `TLS-Required: No` (§4.2.2): the recipient's policy is tried first; if it cannot be met the
  message goes as without one (like MTA-STS testing), the failure recorded. The operator's own
  `require_tls` rules still apply.

The outcome goes into the delivery event as `details.tls_policy`, in the vocabulary of
delivery/tlsoutcome.py.
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
from .tlsoutcome import STRICT, Applied, Request

# RFC 8689 §4.2.1: the statuses of a message returned because REQUIRETLS could not be honoured.
REQUIRETLS_NOT_OFFERED = "5.7.30"  # "REQUIRETLS support required"
ENCRYPTION_NEEDED = "5.7.10"       # no TLS-protected session with an authenticated host
# A DANE host whose TLSA records could not be looked up: may work next time (`_fell_short`).
_TLSA_LOOKUP_FAILED = "TLSA lookup failed"

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """Some targets, in MX order, and how they may be used."""

    targets: list[client.Target]
    policy: Applied  # never NONE: that is what an attempt becomes when it ends up in clear
    require_tls: bool
    tls_context: ssl.SSLContext | None = None
    check_peer: Callable[[client.Target, Any], str | None] | None = None
    mx_auth: str = ""  # REQUIRETLS: how the host was authenticated (tlsoutcome.py)


@dataclass
class Plan:
    attempts: list[Attempt]
    info: dict[str, Any] = field(default_factory=dict)
    fallback: Attempt | None = None  # MTA-STS testing, TLS-Required: No: used when every attempt failed
    refusal: str = ""                 # nothing may be tried: the failure's reason
    strict: Applied = Applied.MTA_STS  # the policy a refusal or the fallback stands for
    bounce: str = ""                  # REQUIRETLS: the refusal returns the message with this status
    fallback_reason: str = ""         # TLS-Required: No: the refusal the fallback set aside


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
                   routed: bool, request: bool | None = None) -> Plan:
        """How to reach `domain`; `request` is the message's `tls_required` (RFC 8689)."""
        if request is True:
            return await self._requiretls_plan(domain, targets, routed)
        plan = await self._policy_plan(domain, targets, require_tls=require_tls, routed=routed)
        if request is False:
            _tls_required_no(plan, targets, require_tls)
        return plan

    async def _policy_plan(self, domain: str, targets: list[client.Target], *, require_tls: bool,
                           routed: bool) -> Plan:
        base = Applied.REQUIRED if require_tls else Applied.OPPORTUNISTIC
        if routed or not targets:
            return Plan([Attempt(targets, base, require_tls)])
        info: dict[str, Any] = {}
        _, per_host = await self._dane(domain, targets, info) if self.delivery_cfg.dane else (False, {})
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
                attempt = Attempt([t], Applied.MTA_STS, True, self.verify_context)
            else:
                attempt = Attempt([t], base, require_tls)
            _append(attempts, attempt)
        plan = Plan(attempts, info)
        if policy is not None and policy.mode == "testing" and fallback_targets:
            plan.fallback = Attempt(fallback_targets, base, require_tls)
        if not attempts and plan.fallback is None:
            if policy is not None:
                plan.refusal = f"MTA-STS policy of {domain} (enforce) lists none of its MX hosts"
            else:
                plan.refusal, plan.strict = f"no usable MX host for {domain} (DANE)", Applied.DANE
        return plan

    async def _requiretls_plan(self, domain: str, targets: list[client.Target], routed: bool) -> Plan:
        """RFC 8689 §4.2.1: one attempt per authenticated host, in MX order; none → the message is returned."""
        info: dict[str, Any] = {"request": Request.REQUIRETLS}
        if routed:
            # The operator's next hop: no MX record to authenticate; the certificate must name the route's host.
            return Plan([self._requiretls_attempt(t, "route") for t in targets], info, strict=Applied.REQUIRETLS)
        secure, per_host = await self._dane(domain, targets, info) if self.delivery_cfg.dane else (False, {})
        policy, note = await self.mta_sts.policy(domain) if self.delivery_cfg.mta_sts else (None, "")
        # Both modes name the MX hosts (RFC 8461 §4.1); `none` names none.
        listing = policy if policy is not None and policy.mode in ("enforce", "testing") else None
        if listing is not None:
            info.update(mode=listing.mode, note=note)
        attempts: list[Attempt] = []
        for t in targets:
            by_dane = per_host.get(t.name)
            if by_dane is not None:
                # DANE checks the certificate where it has usable records; otherwise the Web PKI does.
                attempts.append(self._requiretls_attempt(t, "dnssec", by_dane.check_peer))
            elif secure:
                attempts.append(self._requiretls_attempt(t, "dnssec"))
            elif listing is not None and listing.matches(t.name):
                attempts.append(self._requiretls_attempt(t, "mta-sts"))
        plan = Plan(attempts, info, strict=Applied.REQUIRETLS)
        if not attempts:
            plan.refusal = (f"REQUIRETLS: no MX host of {domain} is authenticated (no DNSSEC-validated MX "
                            f"records, no MTA-STS policy listing one{': ' + note if note else ''})")
            # An MTA-STS policy that could not be fetched may list them next time: wait for it.
            plan.bounce = "" if mtasts.may_find_later(note) else ENCRYPTION_NEEDED
        return plan

    def _requiretls_attempt(self, target: client.Target, mx_auth: str,
                            check_peer: Callable[[client.Target, Any], str | None] | None = None) -> Attempt:
        context = client.opportunistic_context() if check_peer is not None else self.verify_context
        return Attempt([target], Applied.REQUIRETLS, True, context, check_peer, mx_auth)

    async def _dane(self, domain: str, targets: list[client.Target],
                    info: dict[str, Any]) -> tuple[bool, dict[str, Attempt]]:
        """(whether the MX RRset is DNSSEC-authenticated, the DANE attempt of each host with TLSA records)."""
        if self._dane_resolver is None:
            self._dane_resolver = dane.validating(self.resolver)
        if not await dane.mx_secure(self._dane_resolver, domain):
            return False, {}
        out: dict[str, Attempt] = {}
        for name in dict.fromkeys(t.name for t in targets):
            status, records = await dane.tlsa_records(self._dane_resolver, name)
            hosts = [t for t in targets if t.name == name]
            if status == "error":
                # RFC 7672 §2.2: a host whose TLSA RRset cannot be looked up is not used at all.
                out[name] = Attempt(hosts, Applied.DANE, True, check_peer=_refuse(_TLSA_LOOKUP_FAILED))
            elif status == "secure":
                records = dane.usable(records)
                check = _dane_check(records) if records else None
                out[name] = Attempt(hosts, Applied.DANE, True, client.opportunistic_context(), check)
        if out:
            info["dane_hosts"] = sorted(out)
        return True, out

    async def open(self, plan: Plan, *, helo: str, connect_timeout: float,
                   command_timeout: float) -> client.RemoteSession:
        """The first session any attempt gives, its `tls_policy` filled in; ConnectFailed if none."""
        if plan.refusal:
            err = client.ConnectFailed(plan.refusal, bounces.TLS_REQUIRED)
            err.tls_policy = {"policy": plan.strict, **plan.info, "failure": plan.refusal}
            err.bounce = plan.bounce
            metrics.DELIVERY_TLS_POLICY_FAILURES.labels(plan.strict).inc()
            log.warning("TLS policy not met, delivery %s: %s", "refused" if plan.bounce else "deferred", plan.refusal)
            raise err
        last: client.ConnectFailed | None = None
        reached_all = True  # REQUIRETLS: every host answered (and fell short), so the message is returned
        for attempt in [*plan.attempts, *([plan.fallback] if plan.fallback else [])]:
            try:
                session = await client.open_session(
                    attempt.targets, helo=helo, require_tls=attempt.require_tls,
                    verify_context=self.verify_context if attempt.require_tls else None,
                    connect_timeout=connect_timeout, command_timeout=command_timeout,
                    tls_context=attempt.tls_context, check_peer=attempt.check_peer)
                if attempt.policy is Applied.REQUIRETLS:
                    await _offers_requiretls(session)
            except client.ConnectFailed as e:
                last = e
                reached_all = reached_all and _fell_short(e)
                continue
            session.tls_policy = _outcome(plan, attempt, session, last)
            metrics.DELIVERY_TLS_POLICY.labels(session.tls_policy["policy"], session.tls_version or "none").inc()
            if "failure" in session.tls_policy:
                metrics.DELIVERY_TLS_POLICY_FAILURES.labels(session.tls_policy["policy"]).inc()
            return session
        assert last is not None
        tried = [a.policy for a in plan.attempts] + ([plan.strict] if plan.fallback else [])
        strict = [p for p in tried if p in STRICT]
        last.tls_policy = {"policy": (strict or tried)[0], **plan.info, "failure": last.reply}
        if plan.strict is Applied.REQUIRETLS and reached_all:
            last.bounce = last.bounce or ENCRYPTION_NEEDED
        if strict:
            metrics.DELIVERY_TLS_POLICY_FAILURES.labels(strict[0]).inc()
            # The operator's view of a downgrade attempt or a broken recipient setup: mail waits.
            log.warning("TLS policy %s not met, delivery %s: %s", strict[0],
                        "refused" if last.bounce else "deferred", last.reply)
        raise last


def _tls_required_no(plan: Plan, targets: list[client.Target], require_tls: bool) -> None:
    """RFC 8689 §4.2.2: follow the recipient's policy if possible, but do not fail if it cannot be met:
    every MX host, in order, as without a policy (the operator's own `require_tls` rules still hold)."""
    plan.info["request"] = Request.TLS_REQUIRED_NO
    strict = [a.policy for a in plan.attempts if a.policy in STRICT]
    if not strict and not plan.refusal:
        return  # no recipient policy applies: nothing to set aside
    if strict:
        plan.strict = strict[0]
    base = Applied.REQUIRED if require_tls else Applied.OPPORTUNISTIC
    plan.fallback = Attempt(list(targets), base, require_tls)
    plan.fallback_reason, plan.refusal = plan.refusal, ""


async def _offers_requiretls(session: client.RemoteSession) -> None:
    """RFC 8689 §4.2.1 step 5: the EHLO after STARTTLS must offer REQUIRETLS; then MAIL carries it."""
    if session.smtp.supports_extension("requiretls"):
        session.mail_options.append("REQUIRETLS")
        return
    await session.close()  # QUIT: the next MX host may do better
    err = client.ConnectFailed(f"{session.mx} [{session.target.address}] does not offer REQUIRETLS",
                               bounces.TLS_REQUIRED, session.mx)
    err.bounce = REQUIRETLS_NOT_OFFERED
    raise err


def _fell_short(err: client.ConnectFailed) -> bool:
    """A host that answered and fell short of REQUIRETLS (not one that could not be reached, nor a
    TLSA record that could not be looked up: those may work next time)."""
    return err.category == bounces.TLS_REQUIRED and _TLSA_LOOKUP_FAILED not in err.reply


def _append(attempts: list[Attempt], attempt: Attempt) -> None:
    """Consecutive targets with the same rules form one attempt (one open_session over them)."""
    prev = attempts[-1] if attempts else None
    if prev is not None and prev.policy == attempt.policy and prev.require_tls == attempt.require_tls \
            and prev.check_peer is attempt.check_peer and prev.tls_context is attempt.tls_context \
            and attempt.policy is not Applied.DANE:
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
    out: dict[str, Any] = {"policy": attempt.policy if session.tls_version else Applied.NONE,
                           "version": session.tls_version, **plan.info}
    if attempt.mx_auth:
        out["mx_auth"] = attempt.mx_auth
    if attempt is plan.fallback:
        # RFC 8461 §5 testing, RFC 8689 §4.2.2 TLS-Required: No: delivered as without a policy, and
        # why the policy failed recorded.
        out["policy"] = plan.strict
        out["failure"] = failed.reply if failed is not None else (
            plan.fallback_reason or "no MX host matches the policy")
    return out
