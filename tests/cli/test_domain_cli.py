"""`mailtrap-smtp domain …` and `dkim rotate` against a real database and a real loopback DNS server.

The last test is the issue's "done when": `domain add` → publish the printed records → `domain verify`
all pass → a message from the domain is accepted over SMTP → a record is removed → after the grace
period (injected clock) the same message gets `550 5.7.1 Sending from domain is not allowed`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest

from mailtrap_smtp import cli, dkim, domainops
from mailtrap_smtp.config import Config
from tests.dnsserver import TestDNSServer
from tests.domain_util import dnsfunc_for, publish, resolver_for

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(make_config: Callable[..., Config], dns_server: TestDNSServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> Run:
    make_config(dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0})
    path = str(tmp_path / "config.toml")

    def go(*args: str) -> tuple[int, str, str]:
        code = cli.main(["-c", path, *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    go("account", "create", "acme")
    return go


# Every record of a new domain (default config), in the order printed.
ALL_KEYS = ("ownership", "dkim:mt1", "dkim:mt2", "spf", "dmarc", "link")


def table(out: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an emitted table (columns split on runs of 2+ spaces)."""
    import re

    lines = [line for line in out.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("KEY") or line.startswith("NAME")
                 or line.startswith("SELECTOR"))
    split = [re.split(r"\s{2,}", line.strip()) for line in lines[start:]]
    return split[0], split[1:]


def add_json(run: Run, name: str = "example.test") -> list[dict[str, Any]]:
    code, out, err = run("domain", "add", "acme", name, "--json")
    assert code == 0, err
    return list(json.loads(out)["records"])


def test_add_prints_a_table_of_full_records(run: Run) -> None:
    code, out, err = run("domain", "add", "acme", "example.test")
    assert code == 0, err
    assert "added domain example.test to account acme: unverified" in out
    assert "mailtrap-smtp domain verify example.test" in out
    header, rows = table(out)
    assert header == ["KEY", "TYPE", "NAME", "VALUE", "REQUIRED", "NOTE"]
    by_key = {r[0]: r for r in rows}
    assert list(by_key) == ["ownership", "dkim:mt1", "dkim:mt2", "spf", "dmarc", "link"]
    assert by_key["ownership"][1:3] == ["CNAME", by_key["ownership"][2]]
    assert by_key["ownership"][2].endswith(".example.test") and by_key["ownership"][3] == "rp.mx.service.test"
    # The full DKIM value is printed on one line (nothing elided), ready to paste.
    assert by_key["dkim:mt1"][1:3] == ["TXT", "mt1._domainkey.example.test"]
    assert by_key["dkim:mt1"][3].startswith("v=DKIM1; k=rsa; p=MII") and len(by_key["dkim:mt1"][3]) > 300
    # The next key is printed in full too, and says why it is not required.
    assert by_key["dkim:mt2"][1:3] == ["TXT", "mt2._domainkey.example.test"]
    assert by_key["dkim:mt2"][3].startswith("v=DKIM1; k=rsa; p=MII") and by_key["dkim:mt2"][3] != by_key["dkim:mt1"][3]
    assert by_key["dkim:mt2"][4:] == ["no", "next key: published ahead, signs after `dkim rotate`"]
    assert by_key["spf"] == ["spf", "TXT", "example.test", "v=spf1 include:_spf.mx.service.test ~all", "no",
                             "covered by the ownership record's own SPF"]
    assert by_key["dmarc"] == ["dmarc", "TXT", "_dmarc.example.test", "v=DMARC1; p=none", "yes"]
    assert by_key["link"] == ["link", "CNAME", "mt-link.example.test", "t.mx.service.test", "no",
                              "reserved for click tracking (not built yet): optional, changes nothing today"]


def test_add_refuses_bad_names_in_one_line(run: Run) -> None:
    code, _, err = run("domain", "add", "acme", "www.example.test")
    assert code == 1 and err.count("\n") == 1
    assert "mail is normally sent from the bare domain example.test (use --force" in err
    code, out, err = run("domain", "add", "acme", "www.example.test", "--force")
    assert code == 0, err
    code, _, err = run("domain", "add", "acme", "bad_name.test")
    assert code == 1 and "may only contain letters, digits and hyphens" in err
    code, out, err = run("domain", "add", "acme", "Bücher.example", "--json")
    assert code == 0, err
    assert json.loads(out)["domain"]["name"] == "xn--bcher-kva.example"


def test_verify_list_and_failing_records(run: Run, dns_server: TestDNSServer) -> None:
    records = add_json(run)
    code, out, err = run("domain", "verify", "example.test")
    assert code == 1, "not verified yet: a non-zero status for scripts"
    assert out.startswith("example.test: unverified")
    _, rows = table(out)
    assert {r[0]: r[3] for r in rows} == dict.fromkeys(ALL_KEYS, "missing")

    publish(dns_server, records)
    code, out, err = run("domain", "verify", "example.test")
    assert code == 0, err
    assert out.startswith("example.test: verified")
    header, rows = table(out)
    assert header == ["KEY", "TYPE", "NAME", "STATUS", "REQUIRED", "DETAIL"]
    assert {r[0]: r[3] for r in rows} == dict.fromkeys(ALL_KEYS, "pass")

    code, out, _ = run("domain", "list", "--json")
    (d,) = json.loads(out)
    assert (d["name"], d["state"], d["failing_records"]) == ("example.test", "verified", [])
    assert d["last_checked_at"] is not None

    # A wrong key: mismatch, and the table shows what was found.
    dns_server.remove("mt1._domainkey.example.test")
    wrong = dkim.dns_txt_value("rsa-sha256", dkim.generate_key("rsa-sha256")[1])
    dns_server.add("mt1._domainkey.example.test", "TXT", wrong)
    code, out, _ = run("domain", "verify", "example.test")
    assert code == 0  # still sending: failing, inside the grace period
    assert out.startswith("example.test: failing")
    dkim_row = next(r for r in table(out)[1] if r[0] == "dkim:mt1")
    assert dkim_row[3] == "mismatch" and f"found: {wrong}" in dkim_row[5]
    code, out, _ = run("domain", "verify", "example.test", "--json")
    data = json.loads(out)
    dkim_json = next(r for r in data["records"] if r["key"] == "dkim:mt1")
    assert (dkim_json["status"], dkim_json["found"]) == ("mismatch", [wrong])

    header, rows = table(run("domain", "list")[1])
    assert header == ["NAME", "ACCOUNT", "STATE", "APPROVED", "LAST_CHECKED_AT", "FAILING_RECORDS"]
    assert rows[0][0:4] == ["example.test", "acme", "failing", "no"] and rows[0][-1] == "dkim:mt1"


def test_verify_dns_error_is_not_the_customers_fault(run: Run, dns_server: TestDNSServer) -> None:
    publish(dns_server, add_json(run))
    dns_server.servfail("_dmarc.example.test")
    code, out, _ = run("domain", "verify", "example.test", "--json")
    data = json.loads(out)
    assert code == 1 and data["domain"]["state"] == "unverified"
    dmarc = next(r for r in data["records"] if r["key"] == "dmarc")
    assert dmarc["status"] == "error" and "try again later" in dmarc["detail"]
    dns_server.heal("_dmarc.example.test")
    assert run("domain", "verify", "example.test")[0] == 0


def test_verify_and_approve_unknown_domain(run: Run) -> None:
    assert run("domain", "verify", "nope.test") == (1, "", "mailtrap-smtp: no domain named nope.test\n")
    assert run("domain", "approve", "nope.test") == (1, "", "mailtrap-smtp: no domain named nope.test\n")


def test_approve(run: Run, dns_server: TestDNSServer) -> None:
    publish(dns_server, add_json(run))
    run("domain", "verify", "example.test")
    code, out, err = run("domain", "approve", "example.test")
    assert (code, out) == (0, "approved example.test (verified)\n"), err
    code, out, _ = run("domain", "list", "acme", "--json")
    assert json.loads(out)[0]["approved_at"] is not None


def test_dkim_rotate_command(run: Run, dns_server: TestDNSServer) -> None:
    publish(dns_server, add_json(run))
    run("domain", "verify", "example.test")
    code, out, err = run("dkim", "rotate", "example.test", "--json")
    assert code == 0, err
    data = json.loads(out)
    # The next key was published with the domain: the first rotation switches at once.
    assert data["step"] == "activated"
    (key,) = data["keys"]
    assert (key["selector"], key["type"], key["name"]) == ("mt2", "TXT", "mt2._domainkey.example.test")
    # The second one creates a key on the freed selector, which still serves the previous key.
    code, out, err = run("dkim", "rotate", "example.test", "--json")
    data = json.loads(out)
    assert data["step"] == "created"
    (key,) = data["keys"]
    assert (key["selector"], key["type"], key["name"]) == ("mt1", "TXT", "mt1._domainkey.example.test")
    code, out, _ = run("dkim", "rotate", "example.test")
    assert out.startswith("Waiting for DNS")
    dns_server.remove(key["name"], "TXT")
    dns_server.add(key["name"], "TXT", key["value"])
    code, out, _ = run("dkim", "rotate", "example.test")
    assert code == 0 and out.startswith("DNS serves the new key(s): signing now uses them")
    assert table(out)[1][0][:3] == ["mt1", "TXT", "mt1._domainkey.example.test"]


def test_dkim_rotate_with_a_key_hosting_zone_prints_the_operators_record(
        run: Run, make_config: Callable[..., Config], dns_server: TestDNSServer) -> None:
    make_config(dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0},
                domains={"dkim_cname_zone": "dkim.mx.service.test"})
    records = add_json(run)
    assert [r["key"] for r in records] == ["ownership", "dkim:mt1", "dkim:mt2", "spf", "dmarc", "link"]
    code, out, err = run("dkim", "rotate", "example.test", "--json")
    assert code == 0, err
    assert json.loads(out)["step"] == "waiting"  # the operator has not published the next key yet
    (key,) = json.loads(out)["keys"]
    assert (key["selector"], key["type"], key["name"]) == ("mt2", "TXT", "mt2.example.test.dkim.mx.service.test")
    assert key["value"].startswith("v=DKIM1; k=rsa; p=")


# ---------------------------------------------------------------- the "done when", end to end

class Smtp:
    """A minimal SMTP client speaking to the front end over STARTTLS (real TLS, test CA)."""

    def __init__(self, port: int, ctx: Any) -> None:
        self.port, self.ctx = port, ctx

    async def __aenter__(self) -> Smtp:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert (await self.reply()).startswith("220")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.writer.close()

    async def reply(self) -> str:
        lines = []
        async with asyncio.timeout(5):
            while True:
                line = (await self.reader.readline()).decode()
                assert line, "connection closed"
                lines.append(line.rstrip("\r\n"))
                if line[3:4] != "-":
                    return "\n".join(lines)

    async def cmd(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def login(self, token: str) -> None:
        await self.cmd("EHLO client.test")
        assert (await self.cmd("STARTTLS")).startswith("220")
        await self.writer.start_tls(self.ctx, server_hostname="localhost")
        await self.cmd("EHLO client.test")
        auth = await self.cmd("AUTH PLAIN " + base64.b64encode(f"\0api\0{token}".encode()).decode())
        assert auth.startswith("235"), auth

    async def send(self, sender: str, rcpt: str, raw: bytes) -> str:
        """The reply that decided the transaction: MAIL's if refused, else the final one after DATA."""
        reply = await self.cmd(f"MAIL FROM:<{sender}>")
        if not reply.startswith("250"):
            return reply
        assert (await self.cmd(f"RCPT TO:<{rcpt}>")).startswith("250")
        assert (await self.cmd("DATA")).startswith("354")
        return await self.cmd(raw.decode().rstrip("\r\n") + "\r\n.")


MESSAGE = (b"From: App <app@example.test>\r\nTo: someone@elsewhere.test\r\nSubject: hello\r\n\r\n"
           b"Hello from a verified domain.\r\n")


async def test_add_publish_verify_send_then_suspended_after_grace(
        make_config: Callable[..., Config], dns_server: TestDNSServer, tmp_path: Path, pool: Any,
        client_ssl_context: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from mailtrap_smtp.app import smtp_service
    from mailtrap_smtp.signing import KeyStore

    cfg = make_config(dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0},
                      smtp={"listeners": [{"address": "127.0.0.1", "port": 1, "mode": "starttls"}]})
    config_file = str(tmp_path / "config.toml")

    async def cli_run(*args: str) -> tuple[int, str]:
        # The CLI runs its own event loop (asyncio.run): give it a thread, as a shell would a process.
        code = await asyncio.to_thread(cli.main, ["-c", config_file, *args])
        return code, capsys.readouterr().out

    assert (await cli_run("account", "create", "acme"))[0] == 0
    code, out = await cli_run("credential", "create", "acme", "--stream", "transactional", "--json")
    token = json.loads(out)["token"]
    code, out = await cli_run("domain", "add", "acme", "example.test", "--json")
    assert code == 0
    records = json.loads(out)["records"]
    publish(dns_server, records)
    code, out = await cli_run("domain", "verify", "example.test", "--json")
    assert code == 0
    assert {r["key"]: r["status"] for r in json.loads(out)["records"]} == dict.fromkeys(ALL_KEYS, "pass")

    kek = dkim.load_or_create_kek(cfg.kek_path)  # the same key file the CLI created
    service = smtp_service(cfg, pool, signer=KeyStore(pool, kek), process_index=0, port_override=0)
    await service.start()
    try:
        port = service.listeners[0].port
        async with Smtp(port, client_ssl_context) as s:
            await s.login(token)
            reply = await s.send("app@example.test", "someone@elsewhere.test", MESSAGE)
        assert reply.startswith("250 2.0.0 Ok: queued as "), reply
        # What was queued is signed with the key whose record `domain add` printed, and verifies
        # against DNS as a receiver would see it.
        raw = bytes(await pool.fetchval("SELECT raw FROM messages"))
        assert b"s=mt1;" in raw and dkimpy.verify(raw, dnsfunc=dnsfunc_for(dns_server))

        # The customer deletes the DKIM record. Re-checks (clock injected) see it; sending goes on
        # for the grace period, then stops.
        dns_server.remove("mt1._domainkey.example.test")
        start = dt.datetime.now(dt.UTC)
        now = start
        rechecker = domainops.DomainRechecker(cfg, pool, resolver_for(cfg), clock=lambda: now)
        for offset, state, expected in (
                (dt.timedelta(hours=1), "failing", "250 2.0.0 Ok: queued as "),
                (dt.timedelta(hours=72), "failing", "250 2.0.0 Ok: queued as "),
                (dt.timedelta(hours=73), "suspended", "550 5.7.1 Sending from domain is not allowed")):
            now = start + offset
            await rechecker.run_once()
            assert (await domainops._get(pool, "example.test"))["state"] == state
            async with Smtp(port, client_ssl_context) as s:
                await s.login(token)
                reply = await s.send("app@example.test", "someone@elsewhere.test", MESSAGE)
            assert reply.startswith(expected), (offset, reply)
        assert reply == "550 5.7.1 Sending from domain is not allowed"
        code, out = await cli_run("domain", "list", "--json")
        (d,) = json.loads(out)
        assert (d["state"], d["failing_records"]) == ("suspended", ["dkim:mt1"])
    finally:
        await service.stop(1.0)
