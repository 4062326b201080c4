"""Commands that run or prepare the service: serve, migrate, check-config, dev-setup."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import config as config_mod
from .common import CliError, Parsers, run_with_pool
from .output import emit_json


def cmd_serve(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .. import app

    if args.processes < 0:
        raise CliError("--processes must be 0 (one per core) or more")
    config_mod.check_files(cfg)
    if args.role == "inbound" and not cfg.inbound.listeners:
        raise CliError("--role inbound needs [inbound] listeners in the configuration")
    app.configure_logging(args.verbose)
    return app.serve(cfg, role=args.role, processes=args.processes)


def cmd_migrate(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from ..store import db as store_db

    async def migrate(pool: Any) -> int:
        async with pool.acquire() as conn:
            applied = await store_db.migrate(conn)
            total = await store_db.migrations_applied(conn)
        print(f"applied {len(applied)} migration(s); schema has {total}")
        for name in applied:
            print(f"  {name}")
        return 0

    # Not migrated on opening, or this command would always find nothing left to apply.
    return run_with_pool(cfg, migrate, migrate_schema=False)


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


def cmd_dev_setup(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    from .. import devsetup

    if devsetup.ensure_dev_certificate(cfg.path(cfg.tls.cert_file), cfg.path(cfg.tls.key_file),
                                       cfg.server.hostname):
        print(f"created a development TLS certificate: {cfg.path(cfg.tls.cert_file)}")

    async def demo(pool: Any) -> int:
        token = await devsetup.ensure_demo(cfg, pool)
        admin = await devsetup.dashboard_token(pool) if token is not None and cfg.http.listeners else None
        print(devsetup.report(cfg, token, admin))
        return 0

    return run_with_pool(cfg, demo)


def register(sub: Any, p: Parsers) -> None:
    s = p.add(sub, "serve", cmd_serve, "run the SMTP listeners and delivery workers")
    s.add_argument("--processes", type=int, default=0,
                   help="processes sharing the ports with SO_REUSEPORT (default 0: one per core)")
    s.add_argument("--role", choices=["all", "smtp", "http", "delivery", "inbound", "hooks"], default="all",
                   help="what this node runs (default all; inbound: the bounce listener of [inbound] listeners; "
                        "hooks: the event consumers such as webhook delivery)")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add(sub, "migrate", cmd_migrate, "apply pending database schema migrations")
    p.add(sub, "check-config", cmd_check_config, "validate the configuration and print it (secrets redacted)",
          listing=True)


def register_dev_setup(sub: Any, p: Parsers) -> None:
    # Listed last in `--help`: it is for development only.
    p.add(sub, "dev-setup", cmd_dev_setup,
          "development: test certificate, schema, demo account/domain/token (what `make serve` runs)")
