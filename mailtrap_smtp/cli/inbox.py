"""`inbox create|list|messages|download`: sandbox inboxes, where messages sent to them wait unsent."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from .. import config as config_mod
from ..core import accounts, sandbox
from .common import CliError, Parsers, run_with_pool, with_database
from .output import emit_json, emit_table


@with_database
async def cmd_create(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    inbox = await sandbox.create_inbox(pool, account["id"], args.name)
    if args.json:
        emit_json(dataclasses.asdict(inbox))
    else:
        print(f"created sandbox inbox {inbox.id} {inbox.name!r} for account {args.account} "
              f"(send to it with POST /api/send/{inbox.id})")
    return 0


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    rows = [dataclasses.asdict(i) for i in await sandbox.list_inboxes(pool, account["id"])]
    if args.json:
        emit_json(rows)
    else:
        emit_table(rows, ["id", "name", "messages", "unread", "created_at"])
    return 0


@with_database
async def cmd_messages(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    rows = [dataclasses.asdict(m) for m in await sandbox.list_messages(pool, account["id"], args.inbox_id, args.limit)]
    if args.json:
        emit_json(rows)
    else:
        emit_table([r | {"recipients": ",".join(r["recipients"])} for r in rows],
                   ["id", "created_at", "mail_from", "recipients", "subject", "size"])
    return 0


def cmd_download(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    # The file is written after the database is closed (no blocking I/O inside the event loop).
    found: list[bytes] = []

    async def fetch(pool: Any) -> int:
        account = await accounts.get(pool, args.account)
        found.append(await sandbox.message_eml(pool, account["id"], args.message_id))
        return 0

    run_with_pool(cfg, fetch)
    eml = found[0]
    if args.output in (None, "-"):
        sys.stdout.flush()
        sys.stdout.buffer.write(eml)
        sys.stdout.buffer.flush()
        return 0
    try:
        Path(args.output).write_bytes(eml)
    except OSError as e:
        raise CliError(f"cannot write {args.output}: {e.strerror or e}") from None
    print(f"wrote {len(eml)} bytes to {args.output}")
    return 0


def register(sub: Any, p: Parsers) -> None:
    inbox = p.group(sub, "inbox", "sandbox inboxes: messages sent to one are kept, never delivered")
    s = p.add(inbox, "create", cmd_create, "create a sandbox inbox", listing=True)
    s.add_argument("account")
    s.add_argument("name")
    s = p.add(inbox, "list", cmd_list, "the account's sandbox inboxes and how many messages each holds",
              listing=True)
    s.add_argument("account")
    s = p.add(inbox, "messages", cmd_messages, "the messages of one inbox, newest first", listing=True)
    s.add_argument("account")
    s.add_argument("inbox_id", type=int)
    s.add_argument("--limit", type=int, default=100, help=f"at most this many (up to {sandbox.LIST_LIMIT_MAX})")
    s = p.add(inbox, "download", cmd_download, "a message exactly as it was sent (.eml)")
    s.add_argument("account")
    s.add_argument("message_id")
    s.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
