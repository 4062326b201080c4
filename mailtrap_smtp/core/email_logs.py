"""Email logs (MAILTRAP_COMPAT §7.1): list with Mailtrap's filters and cursor, one entry in detail
with its events and a signed, expiring raw-message URL, and the export of any number of entries
(csv or jsonl) in constant memory. One entry per recipient, named by the recipient's public id.

`parse_query` reads Mailtrap's query convention (`filters[to][operator]=ci_equal&filters[to][value]=…`,
`[value][]` for several values, `search_after`); the CLI builds the same `ListRequest` from its
options. Unknown filter fields are ignored (as Mailtrap does); a known field with an unknown
operator or a value of the wrong kind is `Invalid`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..delivery import bounces
from ..delivery.tlsoutcome import request_of
from ..events import Event
from ..store import email_logs as store
from ..store.types import Conn, Record
from . import event_names
from .suppressions import Invalid, NotFound, parse_time

PAGE_SIZE = 50
RAW_URL_TTL_SECONDS = 3600  # how long a `raw_message_url` stays valid
STATUSES = ("delivered", "not_delivered", "enqueued", "opted_out")
STREAMS = ("transactional", "bulk")
LOG_EVENT_TYPES = tuple(sorted({s.log for s in event_names.ALL}))
EXPORT_FORMATS = ("csv", "jsonl")
CSV_COLUMNS = ("message_id", "status", "sent_at", "from", "to", "subject", "category", "sending_stream",
               "sending_domain_id", "client_ip", "recipient_mx", "email_service_provider_response",
               "smtputf8", "tls_request")


def _our_types(log_name: str) -> list[str]:
    """Our event types shown in the email log as `log_name` (a transient failure with a remote
    reply is a soft bounce, hence the sample reply)."""
    return sorted(str(t) for t in Event if event_names.log_event_type(str(t), {"reply": "450 4.0.0 x"}) == log_name)


@dataclass(frozen=True)
class ListRequest:
    conditions: Sequence[store.Condition] = ()
    sent_after: dt.datetime | None = None
    sent_before: dt.datetime | None = None
    search_after: uuid.UUID | None = None


@dataclass
class _Spec:
    operator: str | None = None
    values: list[str] = field(default_factory=list)


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def condition(name: str, operator: str | None, values: Sequence[str]) -> store.Condition:
    """One filter, checked and typed: `Invalid` naming `filters[<name>]…` when it is not valid."""
    kind = store.FIELDS[name][1]
    ops = store.OPERATORS[kind]
    key = f"filters[{name}]"
    if operator is None or operator not in ops:
        raise Invalid({f"{key}[operator]": [f"must be one of: {', '.join(ops)}"]})
    if operator in store.NO_VALUE:
        return store.Condition(name, operator, ())
    if not values:
        raise Invalid({f"{key}[value]": ["can't be blank"]})
    typed: list[str | int]
    if kind == "int":
        try:
            typed = [int(v) for v in values]
        except ValueError:
            raise Invalid({f"{key}[value]": ["must be an integer"]}) from None
    elif kind == "events":
        if any(v not in LOG_EVENT_TYPES for v in values):
            raise Invalid({f"{key}[value]": [f"must be one of: {', '.join(LOG_EVENT_TYPES)}"]})
        typed = [t for v in values for t in _our_types(v)] or [""]
    else:
        allowed = STATUSES if name == "status" else STREAMS if name == "sending_stream" else None
        if allowed is not None and any(v not in allowed for v in values):
            raise Invalid({f"{key}[value]": [f"must be one of: {', '.join(allowed)}"]})
        if operator.startswith("ci_"):
            typed = [_like(v.lower()) if "contain" in operator else v.lower() for v in values]
        else:
            typed = list(values)
    return store.Condition(name, operator, typed)


def parse_query(params: Mapping[str, Sequence[str]]) -> ListRequest:
    """A ListRequest from query parameters (each name → its values, in order)."""
    specs: dict[str, _Spec] = {}
    sent_after = sent_before = None
    search_after = None
    for name, values in params.items():
        if name == "search_after":
            search_after = _entry_id(values[-1], "search_after") if values and values[-1] else None
        elif name == "filters[sent_after]":
            sent_after = parse_time(name, values[-1] if values else None)
        elif name == "filters[sent_before]":
            sent_before = parse_time(name, values[-1] if values else None)
        elif name.startswith("filters[") and "][" in name:
            fname, _, rest = name[len("filters["):].partition("][")
            if fname not in store.FIELDS:
                continue  # unknown filters are ignored (§7.1)
            spec = specs.setdefault(fname, _Spec())
            if rest == "operator]":
                spec.operator = values[-1] if values else None
            elif rest in ("value]", "value][]"):
                spec.values.extend(values)
    conditions = [condition(n, s.operator, s.values) for n, s in specs.items()]
    return ListRequest(conditions, sent_after, sent_before, search_after)


def scoped(req: ListRequest, *, domain_ids: Sequence[int] | None, streams: Sequence[str] | None) -> ListRequest:
    """The request limited to these domains and streams (None: all): what a scoped token may read."""
    extra = []
    if domain_ids is not None:
        extra.append(store.Condition("domain_id", "equal", list(domain_ids) or [-1]))
    if streams is not None:
        extra.append(store.Condition("sending_stream", "equal", list(streams) or [""]))
    return ListRequest([*req.conditions, *extra], req.sent_after, req.sent_before, req.search_after)


def _entry_id(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Invalid({name: ["is not a message id"]}) from None


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def as_message(row: Record) -> dict[str, Any]:
    """The Message object of §7.1 (both `sending_domain_id` and `domain_id`)."""
    cv = row["custom_variables"]
    return {
        "message_id": str(row["public_id"]), "status": row["status"], "subject": row["subject"],
        "rfc_message_id": row["message_id_header"], "in_reply_to": None, "references": [], "thread_id": None,
        "from": row["sender"], "to": row["rcpt"], "sent_at": _iso(row["created_at"]),
        "client_ip": row["client_ip"], "category": row["category"],
        "custom_variables": json.loads(cv) if cv else {}, "sending_stream": row["stream"],
        "sending_domain_id": row["domain_id"], "domain_id": row["domain_id"],
        "template_id": None, "template_variables": {}, "opens_count": 0, "clicks_count": 0,
    }


def our_extras(row: Record) -> dict[str, Any]:
    """What the message asked of the next hops, beyond Mailtrap's Message object (which has no
    such fields, so the API's list and detail leave them out): `smtputf8` (RFC 6531) and
    `tls_request` (`requiretls`, `tls-required-no`, or null: RFC 8689), as stored at submission."""
    return {"smtputf8": row["smtputf8"], "tls_request": request_of(row["tls_required"])}


def _query(account_id: int, req: ListRequest) -> store.Query:
    return store.Query(account_id, req.conditions, req.sent_after, req.sent_before)


async def list_logs(conn: Conn, account_id: int, req: ListRequest, *, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """`{"messages": [...], "total_count": N, "next_page_cursor": id|None}`, newest first."""
    after = None
    if req.search_after is not None:
        after = await store.position_of(conn, account_id, req.search_after)
        if after is None:
            raise Invalid({"search_after": ["is not a message id of this account"]})
    q = _query(account_id, req)
    rows = await store.page(conn, q, after=after, limit=page_size + 1)
    more = len(rows) > page_size
    rows = rows[:page_size]
    return {"messages": [as_message(r) for r in rows], "total_count": await store.count(conn, q),
            "next_page_cursor": str(rows[-1]["public_id"]) if more else None}


def _event_details(log_type: str, e: Record) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(e["details"]) if isinstance(e["details"], str) else dict(e["details"])
    if log_type in ("reject", "suspension"):
        return {"reject_reason": d.get("reason")}
    out: dict[str, Any] = {"sending_ip": None, "recipient_mx": d.get("mx"), "email_service_provider": e["provider"]}
    if log_type in ("bounce", "soft_bounce"):
        reply = bounces.parse_line(str(d.get("reply") or ""))
        out.update(email_service_provider_status=reply.enhanced, email_service_provider_response=str(reply) or None,
                   bounce_category=event_names.bounce_category(d))
    return out


def event_of(e: Record) -> dict[str, Any] | None:
    """An email-log event (`event_type` in the log's spelling), or None if the log does not show it."""
    details = json.loads(e["details"]) if isinstance(e["details"], str) else dict(e["details"])
    log_type = event_names.log_event_type(e["type"], details)
    if log_type is None:
        return None
    return {"event_type": log_type, "created_at": _iso(e["created_at"]), "details": _event_details(log_type, e)}


async def show(conn: Conn, account_id: int, entry_id: uuid.UUID, *, raw_url: RawUrls | None = None,
               now: dt.datetime | None = None, extras: bool = False) -> dict[str, Any]:
    """One entry with `events` and `raw_message_url` (None when the body was deleted or no URLs);
    with `extras` (the dashboard, never the API's Mailtrap shape) also `our_extras`."""
    row = await store.entry(conn, account_id, entry_id)
    if row is None:
        raise NotFound(f"no message {entry_id}")
    msg = as_message(row)
    if extras:
        msg.update(our_extras(row))
    events = [event_of(e) for e in await store.events_of(conn, row["message_uuid"], row["rid"])]
    msg["events"] = [e for e in events if e is not None]
    msg["raw_message_url"] = (raw_url.url(row["public_id"], now or dt.datetime.now(dt.UTC))
                              if raw_url is not None and row["raw_deleted_at"] is None else None)
    return msg


class RawUrls:
    """Signed, expiring URLs of stored messages: HMAC-SHA256 over the id and the expiry time."""

    PATH = "/api/email_logs/{id}/raw"

    def __init__(self, secret: bytes, base_url: str, ttl_seconds: int) -> None:
        # A key of its own, derived from the operator's secret with a fixed label (HKDF-style
        # separation: the secret's other uses never see this key's outputs).
        self._key = hmac.new(secret, b"mailtrap-smtp raw message url v1", hashlib.sha256).digest()
        self._base = base_url.rstrip("/")
        self._ttl = ttl_seconds

    def _signature(self, entry_id: uuid.UUID, expires: int) -> str:
        return hmac.new(self._key, f"{entry_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, entry_id: uuid.UUID, now: dt.datetime) -> str:
        expires = int(now.timestamp()) + self._ttl
        path = self.PATH.format(id=entry_id)
        return f"{self._base}{path}?expires={expires}&signature={self._signature(entry_id, expires)}"

    def valid(self, entry_id: uuid.UUID, expires: str, signature: str, now: dt.datetime) -> bool:
        if not expires.isdigit() or len(expires) > 12:
            return False
        good = hmac.compare_digest(self._signature(entry_id, int(expires)), signature)
        return good and int(expires) >= now.timestamp()


async def raw_message(conn: Conn, account_id: int, entry_id: uuid.UUID) -> bytes:
    raw = await store.raw_of(conn, account_id, entry_id)
    if raw is None:
        raise NotFound(f"no stored message {entry_id}")
    return raw


async def raw_message_any(conn: Conn, entry_id: uuid.UUID) -> bytes:
    """The stored message of an entry whatever its account: for a signed URL, which is its own proof."""
    raw = await store.raw_of(conn, None, entry_id)
    if raw is None:
        raise NotFound(f"no stored message {entry_id}")
    return raw


def _export_row(row: Record) -> dict[str, Any]:
    out = as_message(row)
    out["recipient_mx"] = row["mx"]
    out["email_service_provider_response"] = row["last_reply"]
    return out | our_extras(row)


def check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise Invalid({"format": [f"must be one of: {', '.join(EXPORT_FORMATS)}"]})


async def export(pool: Any, account_id: int, req: ListRequest, fmt: str) -> AsyncIterator[str]:
    """Every entry of the request as csv (with a header line) or jsonl, one line per entry.

    Rows come through a server-side cursor on a connection of its own and each line is yielded as
    soon as it is made, so memory does not grow with the number of rows.
    """
    check_format(fmt)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if fmt == "csv":
        writer.writerow(CSV_COLUMNS)
        yield _take(buf)
    async with pool.acquire() as conn:
        async for row in store.stream(conn, _query(account_id, req)):
            entry = _export_row(row)
            if fmt == "jsonl":
                yield json.dumps(entry, separators=(",", ":")) + "\n"
            else:
                writer.writerow([_csv_cell(entry[c]) for c in CSV_COLUMNS])
                yield _take(buf)


def _csv_cell(value: Any) -> Any:
    """None as an empty cell, booleans as JSON writes them (`true`/`false`)."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, bool) else value


def _take(buf: io.StringIO) -> str:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return text
