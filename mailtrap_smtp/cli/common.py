"""What every command module shares: exit statuses, the one-line error, the database a command runs
against, and how a command is added to the parser (each takes `-c/--config`, listings take `--json`)."""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .. import config as config_mod

EXIT_ERROR = 1
EXIT_CONFIG = 2

Command = Callable[[config_mod.Config, argparse.Namespace], int]
DbCommand = Callable[[Any, config_mod.Config, argparse.Namespace], Awaitable[int]]


class CliError(Exception):
    """A refused operation, reported as one line."""


def run_with_pool(cfg: config_mod.Config, fn: Callable[[Any], Awaitable[int]], *, migrate_schema: bool = True) -> int:
    """`fn(pool)` against the configured database (schema migrated first unless `migrate_schema` is
    false), opened for this one command and closed (the embedded server stopped) whatever happens."""
    from ..store.db import Database

    async def run() -> int:
        db = Database(cfg.database.dsn, cfg.data_dir / "pg", pool_min_size=1, pool_max_size=4)
        try:
            pool = await db.open(migrate_schema=migrate_schema)
            return await fn(pool)
        finally:
            await db.close()
            db.stop_server()

    return asyncio.run(run())


def with_database(fn: DbCommand) -> Command:
    """The command `fn(pool, cfg, args)`, run by `run_with_pool`."""

    @functools.wraps(fn)
    def command(cfg: config_mod.Config, args: argparse.Namespace) -> int:
        return run_with_pool(cfg, lambda pool: fn(pool, cfg, args))

    return command


def kek(cfg: config_mod.Config) -> bytes:
    from .. import dkim

    return dkim.load_or_create_kek(cfg.kek_path)


def resolver(cfg: config_mod.Config) -> Any:
    from .. import dnsresolve

    return dnsresolve.make_resolver(cfg.dns.nameservers, cfg.dns.timeout_seconds)


@dataclass(frozen=True)
class Parsers:
    """The parent parsers that give commands their shared options."""

    common: argparse.ArgumentParser  # -c/--config, also accepted after the command
    listing: argparse.ArgumentParser  # --json

    def add(self, parent: Any, name: str, fn: Command, help_: str, *, listing: bool = False) -> Any:
        parents = [self.common, self.listing] if listing else [self.common]
        sp = parent.add_parser(name, help=help_, description=help_, parents=parents)
        sp.set_defaults(func=fn)
        return sp

    @staticmethod
    def group(sub: Any, name: str, help_: str) -> Any:
        """A command with actions (`account create`, ...): the subparsers its actions are added to."""
        return sub.add_parser(name, help=help_).add_subparsers(dest="sub", required=True, metavar="ACTION")
