"""Email templates of an account (table `email_templates`); every query is scoped to the account."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from .types import Conn, Record

FIELDS = ("name", "subject", "category", "body_text", "body_html")  # what create / update may set


async def create(conn: Conn, account_id: int, template_uuid: uuid.UUID, values: Mapping[str, str | None]) -> Record:
    row = await conn.fetchrow(
        """INSERT INTO email_templates (uuid, account_id, name, subject, category, body_text, body_html)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
        template_uuid, account_id, *(values.get(f) for f in FIELDS),
    )
    assert row is not None
    return row


async def list_for_account(conn: Conn, account_id: int) -> list[Record]:
    return list(await conn.fetch("SELECT * FROM email_templates WHERE account_id = $1 ORDER BY id", account_id))


async def page_for_account(conn: Conn, account_id: int, *, offset: int, limit: int) -> list[Record]:
    return list(await conn.fetch(
        "SELECT * FROM email_templates WHERE account_id = $1 ORDER BY id OFFSET $2 LIMIT $3",
        account_id, offset, limit))


async def get(conn: Conn, account_id: int, template_id: int) -> Record | None:
    return await conn.fetchrow("SELECT * FROM email_templates WHERE account_id = $1 AND id = $2",
                               account_id, template_id)


async def get_by_uuid(conn: Conn, account_id: int, template_uuid: uuid.UUID) -> Record | None:
    return await conn.fetchrow("SELECT * FROM email_templates WHERE account_id = $1 AND uuid = $2",
                               account_id, template_uuid)


async def update(conn: Conn, account_id: int, template_id: int, values: Mapping[str, str | None]) -> Record | None:
    """Set the given fields (keys of FIELDS only; others are not touched) and `updated_at`."""
    names = [f for f in FIELDS if f in values]
    # Column names come from FIELDS, never from the caller; values are parameters.
    sets = "".join(f", {name} = ${i}" for i, name in enumerate(names, start=3))
    return await conn.fetchrow(
        f"UPDATE email_templates SET updated_at = now(){sets} WHERE account_id = $1 AND id = $2 RETURNING *",
        account_id, template_id, *(values[n] for n in names),
    )


async def delete(conn: Conn, account_id: int, template_id: int) -> Record | None:
    return await conn.fetchrow("DELETE FROM email_templates WHERE account_id = $1 AND id = $2 RETURNING *",
                               account_id, template_id)
