"""`queue list|show|retry|bounce`: the delivery queue as the operator sees and acts on it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import config as config_mod
from ..core import queue_admin
from .common import Parsers, run_with_pool, with_database
from .output import emit_json, emit_pairs, emit_table


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    rows = await queue_admin.list_recipients(pool, state=args.state, domain=args.domain, account=args.account,
                                             limit=args.limit)
    if args.json:
        emit_json(rows)
    else:
        emit_table(rows, ["message_id", "account", "mail_from", "rcpt", "state", "attempts",
                          "next_attempt_at", "last_reply"])
    return 0


def cmd_show(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    mid = queue_admin.parse_message_id(args.message_id)

    async def show(pool: Any) -> int:
        view = await queue_admin.show(pool, mid)
        if args.raw:
            sys.stdout.buffer.write(view.raw)
        elif args.json:
            emit_json(view.details)
        else:
            _print_message(view.details)
        return 0

    return run_with_pool(cfg, show)


def _print_message(data: dict[str, Any]) -> None:
    emit_pairs([(k, data[k]) for k in ("message_id", "account", "stream", "mail_from", "header_from",
                                       "subject", "size", "created_at", "client_ip", "smtputf8")]
               + [("tls_request", data["tls_request"] or "none")])
    print("\nheaders:")
    for h in data["headers"]:
        # Whole values, folds kept as continuation lines (RFC 5322 §2.2.3): a DKIM signature or a
        # long Subject is what the operator came to read.
        value = "\n    ".join(part.strip() for part in h["value"].split("\r\n"))
        print(f"  {h['name']}: {value}")
    print("\nrecipients:")
    emit_table(data["recipients"], ["rcpt", "state", "attempts", "next_attempt_at", "last_reply"])
    print("\nevents:")
    emit_table([{**e, "details": json.dumps(e["details"])} for e in data["events"]],
               ["created_at", "type", "rcpt", "details"])


def cmd_retry(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    mid = queue_admin.parse_message_id(args.message_id)

    async def retry(pool: Any) -> int:
        print(f"retry: {await queue_admin.retry(pool, mid)} recipient(s) of {mid}")
        return 0

    return run_with_pool(cfg, retry)


def cmd_bounce(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    mid = queue_admin.parse_message_id(args.message_id)

    async def bounce(pool: Any) -> int:
        print(f"bounce: {await queue_admin.bounce(pool, mid)} recipient(s) of {mid}")
        return 0

    return run_with_pool(cfg, bounce)


def register(sub: Any, p: Parsers) -> None:
    q = p.group(sub, "queue", "inspect and act on the delivery queue")
    s = p.add(q, "list", cmd_list, "recipients in the queue, newest first", listing=True)
    s.add_argument("--state", choices=["queued", "delivered", "bounced", "expired", "rejected"])
    s.add_argument("--domain", help="destination domain")
    s.add_argument("--account")
    s.add_argument("--limit", type=int, default=100)
    s = p.add(q, "show", cmd_show, "envelope, headers, recipients and events of a message", listing=True)
    s.add_argument("message_id")
    s.add_argument("--raw", action="store_true", help="print the stored message exactly as it will be relayed")
    s = p.add(q, "retry", cmd_retry, "make a message's undelivered recipients due now")
    s.add_argument("message_id")
    s = p.add(q, "bounce", cmd_bounce, "give up on a message's queued recipients")
    s.add_argument("message_id")
