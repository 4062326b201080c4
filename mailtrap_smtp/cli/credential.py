"""`credential create|revoke|list`: the stream tokens apps authenticate with."""

from __future__ import annotations

import argparse
from typing import Any

from .. import config as config_mod
from ..core import credentials
from .common import Parsers, with_database
from .output import emit_json, emit_table, plain

STREAMS = ("transactional", "bulk")


@with_database
async def cmd_create(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    issued = await credentials.issue(pool, args.account, args.stream, name=args.name)
    row = issued.credential
    if args.json:
        emit_json({"token_id": row["public_id"], "account": args.account, "stream": row["stream"],
                   "token": issued.token})
    else:
        print(f"token id: {row['public_id']}   account: {args.account}   stream: {row['stream']}")
        print(f"token:    {issued.token}")
        print("This token is shown once; only its digest is stored. SMTP username: api, password: the token.")
    return 0


@with_database
async def cmd_revoke(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    row = await credentials.revoke(pool, args.token_id)
    print(f"revoked {row['public_id']} at {plain(row['revoked_at'])}")
    return 0


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    rows = [dict(r) | {"token_id": r["public_id"]} for r in await credentials.list_all(pool, args.account)]
    if args.json:
        emit_json([{k: v for k, v in r.items() if k != "public_id"} for r in rows])
    else:
        emit_table(rows, ["token_id", "account", "stream", "name", "created_at", "last_used_at", "revoked_at"])
    return 0


def register(sub: Any, p: Parsers) -> None:
    cred = p.group(sub, "credential", "manage SMTP/API tokens")
    s = p.add(cred, "create", cmd_create, "create a token for one stream (printed once)", listing=True)
    s.add_argument("account")
    s.add_argument("--stream", choices=STREAMS, required=True)
    s.add_argument("--name", help="a label for people")
    s = p.add(cred, "revoke", cmd_revoke, "revoke a token by its id (or the token itself)")
    s.add_argument("token_id")
    s = p.add(cred, "list", cmd_list, "tokens (ids only; tokens are never stored)", listing=True)
    s.add_argument("account", nargs="?")
