"""Credential use cases: issue a scoped token (the secret exists only in the answer), list tokens with
their grants, revoke one.

Shared by the CLI (accounts by name) and the management API (the principal's account id); the rules
of what a grant allows are in `permissions`. Refusals are `Refused`, one line for people.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from .. import tokens
from ..domains import DomainNameError, normalize_domain
from ..permissions import Grant, GrantError, make_grant
from ..store import credentials as credentials_store
from ..store import domains as domains_store
from ..store.types import Conn
from . import accounts
from .refusal import Kind, Refused


@dataclass(frozen=True)
class Issued:
    token: str  # shown to its owner once: only its digest is stored
    token_id: str
    credential_id: int
    grant: Grant
    domains: list[str] | None  # names in the scope, None for every domain
    name: str | None


@dataclass(frozen=True)
class CredentialInfo:
    token_id: str
    account: str
    streams: list[str]
    level: str
    domains: list[str] | None  # None: every domain of the account; [] when all its domains were deleted
    name: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


async def _scope(conn: Conn, account_id: int, domains: Sequence[str] | None,
                 domain_ids: Sequence[int] | None) -> tuple[list[int], list[str]] | None:
    """(ids, names) of the requested domains, all of them the account's; None for every domain."""
    if domains is not None and domain_ids is not None:
        raise Refused("give the domains by name or by id, not both")
    if domains is None and domain_ids is None:
        return None
    wanted: list[str | int]
    if domains is not None:
        try:
            wanted = [normalize_domain(d, force=True) for d in domains]
        except DomainNameError as e:
            raise Refused(str(e)) from None
    else:
        wanted = list(domain_ids or ())
    if not wanted:
        raise Refused("a token limited to domains needs at least one domain")
    rows = {k: r for r in await domains_store.list_all(conn, account_id) for k in (r["name"], r["id"])}
    missing = [w for w in wanted if w not in rows]
    if missing:
        raise Refused(f"{missing[0]!r} is not a sending domain of this account")
    found = {int(rows[w]["id"]): str(rows[w]["name"]) for w in wanted}
    return list(found), sorted(found.values())


async def issue_for(conn: Conn, account_id: int, *, streams: Sequence[str], level: str = "send",
                    domains: Sequence[str] | None = None, domain_ids: Sequence[int] | None = None,
                    name: str | None = None) -> Issued:
    """A new token of the account with this grant. `domains` (names) or `domain_ids` limit it to
    those sending domains of the account; neither: every domain, now and later."""
    try:
        grant = make_grant(streams, level)
    except GrantError as e:
        raise Refused(str(e)) from None
    scope = await _scope(conn, account_id, domains, domain_ids)
    grant = Grant(grant.streams, None if scope is None else frozenset(scope[0]), grant.level)
    new = tokens.generate()
    row = await credentials_store.create(
        conn, account_id, public_id=new.public_id, digest=new.digest, streams=grant.stream_list,
        level=grant.level.value, domain_ids=None if scope is None else scope[0], name=name,
    )
    return Issued(token=new.token, token_id=new.public_id, credential_id=int(row["id"]), grant=grant,
                  domains=None if scope is None else scope[1], name=name)


async def issue(conn: Conn, account_name: str, streams: Sequence[str], *, level: str = "send",
                domains: Sequence[str] | None = None, name: str | None = None) -> Issued:
    """`issue_for` the account named `account_name`."""
    account = await accounts.get(conn, account_name)
    return await issue_for(conn, int(account["id"]), streams=streams, level=level, domains=domains, name=name)


async def list_for(conn: Conn, account_id: int | None = None) -> list[CredentialInfo]:
    """Every credential (of one account, or all), revoked ones included, oldest first per account."""
    return [
        CredentialInfo(
            token_id=r["public_id"], account=r["account"], streams=list(r["streams"]), level=r["level"],
            domains=None if r["domains"] is None else list(r["domains"]), name=r["name"],
            created_at=r["created_at"], last_used_at=r["last_used_at"], revoked_at=r["revoked_at"],
        )
        for r in await credentials_store.list_all(conn, account_id)
    ]


async def list_all(conn: Conn, account_name: str | None = None) -> list[CredentialInfo]:
    """`list_for` the account named `account_name`, or every account."""
    account_id = int((await accounts.get(conn, account_name))["id"]) if account_name else None
    return await list_for(conn, account_id)


async def revoke(conn: Conn, token_id_or_token: str, account_id: int | None = None) -> tuple[str, dt.datetime]:
    """Revoke by token id, or by the token itself (its id is read from it); only a token of
    `account_id` when given. (token id, revocation time: the first one if it was already revoked)."""
    token_id = tokens.public_id_of(token_id_or_token) or token_id_or_token
    row = await credentials_store.revoke(conn, token_id, account_id)
    if row is None:
        raise Refused(f"no credential with token id {token_id!r}", kind=Kind.NOT_FOUND)
    return token_id, row["revoked_at"]
