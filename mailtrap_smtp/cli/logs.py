"""`logs list|show|export`: an account's email logs (MAILTRAP_COMPAT §7.1), and their export."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from .. import config as config_mod
from ..core import accounts
from ..core import email_logs as logs
from ..core import suppressions as sup
from ..store import email_logs as logs_store
from .common import CliError, Parsers, run_with_pool, with_database
from .output import emit_json, emit_pairs, emit_table


def _request(args: argparse.Namespace) -> logs.ListRequest:
    conditions = []
    for spec in args.filter or []:
        name, _, rest = spec.partition(":")
        operator, _, values = rest.partition(":")
        if name not in logs_store.FIELDS:
            raise CliError(f"--filter {spec!r}: no field {name!r} (fields: {', '.join(logs_store.FIELDS)})")
        conditions.append(logs.condition(name, operator or None, values.split(",") if values else []))
    return logs.ListRequest(conditions, sup.parse_time("--since", args.since), sup.parse_time("--until", args.until),
                            sup.parse_id(args.after) if getattr(args, "after", None) else None)


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    page = await logs.list_logs(pool, int(account["id"]), _request(args), page_size=args.limit)
    if args.json:
        emit_json(page)
        return 0
    emit_table(page["messages"], ["message_id", "sent_at", "status", "from", "to", "subject"])
    print(f"\n{page['total_count']} in all" + (f"; next page: --after {page['next_page_cursor']}"
                                                if page["next_page_cursor"] else ""))
    return 0


def cmd_show(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    entry_id = sup.parse_id(args.id)

    async def show(pool: Any) -> int:
        account_id = int((await accounts.get(pool, args.account))["id"])
        if args.raw:
            sys.stdout.buffer.write(await logs.raw_message(pool, account_id, entry_id))
            return 0
        msg = await logs.show(pool, account_id, entry_id)
        if args.json:
            emit_json(msg)
            return 0
        emit_pairs([(k, msg[k]) for k in ("message_id", "status", "sent_at", "from", "to", "subject", "category",
                                          "sending_stream", "sending_domain_id", "client_ip")])
        print("\nevents:")
        emit_table([{**e, "details": json.dumps(e["details"])} for e in msg["events"]],
                   ["created_at", "event_type", "details"])
        return 0

    return run_with_pool(cfg, show)


def cmd_export(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    logs.check_format(args.format)
    req = _request(args)
    try:
        out: TextIO = sys.stdout if args.output in (None, "-") else open(args.output, "w", encoding="utf-8")
    except OSError as e:
        raise CliError(f"{args.output}: {e.strerror}") from None

    async def export(pool: Any) -> int:
        account_id = int((await accounts.get(pool, args.account))["id"])
        async for line in logs.export(pool, account_id, req, args.format):
            out.write(line)
        return 0

    try:
        return run_with_pool(cfg, export)
    finally:
        if out is not sys.stdout:
            out.close()


def _filters(s: Any) -> None:
    s.add_argument("account")
    s.add_argument("--filter", action="append", metavar="FIELD:OPERATOR[:VALUE,...]",
                   help="as the API's filters[FIELD][operator] and [value]; repeatable")
    s.add_argument("--since", help="sent at or after (ISO 8601)")
    s.add_argument("--until", help="sent at or before (ISO 8601)")


def register(sub: Any, p: Parsers) -> None:
    g = p.group(sub, "logs", "email logs: one entry per recipient, newest first")
    s = p.add(g, "list", cmd_list, "one page of an account's email log", listing=True)
    _filters(s)
    s.add_argument("--after", metavar="ID", help="the next-page cursor of the previous page")
    s.add_argument("--limit", type=int, default=logs.PAGE_SIZE, help="entries per page")
    s = p.add(g, "show", cmd_show, "one entry with its events", listing=True)
    s.add_argument("account")
    s.add_argument("id", help="the entry's message id (or the SMTP 'queued as' id)")
    s.add_argument("--raw", action="store_true", help="print the stored message itself")
    s = p.add(g, "export", cmd_export, "every matching entry as CSV or JSON Lines, streamed")
    _filters(s)
    s.add_argument("--format", default="csv", help="csv (default) or jsonl")
    s.add_argument("--output", metavar="FILE", help="write there instead of standard output")
