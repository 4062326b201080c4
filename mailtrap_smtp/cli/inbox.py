"""`inbox create|list|messages|download`: sandbox inboxes (messages kept, never delivered)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import config as config_mod
from .. import sandbox
from ..core import queue_admin
from .common import Parsers, run_with_pool, with_database
from .output import emit_json, emit_table


@with_database
async def cmd_create(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    row = await sandbox.create_inbox(pool, args.account, args.name)
    if args.json:
        emit_json({"id": row["id"], "account": args.account, "name": row["name"]})
    else:
        print(f"created inbox {row['id']} ({row['name']}) of account {args.account}: "
              f"send to it with POST /api/send/{row['id']}")
    return 0


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    rows = [dict(r) for r in await sandbox.list_inboxes(pool, args.account)]
    if args.json:
        emit_json(rows)
    else:
        emit_table(rows, ["id", "account", "name", "messages", "created_at"])
    return 0


@with_database
async def cmd_messages(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    rows = [dict(r) | {"recipients": ", ".join(r["recipients"])}
            for r in await sandbox.messages_of(pool, args.inbox_id, args.limit)]
    if args.json:
        emit_json(rows)
    else:
        emit_table(rows, ["id", "created_at", "mail_from", "recipients", "subject", "size"])
    return 0


def cmd_download(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    mid = queue_admin.parse_message_id(args.message_id)
    found: list[bytes] = []

    async def fetch(pool: Any) -> int:
        found.append(bytes((await sandbox.message(pool, mid))["raw"]))
        return 0

    run_with_pool(cfg, fetch)
    raw = found[0]
    if args.output:
        Path(args.output).write_bytes(raw)
    else:
        sys.stdout.buffer.write(raw)
    return 0


def register(sub: Any, p: Parsers) -> None:
    g = p.group(sub, "inbox", "sandbox inboxes: messages sent to them are kept, never delivered")
    s = p.add(g, "create", cmd_create, "create an inbox for an account", listing=True)
    s.add_argument("account")
    s.add_argument("name")
    s = p.add(g, "list", cmd_list, "inboxes and how many messages they hold", listing=True)
    s.add_argument("--account")
    s = p.add(g, "messages", cmd_messages, "the messages of an inbox, newest first", listing=True)
    s.add_argument("inbox_id", type=int)
    s.add_argument("--limit", type=int, default=100)
    s = p.add(g, "download", cmd_download, "a kept message as .eml (to stdout, or -o FILE)")
    s.add_argument("message_id")
    s.add_argument("-o", "--output", metavar="FILE", help="write the .eml here")
