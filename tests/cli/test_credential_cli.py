"""`credential create / list` with streams, domains and levels, against the real database."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp import tokens
from tests.cli_util import CliRun


@pytest.fixture
def run(cli_run: CliRun) -> CliRun:
    cli_run("account", "create", "acme")
    cli_run("account", "create", "other")
    for account, domain in [("acme", "a.example"), ("acme", "b.example"), ("other", "c.example")]:
        assert cli_run("domain", "add", account, domain, "--skip-dns-verification")[0] == 0
    return cli_run


async def _stored(dsn: str, token_id: str) -> tuple[Any, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT streams, level, all_domains FROM credentials WHERE public_id = $1",
                                  token_id)
        names = await conn.fetch(
            """SELECT d.name FROM credential_domains cd JOIN credentials c ON c.id = cd.credential_id
                 JOIN sending_domains d ON d.id = cd.domain_id WHERE c.public_id = $1 ORDER BY d.name""",
            token_id)
        return row, [n["name"] for n in names]
    finally:
        await conn.close()


async def _fetchval(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.mark.parametrize(("args", "streams", "level", "domains"), [
    (["--stream", "transactional"], ["transactional"], "send", None),
    (["--stream", "bulk", "--level", "read"], ["bulk"], "read", None),
    (["--stream", "bulk", "--stream", "transactional"], ["transactional", "bulk"], "send", None),
    (["--stream", "bulk", "--stream", "bulk"], ["bulk"], "send", None),
    (["--stream", "transactional", "--domain", "B.Example", "--domain", "a.example", "--level", "admin"],
     ["transactional"], "admin", ["a.example", "b.example"]),
    (["--stream", "transactional", "--domain", "a.example", "--domain", "a.example"],
     ["transactional"], "send", ["a.example"]),
])
def test_create_with_grant(run: Any, db_dsn: str, args: list[str], streams: list[str], level: str,
                                 domains: list[str] | None) -> None:
    code, out, err = run("credential", "create", "acme", *args, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert tokens.public_id_of(data["token"]) == data["token_id"]
    assert {k: data[k] for k in ("account", "streams", "level", "domains")} == {
        "account": "acme", "streams": streams, "level": level, "domains": domains}
    row, names = asyncio.run(_stored(db_dsn, data["token_id"]))
    assert (list(row["streams"]), row["level"], row["all_domains"]) == (streams, level, domains is None)
    assert names == (domains or [])


@pytest.mark.parametrize(("args", "error"), [
    (["--domain", "c.example"], "mailtrap-smtp: 'c.example' is not a sending domain of this account\n"),
    (["--domain", "nowhere.example"], "mailtrap-smtp: 'nowhere.example' is not a sending domain of this account\n"),
    (["--domain", "not a domain"], None),
])
def test_create_refuses_foreign_or_bad_domains(run: Any, db_dsn: str, args: list[str],
                                               error: str | None) -> None:
    code, out, err = run("credential", "create", "acme", "--stream", "transactional", *args)
    assert (code, out) == (1, "")
    if error is not None:
        assert err == error
    else:
        assert err.startswith("mailtrap-smtp: ") and err.count("\n") == 1
    assert asyncio.run(_fetchval(db_dsn, "SELECT count(*) FROM credentials")) == 0


@pytest.mark.parametrize("args", [
    [],                                              # --stream is required
    ["--stream", "marketing"],
    ["--stream", "transactional", "--level", "owner"],
])
def test_create_usage_errors(run: Any, args: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        run("credential", "create", "acme", *args)
    assert e.value.code == 2


def test_list_shows_grants(run: Any) -> None:
    run("credential", "create", "acme", "--stream", "transactional", "--name", "app")
    run("credential", "create", "acme", "--stream", "bulk", "--stream", "transactional", "--level", "read",
        "--domain", "b.example", "--domain", "a.example")
    code, out, _ = run("credential", "list", "acme", "--json")
    assert code == 0
    listed = [{k: c[k] for k in ("account", "streams", "level", "domains", "name")} for c in json.loads(out)]
    assert listed == [
        {"account": "acme", "streams": ["transactional"], "level": "send", "domains": None, "name": "app"},
        {"account": "acme", "streams": ["transactional", "bulk"], "level": "read",
         "domains": ["a.example", "b.example"], "name": None},
    ]
    code, out, _ = run("credential", "list", "acme")
    lines = out.splitlines()
    assert lines[0].split() == ["TOKEN_ID", "ACCOUNT", "STREAMS", "LEVEL", "DOMAINS", "NAME", "CREATED_AT",
                                "LAST_USED_AT", "REVOKED_AT"]
    assert lines[1].split()[1:6] == ["acme", "transactional", "send", "all", "app"]
    assert lines[2].split()[1:5] == ["acme", "transactional,bulk", "read", "a.example,b.example"]


def test_list_shows_a_scoped_token_left_without_domains(run: Any, db_dsn: str) -> None:
    run("credential", "create", "acme", "--stream", "transactional", "--domain", "a.example")
    asyncio.run(_fetchval(db_dsn, "DELETE FROM sending_domains WHERE name = 'a.example' RETURNING id"))
    code, out, _ = run("credential", "list", "acme", "--json")
    assert code == 0 and json.loads(out)[0]["domains"] == []
    code, out, _ = run("credential", "list", "acme")
    assert code == 0 and "(none left)" in out.splitlines()[1]


def test_create_text_output_names_the_grant(run: Any) -> None:
    code, out, _ = run("credential", "create", "acme", "--stream", "bulk", "--domain", "a.example")
    assert code == 0
    first = out.splitlines()[0]
    assert first.endswith("account: acme   streams: bulk   level: send   domains: a.example")
