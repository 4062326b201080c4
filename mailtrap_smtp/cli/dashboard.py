"""`dashboard set-password|clear-password`: the operator's password for the dashboard's login."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from .. import config as config_mod
from ..core import operator_password
from .common import CliError, Parsers


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("operator password: ")
        if getpass.getpass("again: ") != first:
            raise CliError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")  # scripts: one line on standard input


def cmd_set_password(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    path = operator_password.path_for(cfg)
    operator_password.set_password(path, _read_password())
    print(f"operator password set ({path}); sessions opened with a previous one are ended")
    return 0


def cmd_clear_password(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    path = operator_password.path_for(cfg)
    print("operator password removed: only admin tokens log in" if operator_password.clear(path)
          else "no operator password was set")
    return 0


def register(sub: Any, p: Parsers) -> None:
    group = p.group(sub, "dashboard", "the web dashboard's operator login")
    p.add(group, "set-password", cmd_set_password,
          "set the operator password (read from the terminal, or one line of standard input)")
    p.add(group, "clear-password", cmd_clear_password, "remove the operator password")
