"""Listeners and TLS: STARTTLS and implicit modes, TLS 1.2+ with forward secrecy, handshake
timeout, certificate reload without dropping sessions, RSA + ECDSA certificates."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path

import pytest
import trustme

from tests.smtp_util import Env, RawClient, reply_line


async def test_ehlo_before_tls_offers_starttls_not_auth(smtp: Env) -> None:
    async with smtp.raw() as c:
        ehlo = await c.cmd("EHLO client.test")
        assert "250-STARTTLS" in ehlo and "AUTH" not in ehlo
        await c.starttls()
        ehlo = await c.cmd("EHLO client.test")
        lines = ehlo.split("\n")
        assert lines[0] == "250-mx.service.test"
        assert "STARTTLS" not in ehlo
        for ext in ("AUTH PLAIN LOGIN", f"SIZE {smtp.cfg.limits.message_size}", "ENHANCEDSTATUSCODES",
                    "8BITMIME", "PIPELINING"):
            assert any(line[4:] == ext for line in lines), ext


async def test_commands_before_tls_need_starttls(smtp: Env) -> None:
    async with smtp.raw() as c:
        await c.cmd("EHLO client.test")
        for command in ["MAIL FROM:<app@example.com>", "RCPT TO:<a@b.test>", "DATA",
                        "AUTH PLAIN AGFwaQB4", "VRFY x", "HELP", "EXPN x"]:
            assert await c.cmd(command) == reply_line("STARTTLS_REQUIRED"), command
        assert await c.cmd("NOOP") == reply_line("NOOP_OK")
        assert await c.cmd("RSET") == reply_line("RESET_OK")
        assert await c.cmd("QUIT") == reply_line("BYE")
    await smtp.assert_nothing_stored()


async def test_session_is_reset_after_starttls(smtp: Env) -> None:
    async with smtp.raw() as c:
        await c.cmd("EHLO client.test")
        await c.starttls()
        # The EHLO before TLS does not count: AUTH needs a new EHLO.
        assert await c.cmd("AUTH PLAIN AGFwaQB4") == reply_line("EHLO_FIRST")
        assert await c.cmd("STARTTLS") == reply_line("TLS_ALREADY_ACTIVE")


async def test_implicit_tls_listener(smtp: Env) -> None:
    async with smtp.raw(implicit=True) as c:
        ehlo = await c.cmd("EHLO client.test")
        assert "AUTH PLAIN LOGIN" in ehlo and "STARTTLS" not in ehlo
        assert await c.login(smtp.token) == reply_line("AUTH_OK")


def _old_client(ctx_base: ssl.SSLContext, *, max_version: ssl.TLSVersion, ciphers: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = max_version
    ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("max_version,ciphers", [
    (ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0"),           # TLS < 1.2
    (ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256:AES256-SHA"),  # RSA key exchange: no forward secrecy
])
async def test_weak_tls_is_refused(smtp: Env, max_version: ssl.TLSVersion, ciphers: str) -> None:
    ctx = _old_client(smtp.ssl_context, max_version=max_version, ciphers=ciphers)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        r, _w = await asyncio.open_connection("127.0.0.1", smtp.implicit_port, ssl=ctx)
        await r.readline()


async def test_tls12_forward_secret_is_accepted(smtp: Env) -> None:
    ctx = _old_client(smtp.ssl_context, max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE+AESGCM")
    r, w = await asyncio.open_connection("127.0.0.1", smtp.implicit_port, ssl=ctx)
    assert (await r.readline()).startswith(b"220 ")
    assert w.get_extra_info("ssl_object").version() == "TLSv1.2"
    assert "ECDHE" in w.get_extra_info("cipher")[0]
    w.close()


@pytest.mark.parametrize("implicit", [True, False])
async def test_stalled_handshake_is_cut(smtp_factory, implicit: bool) -> None:
    env = await smtp_factory(smtp={"tls_handshake_timeout_seconds": 0.5})
    r, w = await asyncio.open_connection("127.0.0.1", env.implicit_port if implicit else env.port)
    if not implicit:
        assert (await r.readline()).startswith(b"220 ")
        w.write(b"EHLO x\r\n")
        while not (await r.readline()).startswith(b"250 "):
            pass
        w.write(b"STARTTLS\r\n")
        assert (await r.readline()).startswith(b"220 2.0.0")
    # Say nothing: the server must hang up by itself soon after the handshake timeout.
    async with asyncio.timeout(5):
        while await r.read(1024):
            pass
    w.close()


def _write_cert(ca: trustme.CA, d: Path, key_type: trustme.KeyType, stem: str) -> tuple[Path, Path]:
    cert = ca.issue_cert("localhost", "127.0.0.1", key_type=key_type)
    cert_path, key_path = d / f"{stem}.pem", d / f"{stem}.key"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    return cert_path, key_path


async def _peer_serial(env: Env) -> tuple[int, RawClient]:
    c = env.raw(implicit=True)
    await c.connect()
    der = c.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number, c


async def test_reload_tls_uses_new_certificate_and_keeps_sessions(smtp_factory, ca: trustme.CA,
                                                                  tmp_path: Path) -> None:
    cert, key = _write_cert(ca, tmp_path, trustme.KeyType.ECDSA, "live")
    env = await smtp_factory(tls={"cert_file": str(cert), "key_file": str(key)})
    serial1, old = await _peer_serial(env)
    new_cert, new_key = _write_cert(ca, tmp_path, trustme.KeyType.ECDSA, "next")
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    env.service.reload_tls()
    serial2, new = await _peer_serial(env)
    assert serial2 != serial1
    # The session that started before the reload is still alive and working.
    assert await old.cmd("NOOP") == reply_line("NOOP_OK")
    # STARTTLS handshakes use the new certificate too.
    c = env.raw()
    await c.connect()
    await c.cmd("EHLO x")
    await c.starttls()
    from cryptography import x509
    der = c.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert x509.load_der_x509_certificate(der).serial_number == serial2
    for client in (old, new, c):
        client.writer.close()


async def test_reload_with_broken_files_keeps_old_certificate(smtp_factory, ca, tmp_path: Path) -> None:
    cert, key = _write_cert(ca, tmp_path, trustme.KeyType.ECDSA, "live")
    env = await smtp_factory(tls={"cert_file": str(cert), "key_file": str(key)})
    serial1, c1 = await _peer_serial(env)
    cert.write_text("garbage")
    env.service.reload_tls()
    serial2, c2 = await _peer_serial(env)
    assert serial1 == serial2
    c1.writer.close()
    c2.writer.close()


async def test_rsa_and_ecdsa_certificates_side_by_side(smtp_factory, ca, tmp_path: Path) -> None:
    rsa_cert, rsa_key = _write_cert(ca, tmp_path, trustme.KeyType.RSA, "rsa")
    ec_cert, ec_key = _write_cert(ca, tmp_path, trustme.KeyType.ECDSA, "ec")
    env = await smtp_factory(tls={"cert_file": str(rsa_cert), "key_file": str(rsa_key),
                                  "ecdsa_cert_file": str(ec_cert), "ecdsa_key_file": str(ec_key)})
    for ciphers, expect in (("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDSA"), ("ECDHE-RSA-AES128-GCM-SHA256", "RSA")):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
        ca.configure_trust(ctx)
        r, w = await asyncio.open_connection("127.0.0.1", env.implicit_port, ssl=ctx,
                                             server_hostname="localhost")
        assert (await r.readline()).startswith(b"220 ")
        assert expect in w.get_extra_info("cipher")[0]
        w.close()
