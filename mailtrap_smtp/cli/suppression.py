"""`suppression list|add|import|delete`: an account's suppression list (MAILTRAP_COMPAT §6)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import config as config_mod
from ..core import accounts
from ..core import suppressions as sup
from .common import CliError, Parsers, run_with_pool, with_database
from .output import emit_json, emit_table

_COLUMNS = ["id", "email", "type", "sending_stream", "domain_name", "created_at"]


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if args.json:
        emit_json(rows)
    else:
        emit_table(rows, _COLUMNS)


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    rows = await sup.search(pool, int(account["id"]), email=args.email,
                            start_time=sup.parse_time("--since", args.since),
                            end_time=sup.parse_time("--until", args.until),
                            last_id=sup.parse_id(args.after) if args.after else None)
    _emit(args, rows)
    return 0


@with_database
async def cmd_add(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account_id = int((await accounts.get(pool, args.account))["id"])
    domain_id = await sup.domain_id_of(pool, account_id, args.domain)
    rows = await sup.add(pool, account_id, [sup.Entry(e, domain_id, args.stream, args.type) for e in args.emails])
    _emit(args, rows)
    return 0


def cmd_import(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"{args.file}: {e.strerror if isinstance(e, OSError) else 'not UTF-8 text'}") from None

    async def run(pool: Any) -> int:
        account_id = int((await accounts.get(pool, args.account))["id"])
        domain_id = await sup.domain_id_of(pool, account_id, args.domain)
        rows = await sup.import_csv(pool, account_id, text, domain_id=domain_id, sending_stream=args.stream,
                                    type_=args.type)
        if args.json:
            emit_json(rows)
        else:
            print(f"imported {len(rows)} suppression(s) for {args.domain}")
        return 0

    return run_with_pool(cfg, run)


@with_database
async def cmd_delete(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account_id = int((await accounts.get(pool, args.account))["id"])
    row = await sup.delete(pool, account_id, sup.parse_id(args.id))
    if args.json:
        emit_json(row)
    else:
        print(f"deleted suppression {row['id']} ({row['email']}, {row['domain_name']}, {row['sending_stream']})")
    return 0


def register(sub: Any, p: Parsers) -> None:
    g = p.group(sub, "suppression", "addresses an account's domains do not deliver to")
    s = p.add(g, "list", cmd_list, "suppressions of an account, oldest first (1000 at most)", listing=True)
    s.add_argument("account")
    s.add_argument("--email", help="this address only (exact, any case)")
    s.add_argument("--since", help="created at or after (ISO 8601)")
    s.add_argument("--until", help="created at or before (ISO 8601)")
    s.add_argument("--after", metavar="ID", help="the last id of the previous page")
    for name, fn, help_ in (("add", cmd_add, "suppress addresses (at most 1000 per call)"),
                            ("import", cmd_import, "suppress the addresses of a CSV file")):
        s = p.add(g, name, fn, help_, listing=True)
        s.add_argument("account")
        if name == "add":
            s.add_argument("emails", nargs="+", metavar="EMAIL")
        else:
            s.add_argument("file", help="CSV: the first column, or the column headed 'email'")
        s.add_argument("--domain", required=True, help="the sending domain the suppression applies to")
        s.add_argument("--stream", choices=sup.STREAMS, default="any")
        s.add_argument("--type", choices=sup.TYPES, default=sup.MANUAL_IMPORT)
    s = p.add(g, "delete", cmd_delete, "remove one suppression", listing=True)
    s.add_argument("account")
    s.add_argument("id")
