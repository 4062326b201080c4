"""Every Prometheus metric the service exports, defined once, and the endpoint that exports them.

One process: its own registry on `metrics.listen`. `serve --processes N`: prometheus_client's
multiprocess mode, so the node has ONE scrape endpoint: before the processes start, the parent
points `PROMETHEUS_MULTIPROC_DIR` at an emptied folder (each process then keeps its values in
memory-mapped files there) and serves them summed on `metrics.listen`; the processes serve none.
Gauges say how their values combine (`multiprocess_mode`); a process that ends is marked dead.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

from .outcomes import Outcome

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# --- SMTP front end ---
SMTP_CONNECTIONS = Counter("mts_smtp_connections_total", "SMTP connections accepted", ["listener"])
SMTP_CONNECTIONS_REFUSED = Counter(
    "mts_smtp_connections_refused_total", "SMTP connections refused at connect", ["reason"]
)
SMTP_SESSIONS_ACTIVE = Gauge("mts_smtp_sessions_active", "SMTP sessions currently open",
                             multiprocess_mode="livesum")
TLS_HANDSHAKES = Counter("mts_tls_handshakes_total", "TLS handshakes by outcome", ["outcome"])
AUTH_ATTEMPTS = Counter("mts_auth_attempts_total", "AUTH attempts by outcome", ["outcome"])
# The `outcome` label of a refused AUTH (besides "success" and "ip_blocked"): the labels dashboards
# already know, one for both kinds of wrong token.
AUTH_ATTEMPT_LABELS: dict[Outcome, str] = {
    Outcome.CREDENTIAL_INVALID: "invalid",
    Outcome.CREDENTIAL_UNKNOWN: "invalid",
    Outcome.NOT_PERMITTED: "not_allowed",
    Outcome.QUOTA_EXCEEDED: "quota",
    Outcome.TOO_MANY_CONNECTIONS: "too_many_connections",
    Outcome.AUTH_UNAVAILABLE: "temporary",
}
MESSAGES_ACCEPTED = Counter("mts_messages_accepted_total", "Messages accepted and queued", ["stream"])
RECIPIENTS_ACCEPTED = Counter("mts_recipients_accepted_total", "Envelope recipients accepted", ["stream"])
MESSAGES_REJECTED = Counter("mts_messages_rejected_total", "SMTP rejections by reply name", ["reply"])
ACCEPT_LATENCY = Histogram(
    "mts_accept_latency_seconds", "End of DATA to the 250 reply (checks, signing, commit)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SMTP_SESSIONS_CLOSED = Counter(
    "mts_smtp_sessions_closed_total", "SMTP sessions closed by the server, by reason", ["reason"]
)
SMTP_PIPELINED_DISCARDED = Counter(
    "mts_smtp_starttls_discarded_bytes_total", "Plaintext bytes pipelined behind STARTTLS and discarded"
)

# --- delivery ---
DELIVERY_ATTEMPTS = Counter("mts_delivery_attempts_total", "Delivery attempts by outcome", ["outcome"])
DELIVERY_LATENCY = Histogram("mts_delivery_seconds", "One SMTP transaction to a remote MX")
QUEUE_CLAIMED = Counter("mts_queue_claimed_total", "Recipients claimed by delivery workers")
DELIVERY_CONNECTIONS = Counter(
    "mts_delivery_connections_total", "Outbound SMTP connections by result (tls, plain, failed)", ["result"]
)
DELIVERY_TLS_POLICY = Counter(
    "mts_delivery_tls_policy_total", "Outbound sessions by the TLS policy that applied (none, opportunistic, "
    "required, mta-sts, dane, requiretls: delivery/tlsoutcome.py) and the TLS version (none in clear)",
    ["policy", "version"]
)
DELIVERY_TLS_POLICY_FAILURES = Counter(
    "mts_delivery_tls_policy_failures_total", "Outbound attempts whose TLS policy could not be met (mta-sts, "
    "dane, requiretls), whether the mail then waited, was returned, or went anyway (testing, TLS-Required: No)",
    ["policy"]
)
LEASES_LOST = Counter("mts_delivery_leases_lost_total", "Recipients whose lease another worker took over")

# --- sending domains ---
DOMAIN_CHECKS = Counter("mts_domain_checks_total", "DNS checks of sending domains by result", ["result"])
DOMAINS_FAILING = Gauge("mts_domains_failing", "Verified domains whose DNS records currently fail",
                        multiprocess_mode="livemax")  # set by one process (the rechecker of process 0)

# --- outbox and webhooks ---
OUTBOX_EVENTS = Counter("mts_outbox_events_total", "Events a consumer family finished (cursor moved past)", ["kind"])
OUTBOX_LEASES_LOST = Counter("mts_outbox_leases_lost_total", "Outbox cursors whose lease another process took over")
WEBHOOK_POSTS = Counter("mts_webhook_posts_total", "Webhook POSTs by result (acknowledged, failed)", ["result"])
WEBHOOK_EVENTS = Counter("mts_webhook_events_delivered_total", "Events in acknowledged webhook POSTs")
WEBHOOK_LATENCY = Histogram("mts_webhook_post_seconds", "One webhook POST until its answer (or failure)")
WEBHOOKS_DEACTIVATED = Counter("mts_webhooks_deactivated_total", "Webhooks deactivated after their last retry")

# --- events and their consumers (issue 12) ---
QUOTA_NOTIFICATIONS = Counter(
    "mts_quota_notifications_total", "Quota thresholds crossed, by threshold and whether an email was queued",
    ["threshold", "emailed"],
)
SUPPRESSIONS_CREATED = Counter(
    "mts_suppressions_created_total", "Suppressions created automatically from hard bounces"
)

# --- HTTPS Email API ---
HTTP_REQUESTS = Counter("mts_http_requests_total", "API requests by route, method and status",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "mts_http_request_seconds", "API request latency by route (request received to response)", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)

# --- inbound listener (bounces, complaints) ---
INBOUND_REPORTS = Counter(
    "mts_inbound_reports_total", "Reports received at VERP return paths, by what became of them", ["result"]
)

# --- database and background loops ---
DB_AVAILABLE = Gauge("mts_database_available", "1 while the processes reach PostgreSQL, 0 during an outage",
                     multiprocess_mode="livemin")  # a node is down if any of its processes is
DB_OUTAGES = Counter("mts_database_outages_total", "Outages of PostgreSQL seen by this process")
DB_OUTAGE_SECONDS = Counter("mts_database_outage_seconds_total", "Time spent without PostgreSQL")
DB_RETRIED = Counter(
    "mts_database_retried_total", "Statements retried once on a fresh connection after a dead one", ["reason"]
)
LOOP_ERRORS = Counter("mts_loop_errors_total", "Rounds of a background loop that failed (retried)", ["loop"])


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def serve_process_endpoint(listen: str) -> None:
    """This process's own endpoint, unless a node endpoint serves all processes (multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        return
    host, port = _host_port(listen)
    start_http_server(port, addr=host)


def prepare_multiprocess(directory: Path) -> None:
    """Before the processes start (they inherit the environment): an empty folder for their values."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # a previous run's values would be summed in
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)


def serve_node_endpoint(listen: str, directory: Path) -> None:
    """In the parent: one endpoint with the values of every process of the node."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    host, port = _host_port(listen)
    start_http_server(port, addr=host, registry=registry)


def process_ended(pid: int, directory: Path) -> None:
    """Drop a finished process's live gauges (counters keep counting what it did)."""
    multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
