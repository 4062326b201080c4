"""The vocabulary of an outbound TLS outcome: what applied to one delivery attempt, defined once.

One outcome per attempt (delivery/tlspolicy.py makes it), written in three places from these names:
the attempt's event as `details.tls_policy`, the operator's log line (maillog: `tls_policy=`,
`tls_request=`, `tls_failure=`, from `log_fields`), and the metrics
`mts_delivery_tls_policy_total{policy,version}` (sessions opened) and
`mts_delivery_tls_policy_failures_total{policy}` (attempts whose policy could not be met).

Keys of `details.tls_policy`:
* `policy` (`Applied`): what the session was held to;
* `version`: the negotiated TLS version (`TLSv1.3`…), null in clear;
* `request` (`Request`, present when the message asked): REQUIRETLS or `TLS-Required: No` (RFC 8689);
* `failure`: why the policy could not be met (with MTA-STS `testing` and `TLS-Required: No` the
  message was delivered all the same; otherwise it waited or was returned);
* `mode`, `note`, `dane_hosts`: the MTA-STS mode and where its policy came from, the DANE hosts;
* `mx_auth` (REQUIRETLS): how the MX host was authenticated (RFC 8689 §4.2.1 step 2):
  `dnssec`, `mta-sts`, or `route` (the operator's next hop, no MX lookup).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Applied(StrEnum):
    NONE = "none"                    # delivered in clear
    OPPORTUNISTIC = "opportunistic"  # STARTTLS, certificate not verified (RFC 7435)
    REQUIRED = "required"            # the operator's require_tls rules: STARTTLS, verified certificate
    MTA_STS = "mta-sts"              # RFC 8461
    DANE = "dane"                    # RFC 7672
    REQUIRETLS = "requiretls"        # RFC 8689: authenticated MX, verified certificate, REQUIRETLS offered


# The policies whose failure is recorded as such (the others cannot fail: they fall back or wait).
STRICT = frozenset({Applied.MTA_STS, Applied.DANE, Applied.REQUIRETLS})


class Request(StrEnum):
    """What a message asked of the TLS of every hop (`messages.tls_required`)."""

    REQUIRETLS = "requiretls"            # True: RFC 8689 §4.2.1
    TLS_REQUIRED_NO = "tls-required-no"  # False: RFC 8689 §4.2.2


def request_of(tls_required: bool | None) -> Request | None:
    """The `Request` a stored `messages.tls_required` names (None: the message asked nothing):
    what `queue show` and the email log's own extras display."""
    if tls_required is None:
        return None
    return Request.REQUIRETLS if tls_required else Request.TLS_REQUIRED_NO


def log_fields(tls_policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """The operator log's fields of an outcome (None values are left out of the line)."""
    p = tls_policy or {}
    return {"tls_policy": p.get("policy"), "tls_request": p.get("request"), "tls_failure": p.get("failure")}
