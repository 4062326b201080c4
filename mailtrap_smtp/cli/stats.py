"""`stats`: an account's sending stats over a date range (MAILTRAP_COMPAT §7.2)."""

from __future__ import annotations

import argparse
from typing import Any

from .. import config as config_mod
from ..core import accounts
from ..core import stats as stats_uc
from .common import Parsers, with_database
from .output import emit_json, emit_pairs, emit_table


@with_database
async def cmd_show(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account_id = int((await accounts.get(pool, args.account))["id"])
    params = {"start_date": [args.start_date], "end_date": [args.end_date],
              "sending_domain_ids[]": [str(d) for d in args.domain_id or []],
              "categories[]": args.category or [], "sending_streams[]": args.stream or [],
              "email_service_providers[]": args.provider or []}
    req = stats_uc.parse_query({k: v for k, v in params.items() if v})
    if args.by is None:
        data: Any = await stats_uc.totals(pool, account_id, req)
        if args.json:
            emit_json(data)
        else:
            emit_pairs(list(data.items()))
        return 0
    data = await stats_uc.grouped(pool, account_id, req, args.by)
    key = stats_uc.GROUPINGS[args.by][1]
    if args.json:
        emit_json(data)
    else:
        emit_table([{key: g[key], **g["stats"]} for g in data],
                   [key, "delivery_count", "delivery_rate", "bounce_count", "bounce_rate"])
    return 0


def register(sub: Any, p: Parsers) -> None:
    s = p.add(sub, "stats", cmd_show, "sending stats of an account over a date range", listing=True)
    s.add_argument("account")
    s.add_argument("--start-date", required=True, metavar="YYYY-MM-DD")
    s.add_argument("--end-date", required=True, metavar="YYYY-MM-DD")
    s.add_argument("--by", choices=list(stats_uc.GROUPINGS), help="group by domains, categories, ...")
    s.add_argument("--domain-id", type=int, action="append")
    s.add_argument("--category", action="append")
    s.add_argument("--stream", action="append", choices=["transactional", "bulk"])
    s.add_argument("--provider", action="append")
