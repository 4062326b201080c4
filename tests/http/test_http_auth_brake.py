"""The API's brake on failed token look-ups (SMTP AUTH's, smtp/peers.py): over
`limits.auth_failures_per_ip` a client gets 429 with Retry-After in the path's error shape, before
any look-up; nothing is stored or charged; a correct token from another IP keeps working."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.http_util import ApiEnv, minimal

LIMIT = 3
WINDOW = 600
SEND = ("POST", "/api/send", {"success": False, "errors": ["Too many authentication failures"]})
MANAGE = ("GET", "/api/accounts", {"errors": "Too many authentication failures"})


async def _env(api_factory: Any) -> ApiEnv:
    env: ApiEnv = await api_factory(limits={"auth_failures_per_ip": LIMIT, "auth_failure_window_seconds": WINDOW})
    return env


def _from(env: ApiEnv, ip: str) -> httpx.AsyncClient:
    """A client whose connections come from `ip` (any 127/8 address is this host's loopback)."""
    return env.client(transport=httpx.AsyncHTTPTransport(local_address=ip, verify=env.ssl_context))


def _wrong_secret(env: ApiEnv) -> str:
    """The account's token id with a wrong secret: a guess at that token (Outcome.CREDENTIAL_INVALID)."""
    prefix, public_id, _ = env.token.split("_", 2)
    return f"{prefix}_{public_id}_{'b' * 32}"


async def _call(c: httpx.AsyncClient, env: ApiEnv, method: str, path: str, token: str) -> httpx.Response:
    return await c.request(method, path, headers=env.auth(token), json=minimal() if method == "POST" else None)


@pytest.mark.parametrize(("method", "path", "blocked"), [SEND, MANAGE], ids=["send", "manage"])
@pytest.mark.parametrize("guess", ["unknown_id", "malformed", "wrong_secret"])
async def test_over_the_limit_429_with_retry_after_and_nothing_stored(api_factory: Any, method: str, path: str,
                                                                      blocked: Any, guess: str) -> None:
    env = await _env(api_factory)
    bad = {"unknown_id": "mts_00000000_" + "a" * 32, "malformed": "not-a-token",
           "wrong_secret": _wrong_secret(env)}[guess]
    async with _from(env, "127.0.0.1") as c:
        first = [(await _call(c, env, method, path, bad)).status_code for _ in range(LIMIT)]
        r = await _call(c, env, method, path, bad)
        again = await _call(c, env, method, path, bad)  # refused ones are not counted, still refused
    assert first == [401] * LIMIT
    assert (r.status_code, r.json()) == (429, blocked)
    assert 1 <= int(r.headers["retry-after"]) <= WINDOW
    assert (again.status_code, again.json()) == (429, blocked)
    await env.assert_nothing_stored()


async def test_a_guessed_token_is_braked_on_this_ip_only(api_factory: Any) -> None:
    env = await _env(api_factory)
    async with _from(env, "127.0.0.1") as c:
        assert (await _call(c, env, *MANAGE[:2], env.token)).status_code == 200  # now in the token cache
        for _ in range(LIMIT):
            assert (await _call(c, env, *MANAGE[:2], _wrong_secret(env))).status_code == 401
        # Blocked before the look-up and the cache: a guesser here learns nothing, not even a hit.
        r = await _call(c, env, *SEND[:2], env.token)
        assert (r.status_code, r.json()) == (429, SEND[2])
    await env.assert_nothing_stored()
    async with _from(env, "127.0.0.2") as c:
        ok = await _call(c, env, *SEND[:2], env.token)
    assert ok.status_code == 200 and ok.json()["success"] is True
    assert (await env.counts())["messages"] == 1


async def test_guessing_token_ids_does_not_block_a_known_token_on_the_same_ip(api_factory: Any) -> None:
    # Unknown ids count under the IP alone (peers.brake_key), a real token under IP/its id: an app
    # behind the same NAT as a guesser keeps working, as over SMTP.
    env = await _env(api_factory)
    async with _from(env, "127.0.0.1") as c:
        for i in range(LIMIT + 1):
            await _call(c, env, *MANAGE[:2], f"mts_0000000{i}_" + "a" * 32)
        assert (await _call(c, env, *MANAGE[:2], "mts_0000000f_" + "a" * 32)).status_code == 429
        assert (await _call(c, env, *MANAGE[:2], env.token)).status_code == 200
