"""Configuration: every bad value gives one line naming the key; env overrides; redaction."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from mailtrap_smtp import config
from tests.paths import ROOT


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> config.Config:
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    return config.load(p, environ=environ or {})


def test_defaults_validate() -> None:
    cfg = config.load(None, environ={})
    assert cfg.limits.message_size == 10 * 1024 * 1024
    assert cfg.limits.message_size_cap == 30 * 1024 * 1024
    assert cfg.delivery.mode == "sandbox"
    assert [(x.port, x.mode) for x in cfg.smtp.listeners] == [(2525, "starttls"), (2465, "implicit")]


def test_example_file_documents_exactly_the_defaults() -> None:
    cfg = config.load(ROOT / "config" / "mailtrap-smtp.example.toml", environ={})
    defaults = config.Config(base_dir=cfg.base_dir)
    assert dataclasses.asdict(cfg) == dataclasses.asdict(defaults)
    text = (ROOT / "config" / "mailtrap-smtp.example.toml").read_text()
    for section, tp in config.SECTIONS.items():
        assert f"[{section}]" in text
        if typing.get_origin(tp) is dict:  # [plans.<name>]: the keys of one entry, in comments
            for f in dataclasses.fields(typing.get_args(tp)[1]):
                assert f"\n# {f.name} =" in text, f"{section}.<name>.{f.name} is not documented"
            continue
        for f in dataclasses.fields(getattr(defaults, section)):
            key = config.key_name(f.name)
            assert f"\n{key} =" in text, f"{section}.{key} is not documented"


def test_production_example_uses_public_ports() -> None:
    cfg = config.load(ROOT / "config" / "production.example.toml", environ={})
    assert sorted(x.port for x in cfg.smtp.listeners) == [25, 465, 587, 2525]
    assert {x.port: x.mode for x in cfg.smtp.listeners}[465] == "implicit"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[smtp]\nlisteners = [{address='127.0.0.1', port=70000, mode='starttls'}]",
         "smtp.listeners[0].port: port must be between 1 and 65535, got 70000"),
        ("[smtp]\nlisteners = [{address='127.0.0.1', port='x', mode='starttls'}]",
         "smtp.listeners[0].port: expected an integer, got 'x'"),
        ("[server]\nevent_loop = 'trio'", "server.event_loop: must be 'uvloop' or 'asyncio', got 'trio'"),
        ("[smtp]\nlisteners = [{address='127.0.0.1', port=25, mode='ssl'}]",
         "smtp.listeners[0].mode: must be 'starttls' or 'implicit', got 'ssl'"),
        ("[smtp]\nlisteners = []", "smtp.listeners: at least one listener is required"),
        ("[smtp]\nlisteners = [{address='127.0.0.1', port=25, stream='marketing'}]",
         "smtp.listeners[0].stream: must be 'transactional', 'bulk' or '', got 'marketing'"),
        ("[limits]\nmessage_sise = 5", "limits.message_sise: unknown key"),
        ("[nosuch]\na = 1", "nosuch: unknown section"),
        ("[limits]\nmessage_size = 40000000",
         "limits.message_size: 40000000 is above limits.message_size_cap 31457280"),
        ("[limits]\nconnections_per_ip = 0", "limits.connections_per_ip: must be positive, got 0"),
        ("[delivery]\nmode = 'smtp'", "delivery.mode: must be 'sandbox' or 'mx', got 'smtp'"),
        ("[delivery]\nroutes = {'a.test' = 'nohost'}", "delivery.routes.a.test: expected host:port, got 'nohost'"),
        ("[dns]\nnameservers = ['not an address']", "dns.nameservers[0]:"),
        ("[dkim]\ned25519 = 'yes'", "dkim.ed25519: expected true or false, got 'yes'"),
        ("[domains]\nownership = 'http'", "domains.ownership: must be 'cname' or 'txt', got 'http'"),
        ("[metrics]\nlisten = '9325'", "metrics.listen: expected host:port, got '9325'"),
        ("[server]\nproxy_protocol_from = ['haproxy']",
         "server.proxy_protocol_from[0]: not an IP address or network: 'haproxy'"),
        ("[tls]\necdsa_cert_file = 'x.pem'", "tls.ecdsa_cert_file: ecdsa_cert_file and ecdsa_key_file go together"),
        ("[server\n", "invalid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        load_text(tmp_path, text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "[limits]\nmessage_size = 1000\n", {
        "MAILTRAP_SMTP_LIMITS__MESSAGE_SIZE": "2000",
        "MAILTRAP_SMTP_DATABASE__DSN": "postgresql://u:secret@db/x",
        "MAILTRAP_SMTP_DELIVERY__ROUTES": '{"a.test" = "127.0.0.1:2526"}',
        "MAILTRAP_SMTP_SMTP__LISTENERS": '[{address="0.0.0.0", port=587, mode="starttls"}]',
        "OTHER_VAR": "ignored",
    })
    assert cfg.limits.message_size == 2000
    assert cfg.database.dsn == "postgresql://u:secret@db/x"
    assert cfg.delivery.routes == {"a.test": "127.0.0.1:2526"}
    assert cfg.smtp.listeners == [config.Listener("0.0.0.0", 587, "starttls")]


def test_environment_override_is_validated(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"^limits.message_size: expected an integer, got 'big'$"):
        load_text(tmp_path, "", {"MAILTRAP_SMTP_LIMITS__MESSAGE_SIZE": "big"})
    with pytest.raises(config.ConfigError, match="MAILTRAP_SMTP_NOPE__X: unknown section 'nope'"):
        load_text(tmp_path, "", {"MAILTRAP_SMTP_NOPE__X": "1"})


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "[server]\ndata_dir = 'state'\n[tls]\ncert_file = 'c.pem'\nkey_file = 'k.pem'\n")
    assert cfg.data_dir == tmp_path / "state"
    assert cfg.kek_path == tmp_path / "state" / "dkim.kek"
    with pytest.raises(config.ConfigError, match=f"tls.cert_file: file not found: {tmp_path / 'c.pem'}"):
        config.check_files(cfg)


def test_redacted_hides_database_password(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "[database]\ndsn = 'postgresql://mts:hunter2@db.internal:5432/mts'\n")
    red = config.redacted(cfg)
    assert red["database"]["dsn"] == "postgresql://mts:***@db.internal:5432/mts"
    assert "hunter2" not in repr(red)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailtrap_smtp", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_cli_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[smtp]\nlisteners = [{address='127.0.0.1', port=0, mode='starttls'}]\n")
    r = run_cli("check-config", "-c", str(p))
    assert r.returncode == 2
    assert r.stderr == "mailtrap-smtp: config error: smtp.listeners[0].port: port must be between 1 and 65535, got 0\n"
    assert "Traceback" not in r.stderr


def test_cli_missing_certificate_is_one_line_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[tls]\ncert_file = 'missing.pem'\nkey_file = 'missing-key.pem'\n")
    r = run_cli("check-config", "-c", str(p))
    assert r.returncode == 2
    assert r.stderr.strip() == f"mailtrap-smtp: config error: tls.cert_file: file not found: {tmp_path / 'missing.pem'}"


def test_cli_check_config_prints_effective_redacted(tmp_path: Path, cert_files: tuple[Path, Path]) -> None:
    p = tmp_path / "c.toml"
    p.write_text(f"[tls]\ncert_file = '{cert_files[0]}'\nkey_file = '{cert_files[1]}'\n"
                 "[database]\ndsn = 'postgresql://u:pw@h/db'\n")
    r = run_cli("check-config", "-c", str(p), "--json")
    assert r.returncode == 0, r.stderr
    import json

    data = json.loads(r.stdout)
    assert data["database"]["dsn"] == "postgresql://u:***@h/db"
    assert data["limits"]["message_size"] == 10485760


def test_cli_help_for_every_command() -> None:
    from mailtrap_smtp.cli import build_parser

    parser = build_parser()
    r = run_cli("--help")
    assert r.returncode == 0 and "serve" in r.stdout and "credential" in r.stdout
    for cmd in (["serve"], ["migrate"], ["check-config"], ["account", "create"], ["account", "show"],
                ["domain", "add"], ["domain", "verify"], ["domain", "approve"], ["domain", "list"],
                ["credential", "create"], ["credential", "revoke"], ["dkim", "rotate"], ["queue", "list"],
                ["queue", "show"], ["queue", "retry"], ["queue", "bounce"], ["template", "create"],
                ["template", "list"], ["template", "show"], ["template", "render"], ["template", "delete"],
                ["inbox", "create"], ["inbox", "list"], ["inbox", "messages"], ["inbox", "download"]):
        with pytest.raises(SystemExit) as e:
            parser.parse_args([*cmd, "--help"])
        assert e.value.code == 0


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("[inbound]\nlisteners = ['127.0.0.1']", "inbound.listeners[0]: expected host:port, got '127.0.0.1'",
                 id="no-port"),
    pytest.param("[smtp]\nlisteners = [{address='127.0.0.1', port=2600, mode='starttls'}]\n"
                 "[inbound]\nlisteners = ['127.0.0.1:2600']",
                 "inbound.listeners[0]: 127.0.0.1:2600 is also an smtp listener", id="same-as-smtp"),
    pytest.param("[inbound]\nmax_message_size = 0", "inbound.max_message_size: must be positive, got 0", id="size"),
    pytest.param("[inbound]\nfeedback_addresses = ['fbl']", "inbound.feedback_addresses[0]: not an address: 'fbl'",
                 id="feedback-address"),
])
def test_inbound_config_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(config.ConfigError) as e:
        config.load(p, environ={})
    assert str(e.value) == message


@pytest.mark.parametrize("value", ["api.example.com/x", "a b", "user@api.example.com", "api?x", "<api>", "api#f"])
def test_http_public_host_must_be_a_host(tmp_path: Path, value: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(f"[http]\npublic_host = {value!r}\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(p, environ={})
    assert str(e.value) == f"http.public_host: expected host or host:port, got {value!r}"


def test_http_public_host_defaults_to_the_server_hostname(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[server]\nhostname = 'mx.example.com'\n")
    assert config.load(p, environ={}).http_public_host == "mx.example.com"
    p.write_text("[server]\nhostname = 'mx.example.com'\n[http]\npublic_host = 'api.example.com:8443'\n")
    assert config.load(p, environ={}).http_public_host == "api.example.com:8443"
