"""`credential create|revoke|list`: the tokens apps authenticate with, and what each may do."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from .. import config as config_mod
from ..core import credentials
from ..permissions import STREAMS, Level
from .common import Parsers, with_database
from .output import emit_json, emit_table, plain


def _grant_text(streams: Sequence[str], level: str, domains: Sequence[str] | None) -> dict[str, str]:
    return {"streams": ",".join(streams), "level": level,
            "domains": "all" if domains is None else ",".join(domains) or "(none left)"}


@with_database
async def cmd_create(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    new = await credentials.issue(pool, args.account, args.stream, level=args.level, domains=args.domain,
                                  name=args.name)
    if args.json:
        emit_json({"token_id": new.token_id, "account": args.account, "streams": new.grant.stream_list,
                   "level": new.grant.level.value, "domains": new.domains, "token": new.token})
    else:
        text = _grant_text(new.grant.stream_list, new.grant.level, new.domains)
        print(f"token id: {new.token_id}   account: {args.account}   streams: {text['streams']}   "
              f"level: {text['level']}   domains: {text['domains']}")
        print(f"token:    {new.token}")
        print("This token is shown once; only its digest is stored. SMTP username: api, password: the token.")
    return 0


@with_database
async def cmd_revoke(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    token_id, revoked_at = await credentials.revoke(pool, args.token_id)
    print(f"revoked {token_id} at {plain(revoked_at)}")
    return 0


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    rows = [dataclasses.asdict(c) for c in await credentials.list_all(pool, args.account)]
    if args.json:
        emit_json(rows)
    else:
        emit_table([r | _grant_text(r["streams"], r["level"], r["domains"]) for r in rows],
                   ["token_id", "account", "streams", "level", "domains", "name", "created_at", "last_used_at",
                    "revoked_at"])
    return 0


def register(sub: Any, p: Parsers) -> None:
    cred = p.group(sub, "credential", "manage SMTP/API tokens")
    s = p.add(cred, "create", cmd_create, "create a token (printed once)", listing=True)
    s.add_argument("account")
    s.add_argument("--stream", choices=STREAMS, required=True, action="append",
                   help="a stream the token may send on; repeat for both")
    s.add_argument("--domain", action="append",
                   help="limit the token to this sending domain of the account; repeatable (default: all)")
    s.add_argument("--level", choices=[lv.value for lv in Level], default=Level.SEND.value,
                   help="send: submit mail; read: logs and stats; admin: manage the account, send and read")
    s.add_argument("--name", help="a label for people")
    s = p.add(cred, "revoke", cmd_revoke, "revoke a token by its id (or the token itself)")
    s.add_argument("token_id")
    s = p.add(cred, "list", cmd_list, "tokens and what each may do (ids only; tokens are never stored)",
              listing=True)
    s.add_argument("account", nargs="?")
