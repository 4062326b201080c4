"""The checks the routes of suppressions, email logs and stats share: the account in a legacy
path, and which of the account's domains and streams a token may read (`permissions.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request

from .. import permissions
from ..core.suppressions import Invalid, NotFound
from . import errors
from .principal import Caller, context, rate_headers


@dataclass(frozen=True)
class Budget:
    """A per-account budget of MAILTRAP_COMPAT §8 (requests per 60 s), besides the per-token one."""

    slot: int   # which budget: part of the key in the shared memory
    limit: int


SUPPRESSIONS = Budget(1, 10)
STATS = Budget(2, 10)
EMAIL_LOGS_LIST = Budget(3, 60)
EMAIL_LOG_GET = Budget(4, 1000)
_WINDOW_SECONDS = 60.0


def within_budget(request: Request, caller: Caller, budget: Budget) -> None:
    """Count the request against the account's budget (429 `{"errors":"Rate limit exceeded"}` past it).

    Kept in the per-token limiter's shared memory under negative keys, so the processes of a node
    share the count as they share the per-token one.
    """
    ctx = context(request)
    limiter = ctx.budgets.get(budget.slot)
    if limiter is None:
        limiter = ctx.budgets[budget.slot] = ctx.limiter.sibling(budget.limit, _WINDOW_SECONDS)
    rate = limiter.hit(-(caller.principal.account_id * 8 + budget.slot))
    if not rate.allowed:
        raise errors.ApiError(errors.MANAGE_RATE_LIMITED,
                              {**rate_headers(rate), "Retry-After": str(rate.reset_seconds)})


def own_account(caller: Caller, account_id: int) -> None:
    """A legacy path `/api/accounts/{account_id}/…` names the token's own account, or it is refused."""
    if account_id != caller.principal.account_id:
        raise errors.ApiError(errors.MANAGE_FORBIDDEN)


def require(allowed: bool) -> None:
    if not allowed:
        raise errors.ApiError(errors.MANAGE_FORBIDDEN)


def account_access(caller: Caller, account_id: int, *, change: bool = False) -> None:
    """The token's own account, at the level the route needs: reading (a read or admin token) or
    changing (an admin token); 403 otherwise."""
    own_account(caller, account_id)
    who = caller.principal
    require(permissions.may_manage(who) if change else permissions.may_read(who))


def readable_streams(caller: Caller) -> list[str] | None:
    """The streams the token may read, or None for both."""
    streams = caller.principal.streams
    return None if set(permissions.STREAMS) <= streams else sorted(streams)


def readable_domains(caller: Caller) -> list[int] | None:
    """The domains the token may read, or None for every domain of the account."""
    ids = caller.principal.domain_ids
    return None if ids is None else sorted(ids)


def query(request: Request) -> Mapping[str, list[str]]:
    """The query string as name → values, in order."""
    out: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        out.setdefault(name, []).append(value)
    return out


def refused(e: Invalid | NotFound) -> errors.ApiError:
    """A use case's refusal in the management shapes: 422 per field, or 404."""
    if isinstance(e, NotFound):
        return errors.ApiError(errors.MANAGE_NOT_FOUND)
    return errors.ApiError(errors.manage_invalid(e.errors))
