"""`domain add|show|verify|approve|list`: sending domains, the DNS records they publish and their state."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import config as config_mod
from .. import domainops
from .common import EXIT_ERROR, Parsers, kek, resolver, with_database
from .output import emit_json, emit_table


def records_json(report: domainops.DomainReport) -> list[dict[str, Any]]:
    """Each record the domain must publish, with its check result when the report has one."""
    checks = {c.record.key: c for c in (report.checks or [])}
    out = []
    for r in report.records:
        item: dict[str, Any] = {"key": r.key, "type": r.type, "name": r.name, "value": r.value,
                                "required": r.required, "mailtrap_key": r.mailtrap_key, "note": r.note}
        if r.target_value:
            item["target_value"] = r.target_value
        c = checks.get(r.key)
        if c is not None:
            item.update(status=c.status, found=list(c.found), detail=c.detail)
        out.append(item)
    return out


def domain_json(row: Any) -> dict[str, Any]:
    d = {k: row[k] for k in ("name", "account", "state", "dns_skipped", "verified_at", "failing_since",
                             "approved_at", "last_checked_at", "created_at")}
    last = json.loads(row["last_check"]) if row["last_check"] else []
    d["failing_records"] = [c["key"] for c in last if c.get("required") and c["status"] != "pass"]
    return d


def state_label(row: dict[str, Any]) -> str:
    label = str(row["state"])
    if row["dns_skipped"]:
        label += " (DNS NOT VERIFIED: added with --skip-dns-verification)"
    return label


@with_database
async def cmd_add(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    report = await domainops.add_domain(pool, cfg, kek(cfg), args.account, args.domain,
                                        skip_dns=args.skip_dns_verification, force=args.force)
    # With a key-hosting zone the customer only adds CNAMEs; the keys go into our zone.
    operator = await domainops.operator_records(pool, cfg, report.domain)
    if args.json:
        out: dict[str, Any] = {"domain": domain_json(report.domain), "records": records_json(report)}
        if operator:
            out["operator_records"] = operator
        emit_json(out)
        return 0
    print(f"added domain {report.domain['name']} to account {args.account}: {state_label(dict(report.domain))}")
    print("Publish these DNS records, then run `mailtrap-smtp domain verify "
          f"{report.domain['name']}`:\n")
    emit_table([{**r, "required": "yes" if r["required"] else "no"} for r in records_json(report)],
               ["key", "type", "name", "value", "required", "note"])
    if operator:
        print(f"\nOperator: publish in the key-hosting zone {cfg.domains.dkim_cname_zone}:\n")
        emit_table(operator, ["selector", "type", "name", "value"])
    return 0


@with_database
async def cmd_show(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    report = await domainops.show_domain(pool, cfg, args.domain)
    operator = await domainops.operator_records(pool, cfg, report.domain)
    # The status of each record at the last check (`domain verify` or the periodic re-check), if any.
    last = {c["key"]: c["status"] for c in json.loads(report.domain["last_check"] or "[]")}
    records = [{**r, "last_status": last.get(r["key"])} for r in records_json(report)]
    if args.json:
        out: dict[str, Any] = {"domain": domain_json(report.domain), "records": records}
        if operator:
            out["operator_records"] = operator
        emit_json(out)
        return 0
    print(f"{report.domain['name']} (account {report.domain['account']}): {state_label(dict(report.domain))}")
    print("Records to publish:\n")
    emit_table([{**r, "required": "yes" if r["required"] else "no", "last_status": r["last_status"] or "unchecked"}
                for r in records], ["key", "type", "name", "value", "required", "last_status", "note"])
    if operator:
        print(f"\nOperator: publish in the key-hosting zone {cfg.domains.dkim_cname_zone}:\n")
        emit_table(operator, ["selector", "type", "name", "value"])
    return 0


def _with_found(r: dict[str, Any]) -> str:
    # A mismatch says what was found, in full: the customer compares it with what to publish.
    found = f" (found: {' | '.join(r['found'])})" if r.get("status") == "mismatch" and r.get("found") else ""
    return str(r.get("detail", "")) + found


@with_database
async def cmd_verify(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    report = await domainops.verify_domain(pool, cfg, resolver(cfg), args.domain)
    records = records_json(report)
    if args.json:
        emit_json({"domain": domain_json(report.domain), "records": records})
    else:
        print(f"{report.domain['name']}: {state_label(dict(report.domain))}\n")
        emit_table([{**r, "required": "yes" if r["required"] else "no", "detail": _with_found(r)} for r in records],
                   ["key", "type", "name", "status", "required", "detail"])
    return 0 if report.domain["state"] in ("verified", "failing") else EXIT_ERROR


@with_database
async def cmd_approve(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    row = await domainops.approve_domain(pool, args.domain)
    print(f"approved {row['name']} ({row['state']})")
    return 0


@with_database
async def cmd_list(pool: Any, cfg: config_mod.Config, args: argparse.Namespace) -> int:
    rows = [domain_json(r) for r in await domainops.list_domains(pool, args.account)]
    if args.json:
        emit_json(rows)
    else:
        emit_table([{**r, "state": state_label(r), "failing_records": ",".join(r["failing_records"]),
                     "approved": "yes" if r["approved_at"] else "no"} for r in rows],
                   ["name", "account", "state", "approved", "last_checked_at", "failing_records"])
    return 0


def register(sub: Any, p: Parsers) -> None:
    dom = p.group(sub, "domain", "manage sending domains")
    s = p.add(dom, "add", cmd_add, "add a sending domain and print the DNS records to publish", listing=True)
    s.add_argument("account")
    s.add_argument("domain")
    s.add_argument("--skip-dns-verification", action="store_true",
                   help="development only: allow sending without DNS verification (shown in every listing)")
    s.add_argument("--force", action="store_true", help="accept a www. name")
    s = p.add(dom, "show", cmd_show, "the DNS records to publish, with their values, and the domain's state",
              listing=True)
    s.add_argument("domain")
    s = p.add(dom, "verify", cmd_verify, "check the domain's DNS records now and print each status", listing=True)
    s.add_argument("domain")
    s = p.add(dom, "approve", cmd_approve, "operator approval (when domains.require_approval is on)")
    s.add_argument("domain")
    s = p.add(dom, "list", cmd_list, "domains with state, last check and failing records", listing=True)
    s.add_argument("account", nargs="?")
