"""Refusals carry their kind: each adapter answers them from one table by kind (never by reading the
text), every kind is in both tables, and the use cases give the kind their refusal is."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mailtrap_smtp import cli
from mailtrap_smtp.core import accounts, plans, queue_admin, sandbox
from mailtrap_smtp.core.refusal import Kind, Refused
from mailtrap_smtp.http import errors

PLAN = accounts.Plan(monthly_limit=10, max_message_size=1000, billing_anchor_day=1)


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_has_a_cli_exit_status(kind: Kind) -> None:
    assert cli.REFUSAL_EXIT[kind] == 1  # the status refused operations have always had


@pytest.mark.parametrize(("kind", "status", "body"), [
    (Kind.NOT_FOUND, 404, {"error": "Not Found"}),
    (Kind.CONFLICT, 422, {"errors": {"domain_name": ["has already been taken"]}}),
    (Kind.INVALID, 422, {"errors": {"domain_name": ["the reason"]}}),
    (Kind.FORBIDDEN, 403, {"errors": "Account access forbidden"}),
])
def test_every_kind_has_a_management_answer(kind: Kind, status: int, body: dict[str, Any]) -> None:
    error = errors.for_refusal(Refused("the reason", kind=kind), "domain_name")
    assert (error.status, error.body()) == (status, body)


def test_a_subclass_names_its_kind_and_a_plain_refusal_is_invalid() -> None:
    assert Refused("x").kind is Kind.INVALID
    assert sandbox.InboxNotFound(7).kind is Kind.NOT_FOUND
    assert str(sandbox.InboxNotFound(7)) == "no sandbox inbox 7 in this account"


async def _existing_account(pool: Any) -> str:
    name = f"acct-{uuid.uuid4().hex[:8]}"
    await accounts.create(pool, name, PLAN)
    return name


Case = Callable[[Any, str], Awaitable[object]]
CASES: dict[str, tuple[Case, Kind, str]] = {
    "account taken": (lambda pool, name: accounts.create(pool, name, PLAN), Kind.CONFLICT,
                      "account {name!r} already exists"),
    "no account": (lambda pool, name: accounts.get(pool, name + "-none"), Kind.NOT_FOUND,
                   "no account named {missing!r}"),
    "no plan": (lambda pool, name: _named_plan("gold"), Kind.NOT_FOUND,
                "no plan named 'gold' (plans: none configured)"),
    "plan account taken": (lambda pool, name: plans.create(pool, name, plans.NamedPlan("p", 10, 1000, ())),
                           Kind.CONFLICT, "account {name!r} already exists"),
    "no message": (lambda pool, name: queue_admin.show(pool, uuid.UUID(int=1)), Kind.NOT_FOUND,
                   "no message 00000000-0000-0000-0000-000000000001"),
    "bad message id": (lambda pool, name: _parse("nope"), Kind.INVALID, "not a message id: 'nope'"),
}


async def _named_plan(name: str) -> object:
    return plans.named({}, name)


async def _parse(value: str) -> object:
    return queue_admin.parse_message_id(value)


@pytest.mark.parametrize("case", list(CASES))
async def test_use_cases_refuse_with_their_kind_and_the_same_text(pool: Any, case: str) -> None:
    call, kind, text = CASES[case]
    name = await _existing_account(pool)
    with pytest.raises(Refused) as info:
        await call(pool, name)
    assert info.value.kind is kind
    assert str(info.value) == text.format(name=name, missing=name + "-none")
