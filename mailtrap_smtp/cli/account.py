"""`account create|set-plan|list-unsubscribe|erase-recipient|show|list`: accounts, their plans and
options, and erasure."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from .. import config as config_mod
from ..core import accounts, plans, retention
from .common import CliError, Command, Parsers, run_with_pool, with_database
from .output import emit_json, emit_pairs, emit_table


def cmd_create(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    if args.plan is not None:
        return _create_on_plan(cfg, args)
    try:
        plan = accounts.plan_for(cfg.limits, monthly_limit=args.monthly_limit,
                                 max_message_size=args.max_message_size, billing_anchor_day=args.billing_anchor_day)
    except accounts.PlanError as e:
        raise CliError(f"--{e.field.replace('_', '-')} {e.rule}") from None

    async def create(pool: Any) -> int:
        row = await accounts.create(pool, args.name, plan, alert_email=args.alert_email)
        if args.json:
            emit_json(dict(row))
        else:
            print(f"created account {row['name']} (monthly limit {row['monthly_limit']}, "
                  f"max message size {row['max_message_size']} bytes)")
        return 0

    return run_with_pool(cfg, create)


def _create_on_plan(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    if args.monthly_limit is not None or args.max_message_size is not None:
        raise CliError("--plan sets the limits: leave out --monthly-limit and --max-message-size")
    plan = plans.named(cfg.plans, args.plan)

    async def create(pool: Any) -> int:
        row = await plans.create(pool, args.name, plan, billing_anchor_day=args.billing_anchor_day,
                                 alert_email=args.alert_email)
        if args.json:
            emit_json(dict(row))
        else:
            print(f"created account {row['name']} on plan {plan.name} (monthly limit {row['monthly_limit']}, "
                  f"max message size {row['max_message_size']} bytes)")
        return 0

    return run_with_pool(cfg, create)


def cmd_set_plan(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    plan = plans.named(cfg.plans, args.plan)

    async def apply(pool: Any) -> int:
        row = await plans.set_plan(pool, args.name, plan)
        if args.json:
            emit_json(dict(row))
        else:
            print(f"account {row['name']} is on plan {plan.name} (monthly limit {row['monthly_limit']}, "
                  f"max message size {row['max_message_size']} bytes, alerts at "
                  f"{', '.join(f'{t} %' for t in row['alert_thresholds'])})")
        return 0

    return run_with_pool(cfg, apply)


def _switch(setter: Callable[[Any, str, bool], Awaitable[Any]], what: str) -> Command:
    """An `account <option> NAME on|off` command: one account option turned on or off."""

    @with_database
    async def command(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
        row = await setter(pool, args.name, args.state == "on")
        if args.json:
            emit_json(dict(row))
        else:
            print(f"account {row['name']}: {what} {args.state}")
        return 0

    return command


cmd_list_unsubscribe = _switch(accounts.set_list_unsubscribe, "one-click List-Unsubscribe on bulk messages")
cmd_require_tls = _switch(accounts.set_require_tls, "REQUIRETLS (RFC 8689) for every message")


@with_database
async def cmd_erase_recipient(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    removed = await retention.erase_recipient(pool, args.name, args.email)
    if args.json:
        emit_json(removed)
    else:
        print(f"erased {args.email} from account {args.name}: " + ", ".join(f"{n} {k}" for k, n in removed.items()))
    return 0


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@with_database
async def cmd_show(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    summary = await accounts.summary(pool, await accounts.get(pool, args.name), _today())
    if args.json:
        emit_json(summary)
    else:
        emit_pairs([(k, ", ".join(v) if isinstance(v, list) else v) for k, v in summary.items()])
    return 0


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    rows = await accounts.summaries(pool, _today())
    if args.json:
        emit_json(rows)
    else:
        emit_table(rows, ["name", "monthly_limit", "used_this_period", "max_message_size", "period_start"])
    return 0


def register(sub: Any, p: Parsers) -> None:
    acc = p.group(sub, "account", "manage accounts")
    s = p.add(acc, "create", cmd_create, "create an account with its plan", listing=True)
    s.add_argument("name")
    s.add_argument("--monthly-limit", type=int, help="recipients per billing period (default limits.monthly_messages)")
    s.add_argument("--max-message-size", type=int, metavar="BYTES", help="default limits.message_size")
    s.add_argument("--billing-anchor-day", type=int, default=1, help="day of month the period starts (1-31)")
    s.add_argument("--alert-email", help="where limit alerts go")
    s.add_argument("--plan", help="a plan of the config's [plans.<name>] (sets the limits and alert thresholds)")
    s = p.add(acc, "set-plan", cmd_set_plan, "move an account to a configured plan (takes effect at once)",
              listing=True)
    s.add_argument("name")
    s.add_argument("plan")
    s = p.add(acc, "list-unsubscribe", cmd_list_unsubscribe,
              "add RFC 8058 one-click List-Unsubscribe headers to the account's bulk messages, or stop",
              listing=True)
    s.add_argument("name")
    s.add_argument("state", choices=("on", "off"))
    s = p.add(acc, "require-tls", cmd_require_tls,
              "deliver every message of the account as REQUIRETLS (RFC 8689: verified TLS on every hop, "
              "else returned), or stop", listing=True)
    s.add_argument("name")
    s.add_argument("state", choices=("on", "off"))
    s = p.add(acc, "erase-recipient", cmd_erase_recipient,
              "remove an address from every stored message, log and suppression of the account", listing=True)
    s.add_argument("name")
    s.add_argument("email")
    s = p.add(acc, "show", cmd_show, "plan, usage this period and limits of an account", listing=True)
    s.add_argument("name")
    p.add(acc, "list", cmd_list, "all accounts", listing=True)
