"""What a token may do: the single place the rules on streams, domains and levels live.

A token (credential) carries a `Grant`:

* `streams`: `transactional`, `bulk`, or both: the streams it may send on;
* `domain_ids`: None for every sending domain of the account (those added later too), else the ids
  of the sending domains it may send as (and read or manage);
* `level`: `send` (submit mail), `read` (email logs, stats), or `admin` (manage domains, templates,
  tokens, webhooks, suppressions; an admin token may also send and read).

Account-wide resources (templates, tokens, new domains, the account itself) are managed only by an
admin token with every domain: an admin of one domain is not an admin of the account, as with
Mailtrap's per-resource permissions. A token can hand out (`may_grant`) only what it holds.

Pure functions of a grant, no I/O: the SMTP session, the HTTP routes and the use cases ask here and
turn the answer into their own reply.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Level(enum.StrEnum):
    SEND = "send"
    READ = "read"
    ADMIN = "admin"


STREAMS = ("transactional", "bulk")  # in this order in storage (the check of migration 0004)
DEFAULT_STREAM = "transactional"


class Scoped(Protocol):
    """Anything holding a grant's three facts (a `Grant`, an `auth.Principal`)."""

    @property
    def streams(self) -> frozenset[str]: ...

    @property
    def domain_ids(self) -> frozenset[int] | None: ...

    @property
    def level(self) -> Level: ...


class GrantError(ValueError):
    """A grant that cannot exist; the message is one line meant for the operator or API client."""


@dataclass(frozen=True)
class Grant:
    streams: frozenset[str]
    domain_ids: frozenset[int] | None
    level: Level

    @property
    def stream_list(self) -> list[str]:
        """The streams in their canonical order (how they are stored and shown)."""
        return [s for s in STREAMS if s in self.streams]


def make_grant(streams: Iterable[str], level: str = Level.SEND,
               domain_ids: Iterable[int] | None = None) -> Grant:
    """A validated grant; duplicates are folded. Raises `GrantError`."""
    wanted = frozenset(streams)
    if not wanted:
        raise GrantError("a token needs at least one stream (transactional, bulk)")
    unknown = sorted(wanted.difference(STREAMS))
    if unknown:
        raise GrantError(f"unknown stream {unknown[0]!r}: expected transactional or bulk")
    try:
        lvl = Level(level)
    except ValueError:
        raise GrantError(f"unknown level {level!r}: expected send, read or admin") from None
    return Grant(wanted, None if domain_ids is None else frozenset(domain_ids), lvl)


def stream_for(who: Scoped, served: str | None) -> str | None:
    """The stream a session of this token sends on at a front door serving `served`.

    `served` None (a door that serves whichever stream the token has): the token's own stream
    when it has exactly one, else transactional. None when the token has no right to `served`.
    """
    if served is None:
        return next(iter(who.streams)) if len(who.streams) == 1 else DEFAULT_STREAM
    return served if served in who.streams else None


def may_send(who: Scoped, stream: str) -> bool:
    return who.level in (Level.SEND, Level.ADMIN) and stream in who.streams


def in_scope(who: Scoped, domain_id: int) -> bool:
    """Whether the domain is one of the token's (every domain of the account when unscoped).

    Callers pass domains of the token's own account only; the account check is theirs.
    """
    return who.domain_ids is None or domain_id in who.domain_ids


def may_send_from(who: Scoped, stream: str, domain_id: int) -> bool:
    return may_send(who, stream) and in_scope(who, domain_id)


def may_read(who: Scoped, *, stream: str | None = None, domain_id: int | None = None) -> bool:
    """Logs and stats: of the whole account when both are None, else of that stream / domain."""
    if who.level not in (Level.READ, Level.ADMIN):
        return False
    if stream is not None and stream not in who.streams:
        return False
    return domain_id is None or in_scope(who, domain_id)


def may_manage(who: Scoped, domain_id: int | None = None) -> bool:
    """Management of one domain's resources, or with `domain_id` None of account-wide ones."""
    if who.level is not Level.ADMIN:
        return False
    return who.domain_ids is None if domain_id is None else in_scope(who, domain_id)


def may_grant(who: Scoped, new: Scoped) -> bool:
    """Whether `who` may create a token holding `new`: never more streams than its own."""
    return may_manage(who) and new.streams <= who.streams
