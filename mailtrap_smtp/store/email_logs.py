"""Email-log queries (MAILTRAP_COMPAT §7.1): one entry per recipient, newest first, with filters.

Filters arrive as `Condition`s naming a field and an operator from the fixed tables below; only
their values become parameters, so no client text is ever part of the SQL. Everything is scoped
to one account.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from .types import Conn, Record

# Status of an entry (the SDK's Literal): delivery decides it; a suppressed recipient is rejected.
STATUS_SQL = ("CASE r.state WHEN 'delivered' THEN 'delivered' WHEN 'queued' THEN 'enqueued' "
              "ELSE 'not_delivered' END")
# The latest MX host an attempt for the recipient reached (delivery, bounce or deferral events).
_MX_SQL = ("(SELECT e.details->>'mx' FROM events e WHERE e.message_id = m.id AND e.recipient_id = r.id "
           "AND e.details->>'mx' IS NOT NULL ORDER BY e.id DESC LIMIT 1)")

# Each filterable field: its SQL and its kind (which operators apply, how values are typed).
FIELDS: dict[str, tuple[str, str]] = {
    "to": ("r.rcpt", "text"),
    "from": ("coalesce(m.header_from, m.mail_from)", "text"),
    "subject": ("m.subject", "text"),
    "category": ("m.category", "text"),
    "client_ip": ("host(m.client_ip)", "text"),
    "sending_ip": ("NULL::text", "text"),  # not recorded: the host's own address
    "email_service_provider_response": ("r.last_reply", "text"),
    "recipient_mx": (_MX_SQL, "text"),
    "email_service_provider": (f"mts_mail_provider({_MX_SQL})", "text"),
    "status": (STATUS_SQL, "text"),
    "sending_stream": ("m.stream", "text"),
    "sending_domain_id": ("m.domain_id", "int"),
    "domain_id": ("m.domain_id", "int"),
    "opens_count": ("0", "int"),   # no open tracking
    "clicks_count": ("0", "int"),  # no click tracking
    "events": ("", "events"),
}

# Operator → SQL with {f} for the field and {p} for the parameter (an array unless noted).
_TEXT_OPS = {
    "ci_equal": "coalesce(lower({f}) = ANY({p}::text[]), false)",
    "ci_not_equal": "NOT coalesce(lower({f}) = ANY({p}::text[]), false)",
    "ci_contain": "coalesce({f} ILIKE ANY({p}::text[]), false)",
    "ci_not_contain": "NOT coalesce({f} ILIKE ANY({p}::text[]), false)",
    "equal": "coalesce({f} = ANY({p}::text[]), false)",
    "not_equal": "NOT coalesce({f} = ANY({p}::text[]), false)",
    "empty": "coalesce({f}, '') = ''",
    "not_empty": "coalesce({f}, '') <> ''",
}
_INT_OPS = {
    "equal": "coalesce({f} = ANY({p}::bigint[]), false)",
    "not_equal": "NOT coalesce({f} = ANY({p}::bigint[]), false)",
    "greater_than": "{f} > ({p}::bigint[])[1]",
    "less_than": "{f} < ({p}::bigint[])[1]",
    "empty": "{f} IS NULL",
    "not_empty": "{f} IS NOT NULL",
}
_EVENT_OPS = {
    "include_event": "EXISTS (SELECT 1 FROM events e WHERE e.message_id = m.id AND e.recipient_id = r.id "
                     "AND e.type = ANY({p}::text[]))",
    "not_include_event": "NOT EXISTS (SELECT 1 FROM events e WHERE e.message_id = m.id "
                         "AND e.recipient_id = r.id AND e.type = ANY({p}::text[]))",
}
OPERATORS: dict[str, dict[str, str]] = {"text": _TEXT_OPS, "int": _INT_OPS, "events": _EVENT_OPS}
NO_VALUE = frozenset({"empty", "not_empty"})


@dataclass(frozen=True)
class Condition:
    field: str      # a key of FIELDS
    operator: str   # a key of OPERATORS[kind of field]
    values: Sequence[str | int]  # already typed and lowered/patterned by the caller as the operator needs


@dataclass(frozen=True)
class Query:
    account_id: int
    conditions: Sequence[Condition] = ()
    sent_after: dt.datetime | None = None
    sent_before: dt.datetime | None = None


_ENTRY = f"""r.id AS rid, r.public_id, r.rcpt, r.state, r.last_reply, {STATUS_SQL} AS status,
    m.id AS message_uuid, m.created_at, m.subject, coalesce(m.header_from, m.mail_from) AS sender,
    m.mail_from, host(m.client_ip) AS client_ip, m.category, m.custom_variables, m.stream, m.domain_id,
    m.message_id_header, m.size, m.raw_deleted_at, m.smtputf8, m.tls_required"""


def _where(q: Query, first_param: int) -> tuple[str, list[object]]:
    clauses = ["m.account_id = $1"]
    params: list[object] = []

    def param(value: object) -> str:
        params.append(value)
        return f"${first_param + len(params) - 1}"

    if q.sent_after is not None:
        clauses.append(f"m.created_at >= {param(q.sent_after)}")
    if q.sent_before is not None:
        clauses.append(f"m.created_at <= {param(q.sent_before)}")
    for c in q.conditions:
        sql, kind = FIELDS[c.field]
        template = OPERATORS[kind][c.operator]
        p = "NULL" if c.operator in NO_VALUE else param(list(c.values))
        clauses.append("(" + template.format(f=sql, p=p) + ")")
    return " AND ".join(clauses), params


async def page(conn: Conn, q: Query, *, after: tuple[dt.datetime, int] | None, limit: int) -> list[Record]:
    """Up to `limit` entries after the cursor position (created_at, recipient id), newest first."""
    where, params = _where(q, 2)
    cursor = ""
    if after is not None:
        n = len(params) + 2
        cursor = f" AND (m.created_at, r.id) < (${n}::timestamptz, ${n + 1}::bigint)"
        params += [after[0], after[1]]
    return list(await conn.fetch(
        f"""SELECT {_ENTRY} FROM messages m JOIN recipients r ON r.message_id = m.id
             WHERE {where}{cursor}
             ORDER BY m.created_at DESC, r.id DESC LIMIT {int(limit)}""",
        q.account_id, *params,
    ))


async def count(conn: Conn, q: Query) -> int:
    where, params = _where(q, 2)
    return int(await conn.fetchval(
        f"SELECT count(*) FROM messages m JOIN recipients r ON r.message_id = m.id WHERE {where}",
        q.account_id, *params,
    ))


async def position_of(conn: Conn, account_id: int, public_id: uuid.UUID) -> tuple[dt.datetime, int] | None:
    """The cursor position of an entry of this account (for `search_after`)."""
    row = await conn.fetchrow(
        """SELECT m.created_at, r.id FROM recipients r JOIN messages m ON m.id = r.message_id
            WHERE r.public_id = $2 AND m.account_id = $1""",
        account_id, public_id,
    )
    return None if row is None else (row["created_at"], int(row["id"]))


async def entry(conn: Conn, account_id: int, entry_id: uuid.UUID) -> Record | None:
    """One entry by its public id, or (for an SMTP "queued as" id) the first recipient of the message."""
    return await conn.fetchrow(
        f"""SELECT {_ENTRY} FROM messages m JOIN recipients r ON r.message_id = m.id
             WHERE m.account_id = $1 AND (r.public_id = $2 OR m.id = $2)
             ORDER BY (r.public_id = $2) DESC, r.id LIMIT 1""",
        account_id, entry_id,
    )


async def events_of(conn: Conn, message_id: uuid.UUID, recipient_id: int) -> list[Record]:
    """The recipient's events in order, with the mailbox provider of the MX each one reached."""
    return list(await conn.fetch(
        """SELECT type, created_at, details, mts_mail_provider(details->>'mx') AS provider
             FROM events WHERE message_id = $1 AND recipient_id = $2 ORDER BY id""",
        message_id, recipient_id,
    ))


async def raw_of(conn: Conn, account_id: int | None, recipient_public_id: uuid.UUID) -> bytes | None:
    """The stored body of an entry (of any account when `account_id` is None); None once deleted."""
    raw = await conn.fetchval(
        """SELECT m.raw FROM recipients r JOIN messages m ON m.id = r.message_id
            WHERE r.public_id = $2 AND ($1::bigint IS NULL OR m.account_id = $1) AND m.raw_deleted_at IS NULL""",
        account_id, recipient_public_id,
    )
    return None if raw is None else bytes(raw)


async def stream(conn: Conn, q: Query, *, batch: int = 1000) -> AsyncIterator[Record]:
    """Every entry of the query, newest first, read through a server-side cursor (constant memory).

    `conn` must be one connection (not a pool): the cursor lives in its transaction.
    """
    where, params = _where(q, 2)
    async with conn.transaction(readonly=True):
        cur = conn.cursor(
            f"""SELECT {_ENTRY}, {_MX_SQL} AS mx FROM messages m JOIN recipients r ON r.message_id = m.id
                 WHERE {where} ORDER BY m.created_at DESC, r.id DESC""",
            q.account_id, *params, prefetch=batch,
        )
        async for row in cur:
            yield row
