"""`dkim rotate`: advance a domain's DKIM key rotation by one safe step."""

from __future__ import annotations

import argparse
from typing import Any

from .. import config as config_mod
from .. import domainops
from .common import Parsers, kek, resolver, with_database
from .output import emit_json, emit_table

STEP_MESSAGES = {
    "created": "Created the next key(s). Publish these records; signing switches to them only "
               "once DNS serves them (run this command again, or wait for the periodic re-check):",
    "waiting": "Waiting for DNS to serve the new key(s) before signing with them. Publish:",
    "activated": "DNS serves the new key(s): signing now uses them. The previous selector's record "
                 "can be removed after a few days (messages in flight still cite it):",
}


@with_database
async def cmd_rotate(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    step, keys = await domainops.rotate_dkim(pool, cfg, kek(cfg), resolver(cfg), args.domain)
    domain = await domainops.get_domain(pool, args.domain)
    # Where each key's TXT goes: the customer's zone, or the operator's key-hosting zone.
    rows = []
    for k in keys:
        name, rtype, value = domainops.dkim_publication(cfg, domain["name"], k)
        rows.append({"selector": k["selector"], "algorithm": k["algorithm"], "name": name, "type": rtype,
                     "value": value})
    if args.json:
        emit_json({"step": step, "keys": rows})
        return 0
    print(STEP_MESSAGES[step] + "\n")
    emit_table(rows, ["selector", "type", "name", "value"])
    return 0


def register(sub: Any, p: Parsers) -> None:
    dk = p.group(sub, "dkim", "DKIM keys")
    s = p.add(dk, "rotate", cmd_rotate,
              "start or advance a key rotation (new key on the idle selector, used once DNS serves it)", listing=True)
    s.add_argument("domain")
