"""A sending domain as Mailtrap's Domain object (MAILTRAP_COMPAT.md §4.3), from our domain row, the
records it must publish and its last DNS check. Pure.

Each record's Mailtrap key (`verification`, `dkim1`, `dkim2`, `spf`, `dmarc`, `link_verification`)
is set where the records are defined (`domains.expected_records`, `domainops.expected_for`). Every
record carries all six fields (the Python SDK's `DnsRecord` requires them). A record never checked
is `unchecked`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..domains import ExpectedRecord
from .models import DnsRecordOut, DomainOut, DomainPermissions

_CHECK_STATUS = {"pass": "pass", "missing": "missing", "mismatch": "fail", "error": "network_error"}
_COMPLIANCE = {"verified": "compliant", "failing": "compliant", "unverified": "unverified_dns",
               "suspended": "suspended"}


def _relative(name: str, domain: str) -> str:
    return "" if name == domain else name.removesuffix(f".{domain}")


def _statuses(last_check: Any) -> dict[tuple[str, str], str]:
    checks = json.loads(last_check) if isinstance(last_check, str) else (last_check or [])
    return {(c["key"], c["name"]): _CHECK_STATUS.get(c["status"], "network_error") for c in checks}


def domain_out(row: Any, records: Sequence[ExpectedRecord], *, require_approval: bool,
               may_manage: bool) -> DomainOut:
    name = str(row["name"])
    statuses = _statuses(row["last_check"])
    state = str(row["state"])
    compliance = _COMPLIANCE.get(state, "unverified_dns")
    if compliance == "compliant" and require_approval and row["approved_at"] is None and not row["dns_skipped"]:
        compliance = "under_review"
    verified_at = row["verified_at"]
    return DomainOut(
        id=int(row["id"]), domain_name=name, compliance_status=compliance,
        dns_verified=state in ("verified", "failing"),
        dns_verified_at=verified_at.isoformat() if verified_at is not None else None,
        dns_records=[DnsRecordOut(key=key, domain=r.name, type=r.type, value=r.value,
                                  status=statuses.get((r.key, r.name), "unchecked"), name=_relative(r.name, name))
                     for key, r in ((r.mailtrap_key or r.key, r) for r in records)],
        alert_recipient_email=row.get("alert_email"),
        permissions=DomainPermissions(can_read=True, can_update=may_manage, can_destroy=may_manage),
    )
