"""Typed, validated configuration: one TOML file, every key overridable from the environment.

The dataclasses below are the single definition of every configuration key and its default;
`config/mailtrap-smtp.example.toml` documents them for people. An environment variable
`MAILTRAP_SMTP_<SECTION>__<KEY>` overrides `[section] key`; its value is read as a TOML value
when it parses as one (numbers, booleans, arrays, inline tables) and as a plain string otherwise.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import keyword
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "MAILTRAP_SMTP_"
MB = 1024 * 1024


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the key."""


@dataclass
class Listener:
    address: str = "127.0.0.1"
    port: int = 2525
    mode: str = "starttls"  # "starttls" | "implicit"
    # Trusted peers (server.proxy_protocol_from) must open with a PROXY header on this listener.
    proxy_protocol: bool = False
    # The stream this listener's sessions send on: "transactional" or "bulk" (a token without
    # that stream is refused at AUTH), or "" for the token's own stream (transactional when the
    # token has both).
    stream: str = ""


@dataclass
class ServerConfig:
    hostname: str = "localhost"
    data_dir: str = "./data"
    # Addresses of TCP proxies (HAProxy) allowed to send a PROXY protocol header; everyone else
    # is keyed on the real peer address.
    proxy_protocol_from: list[str] = field(default_factory=list)
    # A PROXY header must be complete this soon after the connection (it is sent at once by a proxy).
    proxy_header_timeout_seconds: float = 3.0
    shutdown_grace_seconds: float = 10.0
    # "uvloop" (libuv; its TLS layer is compiled, so each handshake and record costs less CPU) or
    # "asyncio" (the standard library's loop).
    event_loop: str = "uvloop"


@dataclass
class SmtpConfig:
    listeners: list[Listener] = field(
        default_factory=lambda: [
            Listener("127.0.0.1", 2525, "starttls"),
            Listener("127.0.0.1", 2465, "implicit"),
        ]
    )
    command_timeout_seconds: float = 60.0
    tls_handshake_timeout_seconds: float = 10.0
    # A DATA phase slower than this average rate (after a small allowance) is cut off.
    min_data_rate_bytes_per_second: int = 1024
    session_deadline_seconds: float = 600.0
    max_errors: int = 10
    # "normalize": command and message lines ending in a bare LF count as ending in CRLF (Postfix 3.9
    # `smtpd_forbid_bare_newline = normal`); "reject": they are refused. Only CRLF "." CRLF ends DATA.
    bare_newline: str = "normalize"
    # NOOP, RSET, VRFY and HELP allowed between two accepted messages (Postfix smtpd_junk_command_limit).
    junk_command_limit: int = 100


@dataclass
class HttpListener:
    address: str = "127.0.0.1"
    port: int = 8443
    # "transactional" | "bulk" | "host": decide by the Host header (a "bulk." prefix → bulk), as
    # Mailtrap tells its hosts apart (MAILTRAP_COMPAT.md §1).
    stream: str = "host"


HTTP_STREAMS = ("transactional", "bulk", "host")


@dataclass
class HttpConfig:
    # The HTTPS Email API (TLS always, with [tls]'s certificates). Empty: no API listener.
    listeners: list[HttpListener] = field(default_factory=list)
    # Request bodies over this many bytes get 413 before they are read whole (a batch may carry
    # 500 messages, up to 50 MB in total: MAILTRAP_COMPAT.md §2.7).
    max_request_bytes: int = 50 * MB + 64 * 1024
    # Requests per token per window, counted across the processes of a node (MAILTRAP_COMPAT.md §8).
    rate_limit_requests: int = 150
    rate_limit_window_seconds: float = 10.0
    keepalive_timeout_seconds: float = 30.0
    # A token's successful look-up is reused this long by the process (0: every request asks the
    # database). SMTP authenticates once per session; the API would otherwise pay a round trip per
    # request. A revoked token or a changed domain takes effect within this time.
    token_cache_seconds: float = 2.0
    # "host" or "host:port" clients reach the API at, for the one-click unsubscribe URLs of bulk
    # messages (RFC 8058): https://<public_host>/unsubscribe/<token>. Empty: server.hostname.
    public_host: str = ""


@dataclass
class TlsConfig:
    cert_file: str = "certs/dev-cert.pem"
    key_file: str = "certs/dev-key.pem"
    # Optional second (ECDSA P-256) certificate served alongside the RSA one.
    ecdsa_cert_file: str = ""
    ecdsa_key_file: str = ""


@dataclass
class DatabaseConfig:
    dsn: str = ""  # empty: run the embedded PostgreSQL in <data_dir>/pg
    pool_min_size: int = 2
    pool_max_size: int = 10
    # Server-side bound on every statement of the service (acceptance, AUTH, delivery); see the
    # example config for why 10 s. 0 disables it.
    statement_timeout_seconds: float = 10.0


@dataclass
class LimitsConfig:
    message_size: int = 10 * MB
    message_size_cap: int = 30 * MB
    monthly_messages: int = 4000
    recipients_per_message: int = 1000
    connections_per_account: int = 10
    connections_per_ip: int = 10
    connection_rate_per_ip: int = 600  # new connections per minute per client IP, all processes of a node
    messages_per_connection: int = 100
    auth_failures_per_connection: int = 3
    auth_failures_per_ip: int = 20
    auth_failure_window_seconds: float = 600.0


@dataclass
class DnsConfig:
    nameservers: list[str] = field(default_factory=list)  # "host" or "host:port"; empty: system resolver
    timeout_seconds: float = 5.0


@dataclass
class DeliveryConfig:
    mode: str = "sandbox"  # "sandbox" | "mx"
    # Transport map: destination domain -> "host:port", bypassing MX lookup.
    routes: dict[str, str] = field(default_factory=dict)
    require_tls: bool = False
    require_tls_domains: list[str] = field(default_factory=list)
    concurrency: int = 20
    per_destination_concurrency: int = 4
    batch_size: int = 100
    lease_seconds: float = 300.0
    poll_interval_seconds: float = 15.0
    connect_timeout_seconds: float = 30.0
    command_timeout_seconds: float = 120.0
    retry_schedule_seconds: list[int] = field(default_factory=lambda: [60, 300, 900, 1800, 3600])
    retry_interval_min_seconds: int = 7200
    retry_interval_max_seconds: int = 14400
    max_queue_lifetime_seconds: int = 3 * 24 * 3600
    mx_port: int = 25  # port of the MX hosts found in DNS (staging networks, tests)
    tls_ca_file: str = ""  # CA bundle for verifying MX certificates when TLS is required; empty: system store
    # Honour recipients' MTA-STS policies (RFC 8461; fetched over HTTPS, verified with tls_ca_file).
    mta_sts: bool = True
    # Honour DANE TLSA records (RFC 7672); needs dns.nameservers to be a DNSSEC-validating resolver.
    dane: bool = False


@dataclass
class DkimConfig:
    kek_file: str = ""  # empty: <data_dir>/dkim.kek, created with mode 0600
    ed25519: bool = False  # add an Ed25519 signature (RFC 8463) next to the RSA one


@dataclass
class DomainsConfig:
    return_path_host: str = ""  # empty: "rp." + server.hostname
    spf_include: str = ""  # empty: "_spf." + server.hostname
    ownership: str = "cname"  # "cname" | "txt"
    dkim_cname_zone: str = ""
    dmarc_rua: str = ""
    # Mailtrap's `link_verification` record (mt-link.<domain> CNAME link_host): listed, checked and
    # shown, never required; reserved for click tracking, which is not built (docs/domains.md §2).
    link_record: bool = True
    link_host: str = ""  # empty: "t." + server.hostname
    require_approval: bool = False
    recheck_interval_seconds: int = 3600
    grace_period_seconds: int = 72 * 3600
    # VERP return path bounces+TAG@<token>.<domain> as MAIL FROM (only with ownership = "cname").
    verp: bool = True
    verp_key_file: str = ""  # empty: <data_dir>/verp.key, created with mode 0600


@dataclass
class InboundConfig:
    # "host:port" listeners of `serve --role inbound` (the MX of the return-path host; 25 in
    # production). Empty: no inbound listener (`--role all` then starts none).
    listeners: list[str] = field(default_factory=list)
    max_message_size: int = 1 * MB  # a report is small; the original message it returns is optional
    # Fixed addresses that also accept reports (the address registered with providers' complaint
    # feedback loops); the message and recipient then come from the VERP return path in the report.
    feedback_addresses: list[str] = field(default_factory=list)
    max_recipients: int = 10
    max_connections: int = 100


@dataclass
class MetricsConfig:
    listen: str = "127.0.0.1:9325"  # empty: no metrics endpoint


@dataclass
class MaillogConfig:
    # The operator's log (maillog.py): "text" lines through the service log, or "json" lines on stderr.
    format: str = "text"


@dataclass
class OutboxConfig:
    concurrency: int = 16          # cursors (e.g. webhooks) one process works on at once
    lease_seconds: float = 120.0   # a claimed cursor is free again after this if its process died
    poll_seconds: float = 1.0      # how often a runner looks for new events (besides NOTIFY)


@dataclass
class WebhooksConfig:
    batch_size: int = 500          # events per POST (Mailtrap: at most 500)
    flush_seconds: float = 30.0    # a batch that is not full is posted this long after its first event
    timeout_seconds: float = 30.0  # no answer within this: the attempt failed
    retry_seconds: float = 300.0   # a failed batch is retried this long after the failure
    retry_limit: int = 40          # retries of one batch before the webhook is deactivated
    allow_private_targets: bool = False  # true: loopback/private addresses and any port (development, tests)


@dataclass
class PlanConfig:
    """One named plan (`[plans.<name>]`): what `account create --plan` / `account set-plan` apply."""

    monthly_messages: int = 4000
    message_size: int = 10 * MB
    alert_thresholds: list[int] = field(default_factory=lambda: [80, 90, 100])  # % of monthly_messages


@dataclass
class NotificationsConfig:
    # `from` in the file (a Python keyword, hence the trailing underscore here). Its domain must be a
    # sending domain with DKIM keys (the operator's); empty: no emails, only events, log and metric.
    from_: str = ""


@dataclass
class RetentionConfig:
    raw_message_days: int = 0  # stored bodies of finished messages are deleted after N days; 0: kept
    log_days: int = 0          # messages, recipients and events are deleted after N days; 0: kept
    interval_seconds: float = 3600.0  # how often the retention sweep runs


@dataclass
class DashboardConfig:
    # A dashboard session ends when unused this long, and at the latest this long after its login
    # (OWASP Session Management: idle and absolute timeouts); logging out ends it at once.
    session_idle_seconds: float = 1800.0
    session_max_seconds: float = 43200.0


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    domains: DomainsConfig = field(default_factory=DomainsConfig)
    inbound: InboundConfig = field(default_factory=InboundConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    maillog: MaillogConfig = field(default_factory=MaillogConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    plans: dict[str, PlanConfig] = field(default_factory=dict)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    # Where the file was read from: relative paths in it are relative to its folder.
    base_dir: Path = field(default_factory=Path.cwd, repr=False)

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return (p if p.is_absolute() else self.base_dir / p).resolve()

    @property
    def data_dir(self) -> Path:
        return self.path(self.server.data_dir)

    @property
    def kek_path(self) -> Path:
        return self.path(self.dkim.kek_file) if self.dkim.kek_file else self.data_dir / "dkim.kek"

    @property
    def return_path_host(self) -> str:
        return self.domains.return_path_host or f"rp.{self.server.hostname}"

    @property
    def http_public_host(self) -> str:
        return self.http.public_host or self.server.hostname

    @property
    def link_host(self) -> str:
        return self.domains.link_host or f"t.{self.server.hostname}"

    @property
    def spf_include(self) -> str:
        return self.domains.spf_include or f"_spf.{self.server.hostname}"


SECRET_KEYS = {("database", "dsn")}
SECTIONS: dict[str, type] = {
    name: tp for name, tp in typing.get_type_hints(Config).items() if name != "base_dir"
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check one value against its declared type; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return {_coerce(key, k_tp, k): _coerce(f"{key}.{k}", v_tp, v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return _build(key, tp, value)
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def field_name(key: str) -> str:
    """The dataclass field of a file key: a Python keyword (`from`) gets a trailing underscore."""
    return key + "_" if keyword.iskeyword(key) else key


def key_name(name: str) -> str:
    """The file key of a dataclass field (the inverse of `field_name`)."""
    return name[:-1] if name.endswith("_") and keyword.iskeyword(name[:-1]) else name


def _build(prefix: str, cls: type, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in values:
        if field_name(k) not in names or key_name(field_name(k)) != k:  # `from_` is no key: `from` is
            raise ConfigError(f"{prefix}.{k}: unknown key")
    kwargs = {field_name(k): _coerce(f"{prefix}.{k}", hints[field_name(k)], v) for k, v in values.items()}
    return cls(**kwargs)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX):]:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition("__")
        section, key = section.lower(), key.lower()
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        if section not in SECTIONS:
            raise ConfigError(f"{name}: unknown section {section!r}")
        out.setdefault(section, {})[key] = value
    return out


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the file (if any), apply environment overrides, and validate everything."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p}: not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p}: invalid TOML: {e}") from None
        base_dir = p.resolve().parent
    for section, values in _env_overrides(environ).items():
        existing = data.setdefault(section, {})
        if not isinstance(existing, dict):
            raise ConfigError(f"{section}: expected a table")
        existing.update(values)
    sections: dict[str, Any] = {}
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{section}: unknown section")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a table")
        sections[section] = _coerce(section, SECTIONS[section], values)
    cfg = Config(**sections, base_dir=base_dir)
    validate(cfg)
    return cfg


def _port(key: str, value: int) -> None:
    if not 0 < value < 65536:
        raise ConfigError(f"{key}: port must be between 1 and 65535, got {value}")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")


def _host_port(key: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{key}: expected host:port, got {value!r}")
    _port(key, int(port))
    return host.strip("[]"), int(port)


def validate(cfg: Config) -> None:
    """Semantic checks the types alone cannot express."""
    if not cfg.smtp.listeners:
        raise ConfigError("smtp.listeners: at least one listener is required")
    seen: set[tuple[str, int]] = set()
    for i, lst in enumerate(cfg.smtp.listeners):
        key = f"smtp.listeners[{i}]"
        _port(f"{key}.port", lst.port)
        if lst.mode not in ("starttls", "implicit"):
            raise ConfigError(f"{key}.mode: must be 'starttls' or 'implicit', got {lst.mode!r}")
        if lst.stream not in ("", "transactional", "bulk"):
            raise ConfigError(f"{key}.stream: must be 'transactional', 'bulk' or '', got {lst.stream!r}")
        if (lst.address, lst.port) in seen:
            raise ConfigError(f"{key}: {lst.address}:{lst.port} is listed twice")
        seen.add((lst.address, lst.port))
    for name in ("command_timeout_seconds", "tls_handshake_timeout_seconds", "session_deadline_seconds"):
        _positive(f"smtp.{name}", getattr(cfg.smtp, name))
    _validate_http(cfg, seen)
    _positive("server.proxy_header_timeout_seconds", cfg.server.proxy_header_timeout_seconds)
    _positive("smtp.junk_command_limit", cfg.smtp.junk_command_limit)
    if cfg.smtp.bare_newline not in ("normalize", "reject"):
        raise ConfigError(f"smtp.bare_newline: must be 'normalize' or 'reject', got {cfg.smtp.bare_newline!r}")
    for key in ("cert_file", "key_file"):
        value = getattr(cfg.tls, key)
        if not value:
            raise ConfigError(f"tls.{key}: required")
    if bool(cfg.tls.ecdsa_cert_file) != bool(cfg.tls.ecdsa_key_file):
        raise ConfigError("tls.ecdsa_cert_file: ecdsa_cert_file and ecdsa_key_file go together")
    lim = cfg.limits
    for f in dataclasses.fields(LimitsConfig):
        _positive(f"limits.{f.name}", getattr(lim, f.name))
    if lim.message_size > lim.message_size_cap:
        raise ConfigError(
            f"limits.message_size: {lim.message_size} is above limits.message_size_cap {lim.message_size_cap}"
        )
    if cfg.database.statement_timeout_seconds < 0:
        raise ConfigError("database.statement_timeout_seconds: must be 0 (no limit) or positive")
    if cfg.server.event_loop not in ("uvloop", "asyncio"):
        raise ConfigError(f"server.event_loop: must be 'uvloop' or 'asyncio', got {cfg.server.event_loop!r}")
    if cfg.delivery.mode not in ("sandbox", "mx"):
        raise ConfigError(f"delivery.mode: must be 'sandbox' or 'mx', got {cfg.delivery.mode!r}")
    for domain, target in cfg.delivery.routes.items():
        _host_port(f"delivery.routes.{domain}", target)
    if not cfg.delivery.retry_schedule_seconds:
        raise ConfigError("delivery.retry_schedule_seconds: at least one interval is required")
    if cfg.delivery.retry_interval_min_seconds > cfg.delivery.retry_interval_max_seconds:
        raise ConfigError("delivery.retry_interval_min_seconds: above delivery.retry_interval_max_seconds")
    _port("delivery.mx_port", cfg.delivery.mx_port)
    for name in ("concurrency", "per_destination_concurrency", "batch_size", "lease_seconds",
                 "poll_interval_seconds", "max_queue_lifetime_seconds"):
        _positive(f"delivery.{name}", getattr(cfg.delivery, name))
    from .dnsresolve import parse_nameserver  # the resolver owns the nameserver syntax

    for i, ns in enumerate(cfg.dns.nameservers):
        try:
            parse_nameserver(ns)
        except ValueError as e:
            raise ConfigError(f"dns.nameservers[{i}]: {e}") from None
    _positive("dns.timeout_seconds", cfg.dns.timeout_seconds)
    if cfg.domains.ownership not in ("cname", "txt"):
        raise ConfigError(f"domains.ownership: must be 'cname' or 'txt', got {cfg.domains.ownership!r}")
    for i, listen in enumerate(cfg.inbound.listeners):
        if _host_port(f"inbound.listeners[{i}]", listen) in seen:
            raise ConfigError(f"inbound.listeners[{i}]: {listen} is also an smtp listener")
    for name in ("max_message_size", "max_recipients", "max_connections"):
        _positive(f"inbound.{name}", getattr(cfg.inbound, name))
    for i, addr in enumerate(cfg.inbound.feedback_addresses):
        local, at, host = addr.rpartition("@")
        if not (local and at and host) or any(c.isspace() or c in "<>" for c in addr):
            raise ConfigError(f"inbound.feedback_addresses[{i}]: not an address: {addr!r}")
    if cfg.metrics.listen:
        _host_port("metrics.listen", cfg.metrics.listen)
    for f in dataclasses.fields(OutboxConfig):
        _positive(f"outbox.{f.name}", getattr(cfg.outbox, f.name))
    for name in ("batch_size", "timeout_seconds", "retry_seconds"):
        _positive(f"webhooks.{name}", getattr(cfg.webhooks, name))
    if cfg.webhooks.batch_size > 500:
        raise ConfigError(f"webhooks.batch_size: at most 500 (Mailtrap's limit), got {cfg.webhooks.batch_size}")
    if cfg.webhooks.flush_seconds < 0 or cfg.webhooks.retry_limit < 0:
        raise ConfigError("webhooks.flush_seconds and webhooks.retry_limit: must not be negative")
    if cfg.outbox.lease_seconds <= cfg.webhooks.timeout_seconds:
        raise ConfigError("outbox.lease_seconds: must be longer than webhooks.timeout_seconds")
    if cfg.maillog.format not in ("text", "json"):
        raise ConfigError(f"maillog.format: must be 'text' or 'json', got {cfg.maillog.format!r}")
    _validate_events(cfg)
    if not cfg.server.hostname or any(c in cfg.server.hostname for c in " \r\n\t"):
        raise ConfigError(f"server.hostname: invalid host name {cfg.server.hostname!r}")
    if any(c in cfg.http.public_host for c in " \r\n\t/<>@?#"):
        raise ConfigError(f"http.public_host: expected host or host:port, got {cfg.http.public_host!r}")
    for i, addr in enumerate(cfg.server.proxy_protocol_from):
        try:
            ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise ConfigError(f"server.proxy_protocol_from[{i}]: not an IP address or network: {addr!r}") from None
    proxied = [lst for lst in cfg.smtp.listeners if lst.proxy_protocol]
    if proxied and not cfg.server.proxy_protocol_from:
        raise ConfigError("smtp.listeners: proxy_protocol = true needs server.proxy_protocol_from (trusted proxies)")
    if cfg.server.proxy_protocol_from and not proxied:
        raise ConfigError("server.proxy_protocol_from: no listener has proxy_protocol = true")


def _validate_http(cfg: Config, taken: set[tuple[str, int]]) -> None:
    for i, lst in enumerate(cfg.http.listeners):
        key = f"http.listeners[{i}]"
        _port(f"{key}.port", lst.port)
        if lst.stream not in HTTP_STREAMS:
            raise ConfigError(f"{key}.stream: must be one of {', '.join(HTTP_STREAMS)}, got {lst.stream!r}")
        if (lst.address, lst.port) in taken:
            raise ConfigError(f"{key}: {lst.address}:{lst.port} is listed twice")
        taken.add((lst.address, lst.port))
    for name in ("max_request_bytes", "rate_limit_requests", "rate_limit_window_seconds",
                 "keepalive_timeout_seconds"):
        _positive(f"http.{name}", getattr(cfg.http, name))
    if cfg.http.token_cache_seconds < 0:
        raise ConfigError(f"http.token_cache_seconds: must not be negative, got {cfg.http.token_cache_seconds}")


def _validate_events(cfg: Config) -> None:
    """Plans, notifications, retention and dashboard sessions."""
    for name, plan in cfg.plans.items():
        key = f"plans.{name}"
        if plan.monthly_messages < 0:
            raise ConfigError(f"{key}.monthly_messages: must be 0 or more, got {plan.monthly_messages}")
        if not 0 < plan.message_size <= cfg.limits.message_size_cap:
            raise ConfigError(f"{key}.message_size: must be between 1 and limits.message_size_cap "
                              f"({cfg.limits.message_size_cap}), got {plan.message_size}")
        if any(not 0 < t <= 100 for t in plan.alert_thresholds) or len(set(plan.alert_thresholds)) != len(
                plan.alert_thresholds):
            raise ConfigError(f"{key}.alert_thresholds: distinct percentages between 1 and 100, "
                              f"got {plan.alert_thresholds}")
    sender = cfg.notifications.from_
    local, at, domain = sender.rpartition("@")
    if sender and (not at or not local or not domain or any(c in sender for c in " <>\r\n\t,;")):
        raise ConfigError(f"notifications.from: not an email address: {sender!r}")
    for name in ("raw_message_days", "log_days"):
        if getattr(cfg.retention, name) < 0:
            raise ConfigError(f"retention.{name}: must be 0 (keep) or more, got {getattr(cfg.retention, name)}")
    _positive("retention.interval_seconds", cfg.retention.interval_seconds)
    for name in ("session_idle_seconds", "session_max_seconds"):
        _positive(f"dashboard.{name}", getattr(cfg.dashboard, name))


def check_files(cfg: Config) -> None:
    """Checks that need the file system; run at start of commands that serve."""
    for key in ("cert_file", "key_file", "ecdsa_cert_file", "ecdsa_key_file"):
        value = getattr(cfg.tls, key)
        if value and not cfg.path(value).is_file():
            raise ConfigError(f"tls.{key}: file not found: {cfg.path(value)}")
    if cfg.delivery.tls_ca_file and not cfg.path(cfg.delivery.tls_ca_file).is_file():
        raise ConfigError(f"delivery.tls_ca_file: file not found: {cfg.path(cfg.delivery.tls_ca_file)}")


def redacted(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data, secrets replaced."""
    out: dict[str, Any] = {}
    for section in SECTIONS:
        value = getattr(cfg, section)
        if isinstance(value, dict):  # [plans.<name>]
            out[section] = {k: dataclasses.asdict(v) for k, v in value.items()}
            continue
        values = {key_name(k): v for k, v in dataclasses.asdict(value).items()}
        for key in values:
            if (section, key) in SECRET_KEYS and values[key]:
                values[key] = _redact_dsn(values[key])
        out[section] = values
    return out


def _redact_dsn(dsn: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<redacted>"
    if parts.password is None:
        return dsn if "password" not in dsn else "<redacted>"
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
