"""Account use cases: an account's plan (checked against the configured limits), creation, look-up
and a summary of its usage in the current billing period."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from .. import quota
from ..config import LimitsConfig
from ..store import accounts as accounts_store
from ..store import credentials as credentials_store
from ..store import domains as domains_store
from ..store import usage as usage_store
from ..store.types import Conn, Record
from .refusal import Kind, Refused


class PlanError(Refused):
    """A plan value out of range: `field` (the plan's name for it) and the `rule` it breaks."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field} {rule}")
        self.field, self.rule = field, rule


@dataclass(frozen=True)
class Plan:
    monthly_limit: int
    max_message_size: int
    billing_anchor_day: int


def plan_for(limits: LimitsConfig, *, monthly_limit: int | None = None, max_message_size: int | None = None,
             billing_anchor_day: int = 1) -> Plan:
    """The plan asked for, with the configured defaults filled in; PlanError when a value is out of range."""
    limit = monthly_limit if monthly_limit is not None else limits.monthly_messages
    size = max_message_size if max_message_size is not None else limits.message_size
    if limit < 0:
        raise PlanError("monthly_limit", "must be 0 or more")
    if not 0 < size <= limits.message_size_cap:
        raise PlanError("max_message_size",
                        f"must be between 1 and limits.message_size_cap ({limits.message_size_cap})")
    if not 1 <= billing_anchor_day <= 31:
        raise PlanError("billing_anchor_day", "must be between 1 and 31")
    return Plan(limit, size, billing_anchor_day)


async def create(conn: Conn, name: str, plan: Plan, *, alert_email: str | None = None) -> Record:
    try:
        return await accounts_store.create(conn, name, monthly_limit=plan.monthly_limit,
                                           max_message_size=plan.max_message_size,
                                           billing_anchor_day=plan.billing_anchor_day, alert_email=alert_email)
    except KeyError:
        raise Refused(f"account {name!r} already exists", kind=Kind.CONFLICT) from None


async def find(conn: Conn, name: str) -> Record | None:
    return await accounts_store.get_by_name(conn, name)


async def get(conn: Conn, name: str) -> Record:
    row = await find(conn, name)
    if row is None:
        raise Refused(f"no account named {name!r}", kind=Kind.NOT_FOUND)
    return row


async def set_list_unsubscribe(conn: Conn, name: str, enabled: bool) -> Record:
    """Turn the RFC 8058 one-click headers of the account's bulk messages on or off (`list_unsubscribe.py`);
    sessions that authenticate from now on see it."""
    row = await accounts_store.set_list_unsubscribe(conn, (await get(conn, name))["id"], enabled)
    if row is None:
        raise Refused(f"no account named {name!r}", kind=Kind.NOT_FOUND)
    return row


async def set_require_tls(conn: Conn, name: str, enabled: bool) -> Record:
    """Send every message of the account as REQUIRETLS (RFC 8689: every hop TLS with an authenticated
    MX and certificate, else the message is returned), or stop; messages accepted from sessions that
    authenticate from now on carry it (each message keeps what it was accepted with)."""
    row = await accounts_store.set_require_tls(conn, (await get(conn, name))["id"], enabled)
    if row is None:
        raise Refused(f"no account named {name!r}")
    return row


async def summary(conn: Conn, row: Record, today: dt.date) -> dict[str, Any]:
    """The account's plan, its usage in the billing period containing `today`, its domains and live tokens."""
    start = quota.period_start(row["billing_anchor_day"], today)
    used = await usage_store.used(conn, row["id"], start)
    return {
        "name": row["name"], "monthly_limit": row["monthly_limit"], "used_this_period": used,
        "remaining": max(0, row["monthly_limit"] - used), "period_start": start,
        "period_end": quota.period_end(row["billing_anchor_day"], today),
        "max_message_size": row["max_message_size"], "billing_anchor_day": row["billing_anchor_day"],
        "alert_email": row["alert_email"], "list_unsubscribe": row["list_unsubscribe"],
        "require_tls": row["require_tls"],
        "created_at": row["created_at"],
        "domains": [d["name"] for d in await domains_store.list_all(conn, row["id"])],
        "credentials": [c["public_id"] for c in await credentials_store.list_all(conn, row["id"])
                        if c["revoked_at"] is None],
    }


async def summaries(conn: Conn, today: dt.date) -> list[dict[str, Any]]:
    return [await summary(conn, r, today) for r in await accounts_store.list_all(conn)]
