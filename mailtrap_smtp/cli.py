"""The `mailtrap-smtp` command line: serve, migrate, check-config and the admin commands.

Errors a user can cause are one line on stderr and a non-zero exit status (2 for configuration
and usage problems, 1 for refused operations); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import config as config_mod
from . import tokens

EXIT_ERROR = 1
EXIT_CONFIG = 2
STREAMS = ("transactional", "bulk")


class CliError(Exception):
    """A refused operation, reported as one line."""


# ---------------------------------------------------------------- output

def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def emit_json(data: Any) -> None:
    print(json.dumps(_plain(data), indent=2, sort_keys=False))


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Aligned columns for people; `--json` gives the same rows for programs."""
    if not rows:
        print("(none)")
        return
    cells = [[("" if r.get(c) is None else str(_plain(r.get(c)))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def emit_pairs(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for k, v in pairs:
        print(f"{k + ':':<{width + 1}} {'' if v is None else _plain(v)}")


# ---------------------------------------------------------------- database access for admin commands

async def _with_pool(cfg: config_mod.Config, fn: Callable[[Any], Awaitable[int]]) -> int:
    from .store.db import Database

    db = Database(cfg.database.dsn, cfg.data_dir / "pg", pool_min_size=1, pool_max_size=4)
    try:
        pool = await db.open(migrate_schema=True)
        return await fn(pool)
    finally:
        await db.close()
        db.stop_server()


def _kek(cfg: config_mod.Config) -> bytes:
    from . import dkim

    return dkim.load_or_create_kek(cfg.kek_path)


def _resolver(cfg: config_mod.Config) -> Any:
    from . import dnsresolve

    return dnsresolve.make_resolver(cfg.dns.nameservers, cfg.dns.timeout_seconds)


async def _account(pool: Any, name: str) -> Any:
    from .store import accounts

    row = await accounts.get_by_name(pool, name)
    if row is None:
        raise CliError(f"no account named {name!r}")
    return row


# ---------------------------------------------------------------- commands

def cmd_check_config(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    config_mod.check_files(cfg)
    data = config_mod.redacted(cfg)
    if args.json:
        emit_json(data)
    else:
        for section, values in data.items():
            print(f"[{section}]")
            for k, v in values.items():
                print(f"{k} = {json.dumps(v)}")
            print()
    return 0


def cmd_migrate(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .store import db as store_db

    async def run(pool: Any) -> int:
        async with pool.acquire() as conn:
            applied = await store_db.migrate(conn)
            total = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        print(f"applied {len(applied)} migration(s); schema has {total}")
        for name in applied:
            print(f"  {name}")
        return 0

    return asyncio.run(_with_pool(cfg, run))


def cmd_serve(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from . import app

    if args.processes < 0:
        raise CliError("--processes must be 0 (one per core) or more")
    config_mod.check_files(cfg)
    app.configure_logging(args.verbose)
    return app.serve(cfg, role=args.role, processes=args.processes)


def cmd_account_create(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .store import accounts

    limit = args.monthly_limit if args.monthly_limit is not None else cfg.limits.monthly_messages
    size = args.max_message_size if args.max_message_size is not None else cfg.limits.message_size
    if limit < 0:
        raise CliError("--monthly-limit must be 0 or more")
    if not 0 < size <= cfg.limits.message_size_cap:
        raise CliError(f"--max-message-size must be between 1 and limits.message_size_cap "
                       f"({cfg.limits.message_size_cap})")
    if not 1 <= args.billing_anchor_day <= 31:
        raise CliError("--billing-anchor-day must be between 1 and 31")

    async def run(pool: Any) -> int:
        try:
            row = await accounts.create(pool, args.name, monthly_limit=limit, max_message_size=size,
                                        billing_anchor_day=args.billing_anchor_day, alert_email=args.alert_email)
        except KeyError:
            raise CliError(f"account {args.name!r} already exists") from None
        out = dict(row)
        if args.json:
            emit_json(out)
        else:
            print(f"created account {row['name']} (monthly limit {row['monthly_limit']}, "
                  f"max message size {row['max_message_size']} bytes)")
        return 0

    return asyncio.run(_with_pool(cfg, run))


async def _account_summary(pool: Any, row: Any) -> dict[str, Any]:
    from . import quota
    from .store import credentials, domains, usage

    today = dt.datetime.now(dt.UTC).date()
    start = quota.period_start(row["billing_anchor_day"], today)
    used = await usage.used(pool, row["id"], start)
    return {
        "name": row["name"], "monthly_limit": row["monthly_limit"], "used_this_period": used,
        "remaining": max(0, row["monthly_limit"] - used), "period_start": start,
        "period_end": quota.period_end(row["billing_anchor_day"], today),
        "max_message_size": row["max_message_size"], "billing_anchor_day": row["billing_anchor_day"],
        "alert_email": row["alert_email"], "created_at": row["created_at"],
        "domains": [d["name"] for d in await domains.list_all(pool, row["id"])],
        "credentials": [c["public_id"] for c in await credentials.list_all(pool, row["id"])
                        if c["revoked_at"] is None],
    }


def cmd_account_show(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    async def run(pool: Any) -> int:
        summary = await _account_summary(pool, await _account(pool, args.name))
        if args.json:
            emit_json(summary)
        else:
            emit_pairs([(k, ", ".join(v) if isinstance(v, list) else v) for k, v in summary.items()])
        return 0

    return asyncio.run(_with_pool(cfg, run))


def cmd_account_list(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .store import accounts

    async def run(pool: Any) -> int:
        rows = [await _account_summary(pool, r) for r in await accounts.list_all(pool)]
        if args.json:
            emit_json(rows)
        else:
            emit_table(rows, ["name", "monthly_limit", "used_this_period", "max_message_size", "period_start"])
        return 0

    return asyncio.run(_with_pool(cfg, run))


def _records_json(report: Any) -> list[dict[str, Any]]:
    checks = {c.record.key: c for c in (report.checks or [])}
    out = []
    for r in report.records:
        item: dict[str, Any] = {"key": r.key, "type": r.type, "name": r.name, "value": r.value,
                                "required": r.required}
        if r.target_value:
            item["target_value"] = r.target_value
        c = checks.get(r.key)
        if c is not None:
            item.update(status=c.status, found=list(c.found), detail=c.detail)
        out.append(item)
    return out


def _domain_json(row: Any) -> dict[str, Any]:
    d = {k: row[k] for k in ("name", "account", "state", "dns_skipped", "verified_at", "failing_since",
                             "approved_at", "last_checked_at", "created_at")}
    last = json.loads(row["last_check"]) if row["last_check"] else []
    d["failing_records"] = [c["key"] for c in last if c.get("required") and c["status"] != "pass"]
    return d


def _state_label(row: dict[str, Any]) -> str:
    label = str(row["state"])
    if row["dns_skipped"]:
        label += " (DNS NOT VERIFIED: added with --skip-dns-verification)"
    return label


def cmd_domain_add(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from . import domainops

    async def run(pool: Any) -> int:
        try:
            report = await domainops.add_domain(pool, cfg, _kek(cfg), args.account, args.domain,
                                                skip_dns=args.skip_dns_verification, force=args.force)
        except domainops.DomainOpError as e:
            raise CliError(str(e)) from None
        operator: list[dict[str, Any]] = []
        if cfg.domains.dkim_cname_zone:
            # With a key-hosting zone the customer only adds CNAMEs; the keys go into our zone.
            from .store import domains as domains_store

            for k in await domains_store.keys(pool, report.domain["id"]):
                name, rtype, value = domainops.dkim_publication(cfg, report.domain["name"], k)
                operator.append({"selector": k["selector"], "type": rtype, "name": name, "value": value})
        if args.json:
            out: dict[str, Any] = {"domain": _domain_json(report.domain), "records": _records_json(report)}
            if operator:
                out["operator_records"] = operator
            emit_json(out)
            return 0
        print(f"added domain {report.domain['name']} to account {args.account}: {_state_label(dict(report.domain))}")
        print("Publish these DNS records, then run `mailtrap-smtp domain verify "
              f"{report.domain['name']}`:\n")
        emit_table([{**r, "required": "yes" if r["required"] else "no"} for r in _records_json(report)],
                   ["key", "type", "name", "value", "required"])
        if operator:
            print(f"\nOperator: publish in the key-hosting zone {cfg.domains.dkim_cname_zone}:\n")
            emit_table(operator, ["selector", "type", "name", "value"])
        return 0

    return asyncio.run(_with_pool(cfg, run))


def cmd_domain_verify(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from . import domainops

    async def run(pool: Any) -> int:
        try:
            report = await domainops.verify_domain(pool, cfg, _resolver(cfg), args.domain)
        except domainops.DomainOpError as e:
            raise CliError(str(e)) from None
        records = _records_json(report)
        if args.json:
            emit_json({"domain": _domain_json(report.domain), "records": records})
        else:
            print(f"{report.domain['name']}: {_state_label(dict(report.domain))}\n")
            # A mismatch says what was found, in full: the customer compares it with what to publish.
            emit_table([{**r, "required": "yes" if r["required"] else "no",
                         "detail": r.get("detail", "") + (f" (found: {' | '.join(r['found'])})"
                                                          if r.get("status") == "mismatch" and r.get("found")
                                                          else "")}
                        for r in records], ["key", "type", "name", "status", "required", "detail"])
        return 0 if report.domain["state"] in ("verified", "failing") else EXIT_ERROR

    return asyncio.run(_with_pool(cfg, run))


def cmd_domain_approve(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from . import domainops

    async def run(pool: Any) -> int:
        try:
            row = await domainops.approve_domain(pool, args.domain)
        except domainops.DomainOpError as e:
            raise CliError(str(e)) from None
        print(f"approved {row['name']} ({row['state']})")
        return 0

    return asyncio.run(_with_pool(cfg, run))


def cmd_domain_list(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .store import domains

    async def run(pool: Any) -> int:
        account_id = (await _account(pool, args.account))["id"] if args.account else None
        rows = [_domain_json(r) for r in await domains.list_all(pool, account_id)]
        if args.json:
            emit_json(rows)
        else:
            emit_table([{**r, "state": _state_label(r), "failing_records": ",".join(r["failing_records"]),
                         "approved": "yes" if r["approved_at"] else "no"} for r in rows],
                       ["name", "account", "state", "approved", "last_checked_at", "failing_records"])
        return 0

    return asyncio.run(_with_pool(cfg, run))


def cmd_dkim_rotate(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from . import domainops

    async def run(pool: Any) -> int:
        try:
            step, keys = await domainops.rotate_dkim(pool, cfg, _kek(cfg), _resolver(cfg), args.domain)
        except domainops.DomainOpError as e:
            raise CliError(str(e)) from None
        domain = await domainops._get(pool, args.domain)
        # Where each key's TXT goes: the customer's zone, or the operator's key-hosting zone.
        rows = []
        for k in keys:
            name, rtype, value = domainops.dkim_publication(cfg, domain["name"], k)
            rows.append({"selector": k["selector"], "algorithm": k["algorithm"], "name": name, "type": rtype,
                         "value": value})
        if args.json:
            emit_json({"step": step, "keys": rows})
            return 0
        messages = {
            "created": "Created the next key(s). Publish these records; signing switches to them only "
                       "once DNS serves them (run this command again, or wait for the periodic re-check):",
            "waiting": "Waiting for DNS to serve the new key(s) before signing with them. Publish:",
            "activated": "DNS serves the new key(s): signing now uses them. The previous selector's record "
                         "can be removed after a few days (messages in flight still cite it):",
        }
        print(messages[step] + "\n")
        emit_table(rows, ["selector", "type", "name", "value"])
        return 0

    return asyncio.run(_with_pool(cfg, run))


def cmd_credential_create(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .store import credentials

    async def run(pool: Any) -> int:
        account = await _account(pool, args.account)
        new = tokens.generate()
        row = await credentials.create(pool, account["id"], public_id=new.public_id, digest=new.digest,
                                       stream=args.stream, name=args.name)
        if args.json:
            emit_json({"token_id": row["public_id"], "account": args.account, "stream": row["stream"],
                       "token": new.token})
        else:
            print(f"token id: {row['public_id']}   account: {args.account}   stream: {row['stream']}")
            print(f"token:    {new.token}")
            print("This token is shown once; only its digest is stored. SMTP username: api, password: the token.")
        return 0

    return asyncio.run(_with_pool(cfg, run))


def cmd_credential_revoke(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .store import credentials

    token_id = tokens.public_id_of(args.token_id) or args.token_id

    async def run(pool: Any) -> int:
        row = await credentials.revoke(pool, token_id)
        if row is None:
            raise CliError(f"no credential with token id {token_id!r}")
        print(f"revoked {row['public_id']} at {_plain(row['revoked_at'])}")
        return 0

    return asyncio.run(_with_pool(cfg, run))


def cmd_credential_list(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .store import credentials

    async def run(pool: Any) -> int:
        account_id = (await _account(pool, args.account))["id"] if args.account else None
        rows = [dict(r) | {"token_id": r["public_id"]} for r in await credentials.list_all(pool, account_id)]
        if args.json:
            emit_json([{k: v for k, v in r.items() if k != "public_id"} for r in rows])
        else:
            emit_table(rows, ["token_id", "account", "stream", "name", "created_at", "last_used_at", "revoked_at"])
        return 0

    return asyncio.run(_with_pool(cfg, run))


def _message_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CliError(f"not a message id: {value!r}") from None


def cmd_queue_list(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .store import messages

    async def run(pool: Any) -> int:
        rows = [dict(r) for r in await messages.list_queue(pool, state=args.state, domain=args.domain,
                                                           account=args.account, limit=args.limit)]
        if args.json:
            emit_json(rows)
        else:
            emit_table(rows, ["message_id", "account", "mail_from", "rcpt", "state", "attempts",
                              "next_attempt_at", "last_reply"])
        return 0

    return asyncio.run(_with_pool(cfg, run))


def _headers_of(raw: bytes) -> list[tuple[str, str]]:
    from email.parser import BytesHeaderParser
    from email.policy import compat32

    msg = BytesHeaderParser(policy=compat32).parsebytes(raw)
    return [(k, str(v)) for k, v in msg.items()]


def cmd_queue_show(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .store import events, messages

    mid = _message_id(args.message_id)

    async def run(pool: Any) -> int:
        msg = await messages.get(pool, mid)
        if msg is None:
            raise CliError(f"no message {mid}")
        rcpts = [dict(r) for r in await messages.recipients_of(pool, mid)]
        evts = [dict(e) | {"details": json.loads(e["details"])} for e in await events.for_message(pool, mid)]
        raw = bytes(msg["raw"])
        data = {
            "message_id": msg["id"], "account": msg["account"], "stream": msg["stream"],
            "mail_from": msg["mail_from"], "header_from": msg["header_from"], "subject": msg["subject"],
            "size": msg["size"], "created_at": msg["created_at"], "client_ip": msg["client_ip"],
            "category": msg["category"],
            "headers": [{"name": k, "value": v} for k, v in _headers_of(raw)],
            "recipients": [{k: r[k] for k in ("rcpt", "state", "attempts", "next_attempt_at", "last_reply",
                                              "leased_by", "lease_until")} for r in rcpts],
            "events": [{k: e[k] for k in ("type", "created_at", "rcpt", "details")} for e in evts],
        }
        if args.raw:
            sys.stdout.buffer.write(raw)
            return 0
        if args.json:
            emit_json(data)
            return 0
        emit_pairs([(k, data[k]) for k in ("message_id", "account", "stream", "mail_from", "header_from",
                                           "subject", "size", "created_at", "client_ip")])
        print("\nheaders:")
        for h in data["headers"]:
            print(f"  {h['name']}: {h['value'][:200]}")
        print("\nrecipients:")
        emit_table(data["recipients"], ["rcpt", "state", "attempts", "next_attempt_at", "last_reply"])
        print("\nevents:")
        emit_table([{**e, "details": json.dumps(e["details"])} for e in data["events"]],
                   ["created_at", "type", "rcpt", "details"])
        return 0

    return asyncio.run(_with_pool(cfg, run))


def _queue_admin(action: str) -> Callable[[config_mod.Config, argparse.Namespace], int]:
    def command(cfg: config_mod.Config, args: argparse.Namespace) -> int:
        from .store import messages, queue

        mid = _message_id(args.message_id)

        async def run(pool: Any) -> int:
            if await messages.get(pool, mid) is None:
                raise CliError(f"no message {mid}")
            async with pool.acquire() as conn, conn.transaction():
                n = await getattr(queue, action)(conn, mid)
            print(f"{action}: {n} recipient(s) of {mid}")
            return 0

        return asyncio.run(_with_pool(cfg, run))

    return command


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mailtrap-smtp",
        description="Self-hosted email sending service: SMTP submission with per-stream tokens, verified "
                    "sending domains, DKIM signing, a durable PostgreSQL queue and delivery.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="TOML configuration file (default: built-in defaults plus environment)")
    p.add_argument("-c", "--config", metavar="FILE", default=None,
                   help="TOML configuration file (also accepted after the command)")
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent: Any, name: str, fn: Callable[..., int], help_: str, *parents: argparse.ArgumentParser) -> Any:
        sp = parent.add_parser(name, help=help_, description=help_, parents=[common, *parents])
        sp.set_defaults(func=fn)
        return sp

    s = add(sub, "serve", cmd_serve, "run the SMTP listeners and delivery workers")
    s.add_argument("--processes", type=int, default=0,
                   help="processes sharing the ports with SO_REUSEPORT (default 0: one per core)")
    s.add_argument("--role", choices=["all", "smtp", "http", "delivery"], default="all",
                   help="what this node runs (default all)")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add(sub, "migrate", cmd_migrate, "apply pending database schema migrations")
    add(sub, "check-config", cmd_check_config, "validate the configuration and print it (secrets redacted)", listing)

    acc = sub.add_parser("account", help="manage accounts").add_subparsers(dest="sub", required=True, metavar="ACTION")
    s = add(acc, "create", cmd_account_create, "create an account with its plan", listing)
    s.add_argument("name")
    s.add_argument("--monthly-limit", type=int, help="recipients per billing period (default limits.monthly_messages)")
    s.add_argument("--max-message-size", type=int, metavar="BYTES", help="default limits.message_size")
    s.add_argument("--billing-anchor-day", type=int, default=1, help="day of month the period starts (1-31)")
    s.add_argument("--alert-email", help="where limit alerts go")
    s = add(acc, "show", cmd_account_show, "plan, usage this period and limits of an account", listing)
    s.add_argument("name")
    add(acc, "list", cmd_account_list, "all accounts", listing)

    dom = sub.add_parser("domain", help="manage sending domains").add_subparsers(dest="sub", required=True,
                                                                                 metavar="ACTION")
    s = add(dom, "add", cmd_domain_add, "add a sending domain and print the DNS records to publish", listing)
    s.add_argument("account")
    s.add_argument("domain")
    s.add_argument("--skip-dns-verification", action="store_true",
                   help="development only: allow sending without DNS verification (shown in every listing)")
    s.add_argument("--force", action="store_true", help="accept a www. name")
    s = add(dom, "verify", cmd_domain_verify, "check the domain's DNS records now and print each status", listing)
    s.add_argument("domain")
    s = add(dom, "approve", cmd_domain_approve, "operator approval (when domains.require_approval is on)")
    s.add_argument("domain")
    s = add(dom, "list", cmd_domain_list, "domains with state, last check and failing records", listing)
    s.add_argument("account", nargs="?")

    cred = sub.add_parser("credential", help="manage SMTP/API tokens").add_subparsers(dest="sub", required=True,
                                                                                     metavar="ACTION")
    s = add(cred, "create", cmd_credential_create, "create a token for one stream (printed once)", listing)
    s.add_argument("account")
    s.add_argument("--stream", choices=STREAMS, required=True)
    s.add_argument("--name", help="a label for people")
    s = add(cred, "revoke", cmd_credential_revoke, "revoke a token by its id (or the token itself)")
    s.add_argument("token_id")
    s = add(cred, "list", cmd_credential_list, "tokens (ids only; tokens are never stored)", listing)
    s.add_argument("account", nargs="?")

    dk = sub.add_parser("dkim", help="DKIM keys").add_subparsers(dest="sub", required=True, metavar="ACTION")
    s = add(dk, "rotate", cmd_dkim_rotate,
            "start or advance a key rotation (new key on the idle selector, used once DNS serves it)", listing)
    s.add_argument("domain")

    q = sub.add_parser("queue", help="inspect and act on the delivery queue").add_subparsers(
        dest="sub", required=True, metavar="ACTION")
    s = add(q, "list", cmd_queue_list, "recipients in the queue, newest first", listing)
    s.add_argument("--state", choices=["queued", "delivered", "bounced", "expired"])
    s.add_argument("--domain", help="destination domain")
    s.add_argument("--account")
    s.add_argument("--limit", type=int, default=100)
    s = add(q, "show", cmd_queue_show, "envelope, headers, recipients and events of a message", listing)
    s.add_argument("message_id")
    s.add_argument("--raw", action="store_true", help="print the stored message exactly as it will be relayed")
    s = add(q, "retry", _queue_admin("retry"), "make a message's undelivered recipients due now")
    s.add_argument("message_id")
    s = add(q, "bounce", _queue_admin("bounce"), "give up on a message's queued recipients")
    s.add_argument("message_id")

    s = add(sub, "dev-setup", cmd_dev_setup,
            "development: test certificate, schema, demo account/domain/token (what `make serve` runs)")
    return p


def cmd_dev_setup(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from . import devsetup

    return devsetup.run(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as e:
        print(f"mailtrap-smtp: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return int(args.func(cfg, args))
    except config_mod.ConfigError as e:
        print(f"mailtrap-smtp: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except CliError as e:
        print(f"mailtrap-smtp: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from .store.db import StoreError

        if isinstance(e, StoreError):
            print(f"mailtrap-smtp: {e}", file=sys.stderr)
            return EXIT_ERROR
        from .dkim import DkimError

        if isinstance(e, DkimError):
            print(f"mailtrap-smtp: {e}", file=sys.stderr)
            return EXIT_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())

