"""`template create|list|show|render|delete`: an account's email templates (Handlebars subset)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from .. import config as config_mod
from ..core import accounts
from ..core.templates import Templates
from ..templating import TemplateError
from .common import CliError, Parsers, with_database
from .output import emit_json, emit_pairs, emit_table

_LISTED = ["id", "uuid", "name", "subject", "category", "updated_at"]


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


@with_database
async def cmd_create(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    values = {"name": args.name, "subject": args.subject, "category": args.category,
              "body_text": _read(args.text_file), "body_html": _read(args.html_file)}
    t = await Templates(pool).create(account["id"], values)
    if args.json:
        emit_json(dataclasses.asdict(t))
    else:
        print(f"created template {t.id} ({t.uuid}) {t.name!r} for account {args.account}")
    return 0


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    rows = [dataclasses.asdict(t) for t in await Templates(pool).list_all(account["id"])]
    if args.json:
        emit_json(rows)
    else:
        emit_table(rows, _LISTED)
    return 0


@with_database
async def cmd_show(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    t = dataclasses.asdict(await Templates(pool).find(account["id"], args.template))
    if args.json:
        emit_json(t)
    else:
        emit_pairs([(k, t[k]) for k in (*_LISTED, "created_at")])
        for body in ("body_text", "body_html"):
            print(f"\n--- {body} ---\n{t[body] if t[body] is not None else '(none)'}")
    return 0


@with_database
async def cmd_render(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    try:
        variables = json.loads(args.variables)
    except ValueError as e:
        raise CliError(f"--variables: not JSON: {e}") from None
    templates = Templates(pool)
    t = await templates.find(account["id"], args.template)
    try:
        r = await templates.render(account["id"], t.uuid, variables)
    except TemplateError as e:
        raise CliError(str(e)) from None
    if args.json:
        emit_json(dataclasses.asdict(r))
    else:
        print(f"Subject: {r.subject}\nCategory: {r.category}")
        for name, body in (("text", r.text), ("html", r.html)):
            print(f"\n--- {name} ---\n{body if body is not None else '(none)'}")
    return 0


@with_database
async def cmd_delete(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    templates = Templates(pool)
    t = await templates.delete(account["id"], (await templates.find(account["id"], args.template)).id)
    print(f"deleted template {t.id} ({t.uuid}) {t.name!r}")
    return 0


def register(sub: Any, p: Parsers) -> None:
    tpl = p.group(sub, "template", "manage email templates (sent with template_uuid)")
    s = p.add(tpl, "create", cmd_create, "create a template; subject and bodies use Handlebars", listing=True)
    s.add_argument("account")
    s.add_argument("--name", required=True)
    s.add_argument("--subject", required=True)
    s.add_argument("--category", required=True)
    s.add_argument("--text-file", metavar="FILE", help="the text body (UTF-8)")
    s.add_argument("--html-file", metavar="FILE", help="the HTML body (UTF-8)")
    s = p.add(tpl, "list", cmd_list, "the account's templates", listing=True)
    s.add_argument("account")
    s = p.add(tpl, "show", cmd_show, "one template (by id or uuid), bodies included", listing=True)
    s.add_argument("account")
    s.add_argument("template", help="id or uuid")
    s = p.add(tpl, "render", cmd_render, "render a template with variables, as a send would", listing=True)
    s.add_argument("account")
    s.add_argument("template", help="id or uuid")
    s.add_argument("--variables", default="{}", metavar="JSON", help="template_variables (a JSON object)")
    s = p.add(tpl, "delete", cmd_delete, "delete a template (by id or uuid)")
    s.add_argument("account")
    s.add_argument("template", help="id or uuid")
