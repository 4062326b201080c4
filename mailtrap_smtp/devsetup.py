"""First-run development setup: a local TLS certificate, the schema, and a demo account to send with.

Run by `make serve` (through `mailtrap-smtp dev-setup`, `cli/service.py`) before the service starts; safe
to run again (it only creates what is missing).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Any

from .config import Config

DEMO_ACCOUNT = "demo"
DEMO_DOMAIN = "example.com"
DEMO_SENDER = f"demo@{DEMO_DOMAIN}"


def ensure_dev_certificate(cert_path: Path, key_path: Path, hostname: str) -> bool:
    """Create a self-signed certificate for local use if none exists; True if one was made."""
    if cert_path.exists() and key_path.exists():
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = sorted({hostname, "localhost"})
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailtrap-smtp development")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True


def _api_instructions(cfg: Config, token: str) -> list[str]:
    """A curl request and a Python SDK call that work as pasted (MAILTRAP_COMPAT.md §2.3)."""
    import json
    import shlex
    import sys

    api = cfg.http.listeners[0]
    host = f"[{api.address}]" if ":" in api.address else api.address
    cert = str(cfg.path(cfg.tls.cert_file))
    body = json.dumps({"from": {"email": DEMO_SENDER, "name": "Demo"}, "to": [{"email": "someone@example.net"}],
                       "subject": "Hello", "text": "Sent through the mailtrap-smtp Email API."})
    # Double quotes inside, so the shell's single quotes around it need no escaping.
    sdk = (f'import mailtrap as mt; client = mt.MailtrapClient(token="{token}", api_host="{host}:{api.port}"); '
           f'print(client.send(mt.Mail(sender=mt.Address(email="{DEMO_SENDER}"), '
           'to=[mt.Address(email="someone@example.net")], subject="Hello", text="Sent with the Mailtrap SDK.")))')
    return [
        "",
        f"Send through the HTTPS Email API ({host}:{api.port}) with curl:",
        "",
        f"    curl --cacert {shlex.quote(cert)} https://{host}:{api.port}/api/send \\",
        f"         -H {shlex.quote('Api-Token: ' + token)} -H 'Content-Type: application/json' \\",
        f"         -d {shlex.quote(body)}",
        "",
        "or with Mailtrap's Python SDK (REQUESTS_CA_BUNDLE makes it trust the development certificate):",
        "",
        f"    REQUESTS_CA_BUNDLE={shlex.quote(cert)} {shlex.quote(sys.executable)} -c {shlex.quote(sdk)}",
        "",
    ]


def _dashboard_instructions(cfg: Config, admin_token: str) -> list[str]:
    api = cfg.http.listeners[0]
    host = f"[{api.address}]" if ":" in api.address else api.address
    return [
        "The dashboard (your browser warns about the development certificate) is at",
        "",
        f"    https://{host}:{api.port}/dashboard/",
        "",
        "Log in with this admin token of the demo account (also shown once; keep it apart from the send token):",
        "",
        f"    {admin_token}",
        "",
    ]


def _instructions(cfg: Config, token: str, admin_token: str | None) -> str:
    starttls = next((x for x in cfg.smtp.listeners if x.mode == "starttls"), None)
    implicit = next((x for x in cfg.smtp.listeners if x.mode == "implicit"), None)
    lines = [
        "",
        "=" * 78,
        "Demo account ready. This token is shown ONCE (only its digest is stored):",
        "",
        f"    {token}",
        "",
    ]
    if starttls is not None:
        lines += [
            "Send a message with swaks (STARTTLS):",
            "",
            f"    swaks --server {starttls.address} --port {starttls.port} --tls \\",
            f"          --auth PLAIN --auth-user api --auth-password '{token}' \\",
            f"          --from {DEMO_SENDER} --to someone@example.net",
            "",
            "or with Python's smtplib:",
            "",
            "    import smtplib, ssl",
            "    from email.message import EmailMessage",
            "    msg = EmailMessage()",
            f"    msg['From'], msg['To'], msg['Subject'] = '{DEMO_SENDER}', 'someone@example.net', 'Hello'",
            "    msg.set_content('Sent through mailtrap-smtp.')",
            "    ctx = ssl.create_default_context()",
            f"    ctx.load_verify_locations('{cfg.path(cfg.tls.cert_file)}')  # the dev certificate",
            f"    with smtplib.SMTP('{starttls.address}', {starttls.port}) as s:",
            "        s.starttls(context=ctx)",
            f"        s.login('api', '{token}')",
            "        s.send_message(msg)",
            "",
        ]
    if implicit is not None:
        lines.append(f"Implicit TLS (like port 465) listens on {implicit.address}:{implicit.port}.")
    if cfg.http.listeners:
        lines += _api_instructions(cfg, token)
        if admin_token is not None:
            lines += _dashboard_instructions(cfg, admin_token)
    lines += [
        f"Delivery mode is '{cfg.delivery.mode}'"
        + (": nothing leaves this machine; accepted mail is written to "
           f"{cfg.data_dir / 'sandbox'} and shown by `mailtrap-smtp queue list` / `queue show ID`."
           if cfg.delivery.mode == "sandbox" else "."),
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


async def ensure_demo(cfg: Config, pool: Any) -> str | None:
    """Create the demo account, domain and a transactional token if the account is new; the token, once."""
    from . import dkim, domainops
    from .core import accounts, credentials

    if await accounts.find(pool, DEMO_ACCOUNT) is not None:
        return None
    await accounts.create(pool, DEMO_ACCOUNT, accounts.plan_for(cfg.limits))
    await domainops.add_domain(pool, cfg, dkim.load_or_create_kek(cfg.kek_path), DEMO_ACCOUNT, DEMO_DOMAIN,
                               skip_dns=True)
    return (await credentials.issue(pool, DEMO_ACCOUNT, ["transactional"], name="demo")).token


async def dashboard_token(pool: Any) -> str:
    """An admin token of the demo account (both streams, every domain), to log in to the dashboard."""
    from .core import credentials

    issued = await credentials.issue(pool, DEMO_ACCOUNT, ["transactional", "bulk"], level="admin", name="dashboard")
    return issued.token


def report(cfg: Config, token: str | None, admin_token: str | None = None) -> str:
    """What `dev-setup` prints: how to send with the new token (and where the dashboard is, with its
    admin token), or that the demo account exists."""
    if token is not None:
        return _instructions(cfg, token, admin_token)
    return (f"demo account exists (its token was printed on first run; make another with "
            f"`mailtrap-smtp credential create {DEMO_ACCOUNT} --stream transactional`)")
