"""Credential use cases: issue a scoped token, list tokens with their grants, revoke one.

Shared by the CLI and the management API; the rules of what a grant allows are in `permissions`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import tokens
from .domains import DomainNameError, normalize_domain
from .permissions import Grant, GrantError, make_grant
from .store import credentials as credentials_store
from .store import domains as domains_store


@dataclass(frozen=True)
class Issued:
    token: str  # shown to its owner once, never stored
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
    domains: list[str] | None  # None: every domain of the account
    name: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


async def _scope(pool: Any, account_id: int, domains: Sequence[str] | None,
                 domain_ids: Sequence[int] | None) -> tuple[list[int], list[str]] | None:
    """(ids, names) of the requested domains, all of them the account's; None for every domain."""
    if domains is not None and domain_ids is not None:
        raise GrantError("give the domains by name or by id, not both")
    if domains is None and domain_ids is None:
        return None
    if domains is not None:
        try:
            wanted: Sequence[str | int] = [normalize_domain(d, force=True) for d in domains]
        except DomainNameError as e:
            raise GrantError(str(e)) from None
    else:
        assert domain_ids is not None
        wanted = list(domain_ids)
    if not wanted:
        raise GrantError("a token limited to domains needs at least one domain")
    rows = {k: r for r in await domains_store.list_all(pool, account_id) for k in (r["name"], r["id"])}
    missing = [w for w in wanted if w not in rows]
    if missing:
        raise GrantError(f"{missing[0]!r} is not a sending domain of this account")
    found = {int(rows[w]["id"]): str(rows[w]["name"]) for w in wanted}
    return list(found), sorted(found.values())


async def issue(pool: Any, account_id: int, *, streams: Sequence[str], level: str = "send",
                domains: Sequence[str] | None = None, domain_ids: Sequence[int] | None = None,
                name: str | None = None) -> Issued:
    """Create a token with this grant. `domains` (names) or `domain_ids` limit it to those sending
    domains of the account; neither: every domain, now and later. Raises `GrantError`."""
    grant = make_grant(streams, level)
    scope = await _scope(pool, account_id, domains, domain_ids)
    grant = Grant(grant.streams, None if scope is None else frozenset(scope[0]), grant.level)
    new = tokens.generate()
    row = await credentials_store.create(
        pool, account_id, public_id=new.public_id, digest=new.digest, streams=grant.stream_list,
        level=grant.level.value, domain_ids=None if scope is None else scope[0], name=name,
    )
    return Issued(token=new.token, token_id=new.public_id, credential_id=int(row["id"]), grant=grant,
                  domains=None if scope is None else scope[1], name=name)


async def list_credentials(pool: Any, account_id: int | None = None) -> list[CredentialInfo]:
    """Every credential (of one account, or all), revoked ones included, oldest first per account."""
    return [
        CredentialInfo(
            token_id=r["public_id"], account=r["account"], streams=list(r["streams"]), level=r["level"],
            domains=None if r["domains"] is None else list(r["domains"]), name=r["name"],
            created_at=r["created_at"], last_used_at=r["last_used_at"], revoked_at=r["revoked_at"],
        )
        for r in await credentials_store.list_all(pool, account_id)
    ]


async def revoke(pool: Any, token_id: str, account_id: int | None = None) -> dt.datetime | None:
    """Revoke by token id (or the whole token), only of `account_id` when given; the revocation
    time (the first one, if it was already revoked), None when there is no such token."""
    row = await credentials_store.revoke(pool, tokens.public_id_of(token_id) or token_id, account_id)
    return None if row is None else row["revoked_at"]
