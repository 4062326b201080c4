"""The admin CLI end to end against the real database: people's tables and --json."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailtrap_smtp import cli, tokens
from mailtrap_smtp.store import messages


@pytest.fixture
def run(cli_run: Any) -> Any:
    return cli_run


def test_account_create_show_list(run: Any) -> None:
    code, out, err = run("account", "create", "acme", "--monthly-limit", "500", "--max-message-size", "2000000")
    assert code == 0, err
    assert out == "created account acme (monthly limit 500, max message size 2000000 bytes)\n"
    code, out, _ = run("account", "show", "acme", "--json")
    data = json.loads(out)
    assert (data["monthly_limit"], data["used_this_period"], data["remaining"]) == (500, 0, 500)
    assert data["max_message_size"] == 2000000
    code, out, _ = run("account", "show", "acme")
    assert "monthly_limit:" in out and "500" in out
    code, out, _ = run("account", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "MONTHLY_LIMIT", "USED_THIS_PERIOD", "MAX_MESSAGE_SIZE", "PERIOD_START"]
    assert lines[1].split()[:2] == ["acme", "500"]


def test_account_errors_are_one_line(run: Any) -> None:
    assert run("account", "create", "acme")[0] == 0
    code, _, err = run("account", "create", "acme")
    assert (code, err) == (1, "mailtrap-smtp: account 'acme' already exists\n")
    code, _, err = run("account", "show", "nobody")
    assert (code, err) == (1, "mailtrap-smtp: no account named 'nobody'\n")
    code, _, err = run("account", "create", "big", "--max-message-size", str(40 * 1024 * 1024))
    assert code == 1 and "limits.message_size_cap" in err and err.count("\n") == 1


def test_credential_lifecycle(run: Any, db_dsn: str) -> None:
    run("account", "create", "acme")
    code, out, err = run("credential", "create", "acme", "--stream", "bulk", "--json")
    assert code == 0, err
    data = json.loads(out)
    token, token_id = data["token"], data["token_id"]
    assert tokens.public_id_of(token) == token_id and data["streams"] == ["bulk"]

    async def stored() -> Any:
        conn = await asyncpg.connect(db_dsn)
        try:
            return await conn.fetchrow("SELECT * FROM credentials WHERE public_id = $1", token_id)
        finally:
            await conn.close()

    row = asyncio.run(stored())
    assert tokens.matches(token, bytes(row["digest"]))
    assert token.encode() not in bytes(row["digest"]) and row["revoked_at"] is None
    code, out, _ = run("credential", "list", "acme", "--json")
    assert [c["token_id"] for c in json.loads(out)] == [token_id]
    assert token not in out
    code, out, _ = run("credential", "revoke", token_id)
    assert code == 0 and out.startswith(f"revoked {token_id} at ")
    assert asyncio.run(stored())["revoked_at"] is not None
    code, _, err = run("credential", "revoke", "ffffffff")
    assert (code, err) == (1, "mailtrap-smtp: no credential with token id 'ffffffff'\n")


def test_credential_create_prints_token_once_for_people(run: Any) -> None:
    run("account", "create", "acme")
    code, out, _ = run("credential", "create", "acme", "--stream", "transactional")
    assert code == 0
    token_line = next(line for line in out.splitlines() if line.startswith("token:"))
    assert tokens.public_id_of(token_line.split()[1]) is not None
    assert "shown once" in out


def test_domain_add_skip_dns_is_marked_everywhere(run: Any) -> None:
    run("account", "create", "acme")
    code, out, err = run("domain", "add", "acme", "Mail.Example.COM", "--skip-dns-verification")
    assert code == 0, err
    assert "added domain mail.example.com to account acme: verified (DNS NOT VERIFIED" in out
    code, out, _ = run("domain", "list")
    assert "mail.example.com" in out and "DNS NOT VERIFIED" in out
    code, out, _ = run("domain", "list", "acme", "--json")
    (d,) = json.loads(out)
    assert (d["name"], d["state"], d["dns_skipped"]) == ("mail.example.com", "verified", True)


def test_domain_add_prints_records_to_publish(run: Any) -> None:
    run("account", "create", "acme")
    code, out, err = run("domain", "add", "acme", "example.org", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["domain"]["state"] == "unverified"
    by_key = {r["key"]: r for r in data["records"]}
    assert by_key["ownership"]["type"] == "CNAME" and by_key["ownership"]["value"] == "rp.mx.service.test"
    assert by_key["ownership"]["name"].endswith(".example.org")
    assert by_key["dkim:mt1"]["name"] == "mt1._domainkey.example.org"
    assert by_key["dkim:mt1"]["value"].startswith("v=DKIM1; k=rsa; p=")
    assert by_key["dmarc"]["name"] == "_dmarc.example.org"
    code, _, err = run("domain", "add", "acme", "www.example.net")
    assert code == 1 and "www.example.net" in err and "--force" in err and err.count("\n") == 1
    code, _, err = run("domain", "add", "acme", "not a domain")
    assert code == 1 and err.startswith("mailtrap-smtp: ")
    code, _, err = run("domain", "add", "nobody", "example.net")
    assert (code, err) == (1, "mailtrap-smtp: no account named 'nobody'\n")


def test_queue_list_and_show(run: Any, db_dsn: str) -> None:
    run("account", "create", "acme")
    mid = uuid.uuid4()
    raw = b"From: a@example.com\r\nTo: r@dest.test\r\nSubject: Hello\r\n\r\nbody\r\n"

    async def accept() -> None:
        conn = await asyncpg.connect(db_dsn)
        try:
            acct = await conn.fetchval("SELECT id FROM accounts WHERE name = 'acme'")
            async with conn.transaction():
                await messages.accept(conn, messages.NewMessage(
                    id=mid, account_id=acct, credential_id=None, domain_id=None, stream="transactional",
                    mail_from="a@example.com", header_from="a@example.com", subject="Hello",
                    message_id_header=None, category=None, custom_variables=None, client_ip="192.0.2.1",
                    raw=raw, recipients=["r@dest.test", "s@other.test"]), dt.date(2026, 11, 1))
        finally:
            await conn.close()

    asyncio.run(accept())
    code, out, _ = run("queue", "list", "--json")
    rows = json.loads(out)
    assert {(r["rcpt"], r["state"]) for r in rows} == {("r@dest.test", "queued"), ("s@other.test", "queued")}
    code, out, _ = run("queue", "list", "--domain", "OTHER.test", "--json")
    assert [r["rcpt"] for r in json.loads(out)] == ["s@other.test"]
    code, out, _ = run("queue", "show", str(mid), "--json")
    data = json.loads(out)
    assert data["subject"] == "Hello" and data["client_ip"] == "192.0.2.1"
    assert {"name": "Subject", "value": "Hello"} in data["headers"]
    assert [e["type"] for e in data["events"]] == ["reception"]
    code, out, _ = run("queue", "show", str(mid))
    assert "recipients:" in out and "reception" in out
    code, _, err = run("queue", "show", "not-a-uuid")
    assert (code, err) == (1, "mailtrap-smtp: not a message id: 'not-a-uuid'\n")
    code, _, err = run("queue", "show", str(uuid.UUID(int=1)))
    assert code == 1 and "no message" in err


def test_migrate_reports_nothing_pending(run: Any) -> None:
    code, out, _ = run("migrate")
    assert code == 0 and out.startswith("applied 0 migration(s); schema has ")


def test_domain_add_with_key_hosting_zone_tells_operator_what_to_publish(
        make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_config(domains={"dkim_cname_zone": "keys.service.test"})
    path = str(tmp_path / "config.toml")
    assert cli.main(["-c", path, "account", "create", "acme"]) == 0
    capsys.readouterr()
    assert cli.main(["-c", path, "domain", "add", "acme", "example.org", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    dkim = next(r for r in data["records"] if r["key"] == "dkim:mt1")
    assert (dkim["type"], dkim["value"]) == ("CNAME", "mt1.example.org.keys.service.test")
    # Both selectors' keys (the signing key and the next key), each at its CNAME's target.
    op, op_next = data["operator_records"]
    assert (op["name"], op["type"]) == ("mt1.example.org.keys.service.test", "TXT")
    assert op["value"] == dkim["target_value"] and op["value"].startswith("v=DKIM1; k=rsa; p=")
    nxt = next(r for r in data["records"] if r["key"] == "dkim:mt2")
    assert (op_next["name"], op_next["value"]) == (nxt["value"], nxt["target_value"])


def test_dev_setup_creates_the_demo_once_and_its_token_works(
        make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], db_dsn: str) -> None:
    cert, key = tmp_path / "dev" / "cert.pem", tmp_path / "dev" / "key.pem"
    make_config(tls={"cert_file": str(cert), "key_file": str(key)})
    path = str(tmp_path / "config.toml")
    assert cli.main(["-c", path, "dev-setup"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"created a development TLS certificate: {cert}\n")
    assert cert.exists() and (key.stat().st_mode & 0o777) == 0o600
    token = out.split("only its digest is stored):\n\n    ", 1)[1].split("\n", 1)[0]
    public_id = tokens.public_id_of(token)
    assert public_id is not None

    async def demo() -> tuple[Any, Any]:
        conn = await asyncpg.connect(db_dsn)
        try:
            cred = await conn.fetchrow("SELECT c.streams, c.level, c.digest, a.name FROM credentials c JOIN accounts a "
                                       "ON a.id = c.account_id WHERE c.public_id = $1", public_id)
            domain = await conn.fetchrow("SELECT name, dns_skipped FROM sending_domains")
            return cred, domain
        finally:
            await conn.close()

    cred, domain = asyncio.run(demo())
    assert (cred["name"], cred["streams"], cred["level"], tokens.matches(token, cred["digest"])) == (
        "demo", ["transactional"], "send", True)
    assert (domain["name"], domain["dns_skipped"]) == ("example.com", True)
    assert cli.main(["-c", path, "dev-setup"]) == 0
    assert capsys.readouterr().out == (
        "demo account exists (its token was printed on first run; make another with "
        "`mailtrap-smtp credential create demo --stream transactional`)\n")


def test_migrate_on_an_empty_database_lists_what_it_applied(
        make_config: Any, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mailtrap_smtp.store import db as store_db
    from tests.conftest import _with_database

    name = f"m_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        make_config(database={"dsn": _with_database(pg_server, name)})
        assert cli.main(["-c", str(tmp_path / "config.toml"), "migrate"]) == 0
        names = [n for _, n, _ in store_db.migration_files()]
        assert capsys.readouterr().out == "".join(
            [f"applied {len(names)} migration(s); schema has {len(names)}\n"] + [f"  {n}\n" for n in names])
    finally:
        asyncio.run(admin(f"DROP DATABASE {name} WITH (FORCE)"))


@pytest.mark.parametrize(("flags", "error"), [
    (["--monthly-limit", "-1"], "--monthly-limit must be 0 or more"),
    (["--max-message-size", "0"], "--max-message-size must be between 1 and limits.message_size_cap (31457280)"),
    (["--max-message-size", str(31457280 + 1)],
     "--max-message-size must be between 1 and limits.message_size_cap (31457280)"),
    (["--billing-anchor-day", "0"], "--billing-anchor-day must be between 1 and 31"),
    (["--billing-anchor-day", "32"], "--billing-anchor-day must be between 1 and 31"),
])
def test_account_create_refuses_a_plan_out_of_range(run: Any, flags: list[str], error: str) -> None:
    code, out, err = run("account", "create", "acme", *flags)
    assert (code, out, err) == (1, "", f"mailtrap-smtp: {error}\n")
    assert run("account", "list", "--json")[1] == "[]\n"


def test_account_list_unsubscribe(run: Any) -> None:
    assert run("account", "create", "acme")[0] == 0
    assert json.loads(run("account", "show", "acme", "--json")[1])["list_unsubscribe"] is False
    code, out, err = run("account", "list-unsubscribe", "acme", "on")
    assert (code, out) == (0, "account acme: one-click List-Unsubscribe on bulk messages on\n"), err
    assert json.loads(run("account", "show", "acme", "--json")[1])["list_unsubscribe"] is True
    code, out, _ = run("account", "list-unsubscribe", "acme", "off", "--json")
    assert code == 0 and json.loads(out)["list_unsubscribe"] is False
    code, _, err = run("account", "list-unsubscribe", "nobody", "on")
    assert (code, err) == (1, "mailtrap-smtp: no account named 'nobody'\n")
