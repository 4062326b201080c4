"""Use case: a report received for a VERP return path becomes an event of the message's recipient.

The caller has already checked the tag's MAC (delivery/verp.py): a forged or altered return path
never gets here. A report that is not feedback (a delivery notice, an unparseable text) and a
second copy of one already recorded change nothing. Hard bounces and complaints feed the
suppression list through the outbox consumers of these events, not here.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from ..delivery import verp
from ..events import Event
from ..store import events, returnpath
from ..store.types import Conn
from .reports import Kind, Report

_EVENT = {Kind.BOUNCE: Event.BOUNCE, Kind.SOFT_BOUNCE: Event.SOFT_BOUNCE, Kind.SPAM: Event.SPAM}


class Result(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    NOT_FEEDBACK = "not_feedback"
    UNPARSEABLE = "unparseable"
    UNKNOWN_RECIPIENT = "unknown_recipient"  # valid MAC, but the message is gone (retention)


def tags_in(key: bytes, report: Report) -> list[verp.Tag]:
    """The valid VERP tags among the report's return-path candidates (Original-Mail-From, the
    original's Return-Path): how a report sent to a fixed feedback-loop address names its message."""
    found: list[verp.Tag] = []
    for candidate in report.verp_candidates:
        tag = verp.check(key, candidate)
        if tag is not None and tag not in found:
            found.append(tag)
    return found


def _fingerprint(report: Report) -> str:
    """What makes two reports the same: kind, recipient, status, diagnostic, remote MTA."""
    text = "\x00".join(str(x or "") for x in (report.kind, report.recipient, report.status,
                                                report.diagnostic, report.remote_mta, report.feedback_type))
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]


def details(report: Report, reporter: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": "inbound", "format": report.format, "reported_by": reporter,
        "final_recipient": report.recipient, "fingerprint": _fingerprint(report),
    }
    if report.kind is Kind.SPAM:
        out["feedback_type"] = report.feedback_type
        out.update({k.replace("-", "_"): v for k, v in report.extra.items()})
    else:
        out.update(status=report.status, diagnostic=report.diagnostic, remote_mta=report.remote_mta,
                   category=report.category)
        # The same key the delivery events use for the remote's words (docs/delivery.md §4).
        out["reply"] = report.diagnostic or report.status or ""
    return out


async def record(pool: Conn, tag: verp.Tag, report: Report, *, reporter: str) -> Result:
    """Record `report` as the event of the recipient `tag` names, in one transaction."""
    if report.kind is Kind.UNPARSEABLE:
        return Result.UNPARSEABLE
    event = _EVENT.get(report.kind)
    if event is None:
        return Result.NOT_FEEDBACK
    info = details(report, reporter)
    async with pool.acquire() as conn, conn.transaction():
        row = await returnpath.lock_tagged_recipient(conn, tag.message_id, tag.recipient_id)
        if row is None:
            return Result.UNKNOWN_RECIPIENT
        if await returnpath.has_feedback(conn, row["message_id"], row["id"], str(event), info["fingerprint"]):
            return Result.DUPLICATE
        await events.record(conn, event, account_id=row["account_id"], domain_id=row["domain_id"],
                            message_id=row["message_id"], recipient_id=row["id"], details=info)
    return Result.RECORDED
