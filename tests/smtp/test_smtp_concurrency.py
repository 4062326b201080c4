"""Several processes on one database: the monthly limit and the per-account session cap hold
across processes (two real server processes, many parallel sessions)."""

from __future__ import annotations

import asyncio
import base64
import signal
from pathlib import Path

from tests.smtp_util import SENDER, RawClient, create_account, message, reply_line, smtp_sections, spawn_service


async def _two_processes(make_config, tmp_path: Path, **sections):
    make_config(**smtp_sections(**sections))  # writes tmp_path/config.toml
    return await asyncio.gather(*(spawn_service(str(tmp_path / "config.toml")) for _ in range(2)))


async def _stop(procs) -> None:
    for proc, _ in procs:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in procs:
        async with asyncio.timeout(10):
            await proc.communicate()  # reads its stdout to the end, which closes the pipe
        assert proc.returncode == 0


async def _session(port: int, ctx, token: str) -> tuple[RawClient, str]:
    c = RawClient("127.0.0.1", port, ctx)
    await c.connect()
    return c, await c.login(token)


async def test_quota_holds_across_two_processes(pool, make_config, tmp_path: Path, client_ssl_context) -> None:
    acct = await create_account(pool, monthly_limit=30)
    procs = await _two_processes(make_config, tmp_path, limits={"connections_per_account": 100})
    ports = [p[1][0] for p in procs]
    outcomes: list[str] = []

    async def sender(i: int) -> None:
        c, r = await _session(ports[i % 2], client_ssl_context, acct.token)
        assert r == reply_line("AUTH_OK")
        for _ in range(2):
            replies = [await c.cmd(f"MAIL FROM:<{SENDER}>")]
            replies.append(await c.cmd(f"RCPT TO:<a{i}@dest.test>"))
            replies.append(await c.cmd(f"RCPT TO:<b{i}@dest.test>"))
            if replies[-1] != reply_line("RECIPIENT_OK"):
                outcomes.append(replies[-1])
                await c.cmd("RSET")
                continue
            assert await c.cmd("DATA") == reply_line("START_DATA")
            await c.send(message() + b".\r\n")
            outcomes.append(await c.reply())
        assert await c.cmd("QUIT") == reply_line("BYE")
        assert await c.closed()

    try:
        await asyncio.gather(*(sender(i) for i in range(20)))  # 80 recipients wanted, 30 allowed
    finally:
        await _stop(procs)
    accepted = [o for o in outcomes if o.startswith("250 2.0.0 Ok: queued as ")]
    refused = [o for o in outcomes if not o.startswith("250 ")]
    assert len(accepted) == 15
    assert set(refused) == {reply_line("QUOTA_EXCEEDED")}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages") == 15
        assert await conn.fetchval("SELECT count(*) FROM recipients") == 30
        assert await conn.fetchval("SELECT sum(used) FROM usage") == 30


async def test_session_cap_holds_across_two_processes(pool, make_config, tmp_path: Path,
                                                      client_ssl_context) -> None:
    acct = await create_account(pool)
    procs = await _two_processes(make_config, tmp_path, limits={"connections_per_account": 3})
    ports = [p[1][0] for p in procs]
    try:
        sessions = [await _session(ports[i % 2], client_ssl_context, acct.token) for i in range(4)]
        assert [r for _, r in sessions] == [reply_line("AUTH_OK")] * 3 + [reply_line("TOO_MANY_CONNECTIONS_ACCOUNT")]
        # Closing a session in one process frees a slot for the other process.
        c0 = sessions[0][0]
        await c0.cmd("QUIT")
        assert await c0.closed()
        ok = "AUTH PLAIN " + base64.b64encode(f"\0api\0{acct.token}".encode()).decode()
        for _ in range(50):
            r = await sessions[3][0].cmd(ok)
            if r == reply_line("AUTH_OK"):
                break
            await asyncio.sleep(0.05)
        assert r == reply_line("AUTH_OK")
        for c, _ in sessions[1:]:
            c.writer.close()
    finally:
        await _stop(procs)


async def test_sighup_reloads_certificates_in_a_running_process(pool, make_config, tmp_path: Path, ca,
                                                                client_ssl_context) -> None:
    import shutil

    import trustme
    from cryptography import x509

    def issue(stem: str) -> tuple[Path, Path]:
        cert = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
        c, k = tmp_path / f"{stem}.pem", tmp_path / f"{stem}.key"
        cert.cert_chain_pems[0].write_to_path(str(c))
        cert.private_key_pem.write_to_path(str(k))
        return c, k

    cert, key = issue("live")
    make_config(**smtp_sections(tls={"cert_file": str(cert), "key_file": str(key)}))
    proc, ports = await spawn_service(str(tmp_path / "config.toml"))

    async def serial() -> tuple[int, RawClient]:
        c = RawClient("127.0.0.1", ports[1], client_ssl_context, implicit=True)
        await c.connect()
        der = c.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number, c

    try:
        first, old = await serial()
        new_cert, new_key = issue("next")
        shutil.copy(new_cert, cert)
        shutil.copy(new_key, key)
        proc.send_signal(signal.SIGHUP)
        for _ in range(50):
            second, c = await serial()
            c.writer.close()
            if second != first:
                break
            await asyncio.sleep(0.05)
        assert second != first
        assert await old.cmd("NOOP") == reply_line("NOOP_OK")  # the old session survived the reload
        old.writer.close()
    finally:
        await _stop([(proc, ports)])
