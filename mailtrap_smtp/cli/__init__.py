"""The `mailtrap-smtp` command line: serve, migrate, check-config and the admin commands.

One module per command group (`service`, `account`, `domain`, `credential`, `template`, `inbox`,
`dkim`, `queue`, `webhook`, `suppression`, `logs`, `stats`, `dashboard`); each translates arguments into a use
case call and its answer into output, and decides nothing itself.
Errors a user can cause are one line on stderr and a non-zero exit status (2 for configuration
and usage problems, 1 for refused operations); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from .. import config as config_mod
from ..core.refusal import Kind, Refused
from . import account, credential, dkim, domain, inbox, logs, queue, service, stats, suppression, template, webhook
from .common import EXIT_CONFIG, EXIT_ERROR, CliError, Parsers
from .dashboard import register as register_dashboard

__all__ = ["build_parser", "main"]

# How a refused operation (core.refusal) ends a command, by its kind: the reason on stderr and this
# exit status. Every kind is 1 today (scripts have relied on it); the table is where that would change.
REFUSAL_EXIT: dict[Kind, int] = {
    Kind.NOT_FOUND: EXIT_ERROR,
    Kind.CONFLICT: EXIT_ERROR,
    Kind.INVALID: EXIT_ERROR,
    Kind.FORBIDDEN: EXIT_ERROR,
}


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
    parsers = Parsers(common, listing)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order of `--help`.
    for register in (service.register, account.register, domain.register, credential.register, template.register,
                     inbox.register, dkim.register, queue.register, webhook.register, suppression.register,
                     logs.register, stats.register, register_dashboard, service.register_dev_setup):
        register(sub, parsers)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then ours to handle
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly with SIGPIPE's status, as shell tools do;
        # stdout goes to /dev/null so the interpreter's final flush cannot complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _run(argv: Sequence[str] | None) -> int:
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
    except Refused as e:
        print(f"mailtrap-smtp: {e}", file=sys.stderr)
        return REFUSAL_EXIT[e.kind]
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from ..dkim import DkimError
        from ..store.db import StoreError

        if isinstance(e, StoreError | DkimError):
            print(f"mailtrap-smtp: {e}", file=sys.stderr)
            return EXIT_ERROR
        raise
