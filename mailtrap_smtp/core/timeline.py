"""One recipient's life as people read it (the dashboard's message page): its reception, each
delivery attempt with the MX that answered, its reply, the TLS version and policy of the
connection (delivery/tlspolicy.py's `tls_policy`) and its delay — since reception and since the
previous attempt —, and what came after (a DSN, a complaint, an unsubscription) or instead (the
suppression list, the operator).

The email-log API (core/email_logs.py) keeps Mailtrap's shape; this is the fuller view of the same
events, read from the same rows (`store/email_logs.events_of`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from ..events import Event
from ..store import email_logs as store
from ..store.types import Conn, Record
from .suppressions import NotFound

# An attempt's outcome, by the event that recorded it (store/queue.record_outcomes).
ATTEMPT_OUTCOMES = {Event.DELIVERY: "delivered", Event.TRANSIENT_FAILURE: "deferred",
                    Event.BOUNCE: "bounced", Event.EXPIRATION: "expired"}
# Every other event of a recipient, named for people.
LABELS = {Event.SUPPRESSED: "rejected: on the suppression list", Event.BOUNCE: "bounced: a DSN came back",
          Event.SOFT_BOUNCE: "delayed: a DSN came back", Event.SPAM: "spam complaint",
          Event.UNSUBSCRIBE: "unsubscribed (one-click)", Event.EXPIRATION: "expired: maximum queue lifetime",
          Event.MANUAL_RETRY: "retry asked by the operator", Event.MANUAL_BOUNCE: "bounced by the operator"}


@dataclass(frozen=True)
class Step:
    at: dt.datetime
    label: str
    since_reception: dt.timedelta
    attempt: int | None = None  # 1, 2, …: a delivery attempt (then the fields below apply)
    mx: str | None = None
    reply: str | None = None
    tls: str | None = None  # the TLS version, None: clear text (or no connection)
    tls_policy: str | None = None  # none / opportunistic / required / mta-sts / dane, with its mode
    tls_note: str | None = None  # why a policy failed, or a note on it
    since_previous: dt.timedelta | None = None  # from the previous attempt (None: the first)
    possible_duplicate: bool = False


def _is_attempt(type_: str, d: dict[str, Any]) -> bool:
    # A delivery outcome names its MX (None when no connection was made) or its sandbox capture; a
    # later DSN has a source, an expiration found at claim time only a reason.
    return type_ in ATTEMPT_OUTCOMES and d.get("source") is None and ("mx" in d or bool(d.get("sandbox")))


def _policy(d: dict[str, Any]) -> tuple[str | None, str | None]:
    p = d.get("tls_policy")
    if not isinstance(p, dict) or not p.get("policy"):
        return None, None
    name = " ".join(str(p[k]) for k in ("policy", "mode") if p.get(k))
    note = "; ".join(str(p[k]) for k in ("failure", "note") if p.get(k))
    return name, note or None


def _step(e: Record, received: dt.datetime, previous: dt.datetime | None, attempt: int) -> Step:
    d: dict[str, Any] = json.loads(e["details"]) if isinstance(e["details"], str) else dict(e["details"])
    at: dt.datetime = e["created_at"]
    reply = d.get("reply") or d.get("reason")
    if not _is_attempt(e["type"], d):
        label = LABELS.get(e["type"], str(e["type"]))
        return Step(at, label, at - received, reply=None if reply is None else str(reply))
    policy, note = _policy(d)
    mx = "sandbox (captured, not sent)" if d.get("sandbox") else d.get("mx")
    tls = d.get("tls") if isinstance(d.get("tls"), str) else None
    return Step(at, ATTEMPT_OUTCOMES[e["type"]], at - received, attempt=attempt, mx=mx,
                reply=None if reply is None else str(reply), tls=tls, tls_policy=policy, tls_note=note,
                since_previous=None if previous is None else at - previous,
                possible_duplicate=bool(d.get("possible_duplicate")))


async def timeline(conn: Conn, account_id: int, entry_id: uuid.UUID) -> list[Step]:
    """The recipient's steps in order, the reception first (NotFound if not this account's)."""
    row = await store.entry(conn, account_id, entry_id)
    if row is None:
        raise NotFound(f"no message {entry_id}")
    received: dt.datetime = row["created_at"]
    steps = [Step(received, "received", dt.timedelta(0))]
    previous: dt.datetime | None = None
    attempts = 0
    for e in await store.events_of(conn, row["message_uuid"], row["rid"]):
        step = _step(e, received, previous, attempts + 1)
        if step.attempt is not None:
            previous, attempts = step.at, step.attempt
        steps.append(step)
    return steps
