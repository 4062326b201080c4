"""`account create|show|list`: accounts and their plans."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from .. import config as config_mod
from ..core import accounts
from .common import CliError, Parsers, run_with_pool, with_database
from .output import emit_json, emit_pairs, emit_table


def cmd_create(cfg: config_mod.Config, args: argparse.Namespace) -> int:
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
    s = p.add(acc, "show", cmd_show, "plan, usage this period and limits of an account", listing=True)
    s.add_argument("name")
    p.add(acc, "list", cmd_list, "all accounts", listing=True)
