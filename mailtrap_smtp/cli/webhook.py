"""`webhook create|list|show|update|delete|log|replay`: webhooks and their delivery log."""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from typing import Any

from .. import config as config_mod
from ..core import accounts, webhooks
from .common import CliError, Parsers, with_database
from .output import emit_json, emit_pairs, emit_table

COLUMNS = ["id", "url", "active", "payload_format", "sending_stream", "event_types", "domain_id"]


def _show(w: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(w)
    else:
        emit_pairs([(k, ", ".join(v) if isinstance(v, list) else v) for k, v in w.items()])


@with_database
async def cmd_create(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account = await accounts.get(pool, args.account)
    domain_id = await webhooks.domain_id(pool, account["id"], args.domain) if args.domain else None
    spec = webhooks.WebhookSpec(url=args.url, active=not args.inactive, payload_format=args.format,
                                sending_stream=args.stream, event_types=args.event_type, domain_id=domain_id)
    created = await webhooks.create(pool, account["id"], spec, allow_private=cfg.webhooks.allow_private_targets)
    _show(created.webhook, args.json)
    if not args.json:
        print("The signing secret is shown once; check each POST's Mailtrap-Signature with it.")
    return 0


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    account_id = (await accounts.get(pool, args.account))["id"] if args.account else None
    rows = await webhooks.list_webhooks(pool, account_id)
    if args.json:
        emit_json(rows)
    else:
        emit_table([r | {"event_types": ",".join(r["event_types"])} for r in rows], COLUMNS)
    return 0


@with_database
async def cmd_show(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    _show(await webhooks.get(pool, None, args.id), args.json)
    return 0


@with_database
async def cmd_update(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    changes = webhooks.WebhookChanges(url=args.url, active=args.active, payload_format=args.format,
                                      event_types=args.event_type)
    if changes == webhooks.WebhookChanges():
        raise CliError("nothing to change: give --url, --activate, --deactivate, --format or --event-type")
    _show(await webhooks.update(pool, None, args.id, changes, allow_private=cfg.webhooks.allow_private_targets),
          args.json)
    return 0


@with_database
async def cmd_delete(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    w = await webhooks.delete(pool, None, args.id)
    print(f"deleted webhook {w['id']} ({w['url']})")
    return 0


@with_database
async def cmd_log(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    log = await webhooks.delivery_log(pool, None, args.id, args.limit)
    if args.json:
        emit_json(log)
        return 0
    emit_pairs([("failures in a row", log["failures"]), ("next attempt", log["next_attempt_at"]),
                ("last error", log["last_error"])])
    print()
    emit_table(log["attempts"], ["attempted_at", "status", "latency_ms", "events", "acknowledged", "error",
                                 "first_event_id", "last_event_id"])
    return 0


@with_database
async def cmd_replay(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    result = await webhooks.replay(pool, None, args.id, event_id=args.from_event, since=args.since)
    where = f"event {result['from_event_id']}" if result["from_event_id"] else f"{result['since']}"
    print(f"webhook {args.id} will deliver again from {where}")
    return 0


def _since(value: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _filters(s: Any, *, create: bool) -> None:
    s.add_argument("--event-type", action="append", choices=webhooks.EVENT_TYPES,
                   help="an event type to send (repeat; default: all)" if create else "replace the event types")
    s.add_argument("--format", choices=webhooks.PAYLOAD_FORMATS, default="json" if create else None,
                   help="payload format (default json)" if create else "payload format")


def register(sub: Any, p: Parsers) -> None:
    g = p.group(sub, "webhook", "webhooks: event delivery to your URL, its delivery log and replays")
    s = p.add(g, "create", cmd_create, "create a webhook (its signing secret is printed once)", listing=True)
    s.add_argument("account")
    s.add_argument("url")
    _filters(s, create=True)
    s.add_argument("--stream", choices=webhooks.STREAMS, help="only this stream (default: both)")
    s.add_argument("--domain", help="only this sending domain (default: all)")
    s.add_argument("--inactive", action="store_true", help="create it paused")
    s = p.add(g, "list", cmd_list, "webhooks (of one account, or all)", listing=True)
    s.add_argument("account", nargs="?")
    s = p.add(g, "show", cmd_show, "one webhook", listing=True)
    s.add_argument("id", type=int)
    s = p.add(g, "update", cmd_update, "change a webhook; --activate resumes a deactivated one", listing=True)
    s.add_argument("id", type=int)
    s.add_argument("--url")
    _filters(s, create=False)
    on = s.add_mutually_exclusive_group()
    on.add_argument("--activate", dest="active", action="store_const", const=True, default=None)
    on.add_argument("--deactivate", dest="active", action="store_const", const=False)
    s = p.add(g, "delete", cmd_delete, "delete a webhook")
    s.add_argument("id", type=int)
    s = p.add(g, "log", cmd_log, "the delivery log: attempts (newest first), failures, next attempt", listing=True)
    s.add_argument("id", type=int)
    s.add_argument("--limit", type=int, default=20)
    s = p.add(g, "replay", cmd_replay, "deliver again from an event or a time")
    s.add_argument("id", type=int)
    when = s.add_mutually_exclusive_group(required=True)
    when.add_argument("--from-event", type=uuid.UUID, metavar="EVENT_ID")
    when.add_argument("--since", type=_since, metavar="TIME", help="ISO 8601; UTC if no offset")
