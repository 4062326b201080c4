"""permissions: the rules of a token's grant, table by table (pure, no I/O)."""

from __future__ import annotations

import pytest

from mailtrap_smtp import permissions
from mailtrap_smtp.permissions import Grant, GrantError, Level, make_grant

T, B = "transactional", "bulk"
BOTH = frozenset({T, B})
A_ID, B_ID = 1, 2


def g(streams: frozenset[str] | set[str], level: Level = Level.SEND, domains: set[int] | None = None) -> Grant:
    return Grant(frozenset(streams), None if domains is None else frozenset(domains), level)


@pytest.mark.parametrize(("streams", "served", "expected"), [
    ({T}, None, T),
    ({B}, None, B),
    (BOTH, None, T),            # both streams and a door that serves either: transactional
    ({T}, T, T),
    ({T}, B, None),             # a transactional token at a bulk door
    ({B}, T, None),
    ({B}, B, B),
    (BOTH, B, B),
    (BOTH, T, T),
])
def test_stream_for(streams: set[str], served: str | None, expected: str | None) -> None:
    assert permissions.stream_for(g(streams), served) == expected


@pytest.mark.parametrize(("grant", "stream", "expected"), [
    (g({T}), T, True),
    (g({T}), B, False),
    (g(BOTH), B, True),
    (g({T}, Level.ADMIN), T, True),
    (g({T}, Level.ADMIN), B, False),
    (g(BOTH, Level.READ), T, False),  # read tokens never send
    (g(BOTH, Level.READ), B, False),
])
def test_may_send(grant: Grant, stream: str, expected: bool) -> None:
    assert permissions.may_send(grant, stream) is expected


@pytest.mark.parametrize(("grant", "stream", "domain_id", "expected"), [
    (g({T}), T, A_ID, True),                       # unscoped: every domain of the account
    (g({T}), T, 999, True),
    (g({T}, domains={A_ID}), T, A_ID, True),
    (g({T}, domains={A_ID}), T, B_ID, False),
    (g({T}, domains=set()), T, A_ID, False),       # a scoped token whose domains were all deleted
    (g({T}, domains={A_ID}), B, A_ID, False),      # in scope, wrong stream
    (g({T}, Level.READ, {A_ID}), T, A_ID, False),  # in scope, no sending right
    (g(BOTH, Level.ADMIN, {A_ID, B_ID}), B, B_ID, True),
])
def test_may_send_from(grant: Grant, stream: str, domain_id: int, expected: bool) -> None:
    assert permissions.may_send_from(grant, stream, domain_id) is expected


@pytest.mark.parametrize(("grant", "stream", "domain_id", "expected"), [
    (g({T}), None, None, False),                   # send tokens read nothing
    (g({T}, Level.READ), None, None, True),
    (g({T}, Level.ADMIN), None, None, True),
    (g({T}, Level.READ), B, None, False),          # another stream's logs
    (g({T}, Level.READ), T, None, True),
    (g({T}, Level.READ, {A_ID}), None, A_ID, True),
    (g({T}, Level.READ, {A_ID}), None, B_ID, False),
    (g({T}, Level.READ, {A_ID}), T, B_ID, False),
])
def test_may_read(grant: Grant, stream: str | None, domain_id: int | None, expected: bool) -> None:
    assert permissions.may_read(grant, stream=stream, domain_id=domain_id) is expected


@pytest.mark.parametrize(("grant", "domain_id", "expected"), [
    (g(BOTH, Level.SEND), None, False),
    (g(BOTH, Level.READ), None, False),
    (g(BOTH, Level.ADMIN), None, True),
    (g({T}, Level.ADMIN), None, True),             # streams do not limit management
    (g(BOTH, Level.ADMIN), A_ID, True),
    (g(BOTH, Level.ADMIN, {A_ID}), A_ID, True),
    (g(BOTH, Level.ADMIN, {A_ID}), B_ID, False),
    (g(BOTH, Level.ADMIN, {A_ID}), None, False),   # account-wide resources need every domain
    (g(BOTH, Level.READ, {A_ID}), A_ID, False),
])
def test_may_manage(grant: Grant, domain_id: int | None, expected: bool) -> None:
    assert permissions.may_manage(grant, domain_id) is expected


@pytest.mark.parametrize(("who", "new", "expected"), [
    (g(BOTH, Level.ADMIN), g(BOTH, Level.ADMIN), True),
    (g(BOTH, Level.ADMIN), g({B}, Level.READ, {A_ID}), True),
    (g({T}, Level.ADMIN), g({B}), False),              # more streams than its own
    (g({T}, Level.ADMIN), g({T}, Level.ADMIN), True),
    (g(BOTH, Level.ADMIN, {A_ID}), g({T}, domains={A_ID}), False),  # not an account admin
    (g(BOTH, Level.SEND), g({T}), False),
])
def test_may_grant(who: Grant, new: Grant, expected: bool) -> None:
    assert permissions.may_grant(who, new) is expected


@pytest.mark.parametrize(("streams", "level", "domains", "expected"), [
    ([T], "send", None, g({T})),
    ([B, T, B], "admin", None, g(BOTH, Level.ADMIN)),  # duplicates folded
    ([T], "read", [2, 1, 2], g({T}, Level.READ, {1, 2})),
    ([T], "send", [], g({T}, domains=set())),
])
def test_make_grant(streams: list[str], level: str, domains: list[int] | None, expected: Grant) -> None:
    assert make_grant(streams, level, domains) == expected


@pytest.mark.parametrize(("streams", "level", "message"), [
    ([], "send", "a token needs at least one stream (transactional, bulk)"),
    (["marketing"], "send", "unknown stream 'marketing': expected transactional or bulk"),
    ([T, "Bulk"], "send", "unknown stream 'Bulk': expected transactional or bulk"),
    ([T], "owner", "unknown level 'owner': expected send, read or admin"),
    ([T], "", "unknown level '': expected send, read or admin"),
])
def test_make_grant_refuses(streams: list[str], level: str, message: str) -> None:
    with pytest.raises(GrantError) as e:
        make_grant(streams, level)
    assert str(e.value) == message


def test_stream_list_is_canonical() -> None:
    assert g({B, T}).stream_list == [T, B]
    assert g({B}).stream_list == [B]
