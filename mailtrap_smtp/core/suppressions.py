"""Suppression use cases (MAILTRAP_COMPAT §6): add (one or up to 1,000 per domain per call), CSV
import, search by email and time, delete, all within one account; and the Suppression object.

An address is one RCPT and the send API would take (`mailbox.problem` with internationalised
mail allowed, RFC 6531 §3.3), stored and compared in `mailbox.suppression_form`: any case, its
domain as A-labels, so a suppression of `jürgen@bücher.example` refuses `Jürgen@xn--bcher-kva.example`.

Invalid input raises `Invalid` (per field, the shape of Mailtrap's 422 body) before anything is
written; a domain or suppression of another account is `NotFound`, as if it did not exist.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..mailbox import suppression_form, valid_mailbox
from ..store import domains as domains_store
from ..store import suppressions as store
from ..store.types import Conn, Record
from .refusal import Kind, Refused

STREAMS = ("transactional", "bulk", "any")
TYPES = ("hard bounce", "unsubscription", "spam complaint", "manual import")
MANUAL_IMPORT = "manual import"
HARD_BOUNCE = "hard bounce"
SPAM_COMPLAINT = "spam complaint"
UNSUBSCRIPTION = "unsubscription"
MAX_PER_DOMAIN = 1000  # per call (§6 "up to 1,000 per domain")
MAX_EMAIL = 254  # RFC 5321 §4.5.3.1.3 path limit less the angle brackets
MAX_LIST = 1000  # items per search answer (§6)

# The Suppression object's `message_*` fields (§6), stored as copies on the row.
MESSAGE_FIELDS = ("message_bounce_category", "message_category", "message_client_ip", "message_created_at",
                  "message_esp_response", "message_esp_server_type", "message_outgoing_ip",
                  "message_recipient_mx_name", "message_sender_email", "message_subject")


class Invalid(Refused):
    """Input that breaks a rule: `errors` maps each field to its messages (Mailtrap's 422 shape)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k} {m}" for k, ms in errors.items() for m in ms))
        self.errors = errors


class NotFound(Refused):
    """No such suppression (or domain) in this account."""

    kind = Kind.NOT_FOUND


@dataclass(frozen=True)
class Entry:
    """One suppression asked for: as given by the caller, checked by `add`."""

    email: Any
    domain_id: Any
    sending_stream: Any = "any"
    type: Any = MANUAL_IMPORT


def as_object(row: Record) -> dict[str, Any]:
    """The Suppression object of §6 (JSON-ready: strings, numbers, None)."""
    created = row["created_at"]
    obj: dict[str, Any] = {
        "id": str(row["id"]), "type": row["type"], "created_at": created.isoformat(), "email": row["email"],
        "sending_stream": row["sending_stream"], "domain_name": row["domain_name"],
    }
    for name in MESSAGE_FIELDS:
        value = row[name]
        obj[name] = value.isoformat() if isinstance(value, dt.datetime) else value
    return obj


def _check(entry: Entry, index: int | None) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    at = "" if index is None else f"[{index}]"
    email = entry.email
    if not isinstance(email, str) or not email:
        errors[f"email{at}"] = ["can't be blank"]
    elif len(email) > MAX_EMAIL or not valid_mailbox(email, utf8=True):  # the mailbox rule of RCPT and the API
        errors[f"email{at}"] = ["is invalid"]
    if isinstance(entry.domain_id, bool) or not isinstance(entry.domain_id, int):
        errors[f"domain_id{at}"] = ["can't be blank" if entry.domain_id is None else "is invalid"]
    if entry.sending_stream not in STREAMS:
        errors[f"sending_stream{at}"] = [f"must be one of: {', '.join(STREAMS)}"]
    if entry.type not in TYPES:
        errors[f"type{at}"] = [f"must be one of: {', '.join(TYPES)}"]
    return errors


def _validate(entries: Sequence[Entry]) -> list[store.NewSuppression]:
    errors: dict[str, list[str]] = {}
    single = len(entries) == 1
    for i, e in enumerate(entries):
        errors.update(_check(e, None if single else i))
    if errors:
        raise Invalid(errors)
    per_domain: dict[int, int] = {}
    for e in entries:
        per_domain[e.domain_id] = per_domain.get(e.domain_id, 0) + 1
    if any(n > MAX_PER_DOMAIN for n in per_domain.values()):
        raise Invalid({"base": [f"at most {MAX_PER_DOMAIN} suppressions per domain in one request"]})
    return _dedupe(entries)


def _dedupe(entries: Sequence[Entry]) -> list[store.NewSuppression]:
    """The same entry twice in one call is one suppression (first spelling kept), stored in the
    form submission compares recipients with (`mailbox.suppression_form`)."""
    seen: set[tuple[str, int, str]] = set()
    out = []
    for e in entries:
        email = suppression_form(e.email)
        key = (email.lower(), e.domain_id, e.sending_stream)
        if key not in seen:
            seen.add(key)
            out.append(store.NewSuppression(email, e.domain_id, e.sending_stream, e.type))
    return out


async def _insert(conn: Conn, account_id: int, items: list[store.NewSuppression]) -> list[dict[str, Any]]:
    mine = {int(r["id"]) for r in await domains_store.list_all(conn, account_id)}
    foreign = sorted({i.domain_id for i in items} - mine)
    if foreign:
        raise NotFound(f"no sending domain {foreign[0]} in this account")
    return [as_object(r) for r in await store.add_many(conn, account_id, items)]


async def add(conn: Conn, account_id: int, entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Create the suppressions (an existing one is returned unchanged), all or none.

    At most 1,000 per domain per call; every domain must belong to the account (else `NotFound`).
    """
    if not entries:
        raise Invalid({"base": ["no suppressions given"]})
    return await _insert(conn, account_id, _validate(entries))


async def add_one(conn: Conn, account_id: int, entry: Entry) -> dict[str, Any]:
    (obj,) = await add(conn, account_id, [entry])
    return obj


def read_csv(text: str) -> list[str]:
    """The addresses of a CSV upload: the first column, or the `email` column of a header row.

    Blank lines are skipped; anything else that is not an address is reported by `add`.
    """
    rows = [r for r in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in r)]
    column = 0
    if rows and any(cell.strip().lower() == "email" for cell in rows[0]):
        column = [cell.strip().lower() for cell in rows[0]].index("email")
        rows = rows[1:]
    return [(r[column] if column < len(r) else "").strip() for r in rows]


async def import_csv(conn: Conn, account_id: int, text: str, *, domain_id: int, sending_stream: str = "any",
                     type_: str = MANUAL_IMPORT) -> list[dict[str, Any]]:
    """Add every address of a CSV upload to one domain and stream, all or none (one statement).

    Unlike a manual add, an upload has no per-call limit. Errors name the line of the address.
    """
    entries = [Entry(e, domain_id, sending_stream, type_) for e in read_csv(text)]
    if not entries:
        raise Invalid({"base": ["the file holds no addresses"]})
    errors: dict[str, list[str]] = {}
    for i, e in enumerate(entries):
        errors.update({f"line {i + 1}: {k}": v for k, v in _check(e, None).items()})
    if errors:
        raise Invalid(errors)
    return await _insert(conn, account_id, _dedupe(entries))


async def search(conn: Conn, account_id: int, *, email: str | None = None, start_time: dt.datetime | None = None,
                 end_time: dt.datetime | None = None, last_id: uuid.UUID | None = None,
                 domain_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """At most 1,000 suppressions, oldest first, after the `last_id` cursor; of `domain_ids` only
    when given (a token scoped to some domains); `email` compared as suppressions are (any case,
    the domain in U- or A-labels)."""
    if email is not None:
        email = suppression_form(email)  # `Jürgen@Bücher.example` finds what was stored for it
    rows = await store.search(conn, account_id, email=email, start_time=start_time, end_time=end_time,
                              after=last_id, limit=MAX_LIST, domain_ids=domain_ids)
    return [as_object(r) for r in rows]


async def delete(conn: Conn, account_id: int, suppression_id: uuid.UUID) -> dict[str, Any]:
    row = await store.delete(conn, account_id, suppression_id)
    if row is None:
        raise NotFound(f"no suppression {suppression_id}")
    return as_object(row)


async def domain_of(conn: Conn, account_id: int, suppression_id: uuid.UUID) -> int:
    """The domain a suppression of the account applies to (`NotFound` if there is none)."""
    domain_id = await store.domain_of(conn, account_id, suppression_id)
    if domain_id is None:
        raise NotFound(f"no suppression {suppression_id}")
    return domain_id


def parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no suppression {value!r}") from None


def parse_time(name: str, value: str | None) -> dt.datetime | None:
    """An ISO 8601 time parameter (naive means UTC); `Invalid` when it is not one."""
    if value is None or value == "":
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid({name: ["is not an ISO 8601 time"]}) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


async def domain_id_of(conn: Conn, account_id: int, name: str) -> int:
    """The id of the account's sending domain `name` (the CLI names domains, the API numbers them)."""
    row = await domains_store.get_by_name(conn, name.lower())
    if row is None or int(row["account_id"]) != account_id:
        raise NotFound(f"no sending domain {name!r} in this account")
    return int(row["id"])
