"""Named plans (`[plans.<name>]` in the config): creating an account on a plan and moving it to another.

A plan's values are copied onto the account, so the limit and thresholds the accepting statement
checks are the account row's (the same on every node, read at every AUTH and API request):
raising an account's plan lets it send again at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import PlanConfig
from ..store import accounts as accounts_store
from ..store.types import Conn, Record
from .refusal import Kind, Refused


@dataclass(frozen=True)
class NamedPlan:
    name: str
    monthly_limit: int
    max_message_size: int
    alert_thresholds: tuple[int, ...]


def named(plans: Mapping[str, PlanConfig], name: str) -> NamedPlan:
    plan = plans.get(name)
    if plan is None:
        known = ", ".join(sorted(plans)) or "none configured"
        raise Refused(f"no plan named {name!r} (plans: {known})", kind=Kind.NOT_FOUND)
    return NamedPlan(name, plan.monthly_messages, plan.message_size, tuple(sorted(plan.alert_thresholds)))


async def create(conn: Conn, name: str, plan: NamedPlan, *, billing_anchor_day: int = 1,
                 alert_email: str | None = None) -> Record:
    if not 1 <= billing_anchor_day <= 31:
        raise Refused("billing_anchor_day must be between 1 and 31")
    try:
        return await accounts_store.create(
            conn, name, monthly_limit=plan.monthly_limit, max_message_size=plan.max_message_size,
            billing_anchor_day=billing_anchor_day, alert_email=alert_email, plan=plan.name,
            alert_thresholds=plan.alert_thresholds)
    except KeyError:
        raise Refused(f"account {name!r} already exists", kind=Kind.CONFLICT) from None


async def set_plan(conn: Conn, account_name: str, plan: NamedPlan) -> Record:
    account = await accounts_store.get_by_name(conn, account_name)
    row = None if account is None else await accounts_store.set_plan(
        conn, int(account["id"]), plan=plan.name, monthly_limit=plan.monthly_limit,
        max_message_size=plan.max_message_size, alert_thresholds=plan.alert_thresholds)
    if row is None:
        raise Refused(f"no account named {account_name!r}", kind=Kind.NOT_FOUND)
    return row
