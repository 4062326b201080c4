"""Credential use cases: issue a stream token (the secret exists only in the answer), revoke, list."""

from __future__ import annotations

from dataclasses import dataclass

from .. import tokens
from ..store import credentials as credentials_store
from ..store.types import Conn, Record
from . import accounts
from .refusal import Refused


@dataclass(frozen=True)
class Issued:
    credential: Record
    token: str  # shown once: only its digest is stored


async def issue(conn: Conn, account_name: str, stream: str, *, name: str | None = None) -> Issued:
    account = await accounts.get(conn, account_name)
    new = tokens.generate()
    row = await credentials_store.create(conn, account["id"], public_id=new.public_id, digest=new.digest,
                                         stream=stream, name=name)
    return Issued(row, new.token)


async def revoke(conn: Conn, token_id_or_token: str) -> Record:
    """Revoke by token id, or by the token itself (its id is read from it)."""
    token_id = tokens.public_id_of(token_id_or_token) or token_id_or_token
    row = await credentials_store.revoke(conn, token_id)
    if row is None:
        raise Refused(f"no credential with token id {token_id!r}")
    return row


async def list_all(conn: Conn, account_name: str | None = None) -> list[Record]:
    account_id = (await accounts.get(conn, account_name))["id"] if account_name else None
    return await credentials_store.list_all(conn, account_id)
