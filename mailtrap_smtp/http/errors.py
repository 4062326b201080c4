"""Every error the API answers with: its shapes, and THE table from use-case outcomes to HTTP.

Two shapes, as Mailtrap has them (MAILTRAP_COMPAT.md §2.6):

* send paths (`/api/send`, `/api/batch`, …): `{"success": false, "errors": ["…", …]}`, always with
  an `errors` list (Python SDK ≤ 2.1 reads `data["errors"]` unconditionally);
* management paths (`/api/accounts…`, `/api/domains…`): `{"error": "…"}` for 401/404 and
  `{"errors": {field: ["…"]}}` for 422.

`OUTCOMES` maps each refusal a use case can end with (`outcomes.Rejected`: authentication,
submission) to a status and the text clients see on a send path; `for_manage_auth` answers a refused
token on a management path, `REFUSALS` a refused management operation (`core.refusal.Refused`) by
its kind; the texts Mailtrap documents are reproduced exactly. Nothing else in this package
writes error text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.refusal import Kind, Refused
from ..outcomes import Outcome


@dataclass(frozen=True)
class SendError:
    """An error on a send path: status + the `errors` list."""

    status: int
    messages: tuple[str, ...]
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"success": False, "errors": list(self.messages)}


def send_error(status: int, *messages: str) -> SendError:
    return SendError(status, messages)


# --- send paths: adapter-level refusals (before any use case runs) ---
UNAUTHORIZED = send_error(401, "Unauthorized")
FORBIDDEN = send_error(403, "Forbidden")
DOMAIN_NOT_VERIFIED = send_error(403, "Domain is not verified")
NOT_FOUND = send_error(404, "Not Found")
METHOD_NOT_ALLOWED = send_error(405, "Method Not Allowed")
UNSUPPORTED_MEDIA_TYPE = send_error(415, "Content-Type must be application/json")
INVALID_JSON = send_error(400, "Invalid JSON in request body")
BODY_NOT_OBJECT = send_error(400, "Request body must be a JSON object")
REQUEST_TOO_LARGE = send_error(413, "Request body too large")
RATE_LIMITED = send_error(429, "Rate limit exceeded")
AUTH_BLOCKED = send_error(429, "Too many authentication failures")  # the per-IP brake (smtp/peers.py)
IDEMPOTENCY_KEY_INVALID = send_error(400, "Idempotency-Key must be 1 to 256 printable ASCII characters")
IDEMPOTENCY_IN_FLIGHT = send_error(409, "A request with this Idempotency-Key is still in progress")
TEMPLATE_NOT_FOUND = send_error(400, "'template_uuid' does not match any template")
INTERNAL = send_error(500, "Internal server error")

# THE table: use-case outcome (outcomes.Rejected) → what an API client gets.
_UNAVAILABLE = send_error(503, "Service temporarily unavailable, please try again later")
OUTCOMES: dict[Outcome, SendError] = {
    Outcome.SIZE_EXCEEDED: send_error(413, "Message size exceeds fixed maximum message size"),
    Outcome.BARE_LINE_ENDING: send_error(400, "Message contains bare CR, bare LF or NUL"),
    Outcome.TEXT_LINE_TOO_LONG: send_error(400, "Line too long: at most 998 characters per line"),
    # The API writes its header from JSON text, so only a bug would reach it; mapped all the same.
    Outcome.HEADER_NOT_UTF8: send_error(400, "Message header is not valid UTF-8"),
    # The builder writes From: itself from `from`, whose domain was checked first: a mismatch here
    # means the domain stopped being sendable in between, which the client sees as at the check.
    Outcome.FROM_HEADER_MISMATCH: UNAUTHORIZED,
    Outcome.FROM_HEADER_COUNT: send_error(400, "Message must have exactly one From: header"),
    Outcome.SENDER_DOMAIN_NOT_ALLOWED: UNAUTHORIZED,
    Outcome.NOT_PERMITTED: UNAUTHORIZED,  # the token may not send on this stream (COMPAT §2.6: 401)
    Outcome.IDEMPOTENCY_KEY_INVALID: send_error(400, "X-Idempotency-Key must be 1 to 256 printable ASCII characters"),
    Outcome.IDEMPOTENCY_IN_FLIGHT: send_error(409, "A message with this X-Idempotency-Key is still being accepted"),
    Outcome.QUOTA_EXCEEDED: send_error(403, "Monthly messages limit reached"),
    Outcome.TEMPORARILY_UNAVAILABLE: _UNAVAILABLE,
    # Token look-up (auth.Authenticator); QUOTA_EXCEEDED and NOT_PERMITTED are above.
    Outcome.CREDENTIAL_INVALID: UNAUTHORIZED,
    Outcome.CREDENTIAL_UNKNOWN: UNAUTHORIZED,
    Outcome.AUTH_UNAVAILABLE: _UNAVAILABLE,
    # SMTP's per-account session cap: the API takes no session slots, so only a bug reaches it.
    Outcome.TOO_MANY_CONNECTIONS: send_error(429, "Too many connections per account"),
}


def for_outcome(outcome: Outcome) -> SendError:
    """The error for a use-case outcome; an unmapped one is a bug, answered as an internal error."""
    return OUTCOMES.get(outcome, INTERNAL)


@dataclass(frozen=True)
class ManageError:
    """An error on a management path, in Mailtrap's management shape."""

    status: int
    payload: Any

    def body(self) -> dict[str, Any]:
        return dict(self.payload)


MANAGE_UNAUTHORIZED = ManageError(401, {"error": "Incorrect API token"})
MANAGE_FORBIDDEN = ManageError(403, {"errors": "Account access forbidden"})
MANAGE_NOT_FOUND = ManageError(404, {"error": "Not Found"})
MANAGE_METHOD_NOT_ALLOWED = ManageError(405, {"error": "Method Not Allowed"})
MANAGE_BAD_REQUEST = ManageError(400, {"error": "Bad Request"})
MANAGE_RATE_LIMITED = ManageError(429, {"errors": "Rate limit exceeded"})
MANAGE_AUTH_BLOCKED = ManageError(429, {"errors": "Too many authentication failures"})
MANAGE_INTERNAL = ManageError(500, {"error": "Internal server error"})
MANAGE_PAGE_OUT_OF_RANGE = ManageError(422, {"errors": "token is out of range"})  # paginated templates


MANAGE_LINK_INVALID = ManageError(403, {"error": "Link expired or invalid"})  # a raw-message URL


def for_manage_auth(outcome: Outcome) -> ManageError:
    """A management path's answer to a refused token: 500 when it could not be looked up, else 401
    (management look-ups do not send, so NOT_PERMITTED and QUOTA_EXCEEDED do not arise)."""
    return MANAGE_INTERNAL if outcome is Outcome.AUTH_UNAVAILABLE else MANAGE_UNAUTHORIZED


def manage_missing(name: str) -> ManageError:
    """400 for a required query parameter that is absent (MAILTRAP_COMPAT §9 item 34)."""
    return ManageError(400, {"error": f"Missing required parameter: {name}"})


def manage_invalid(fields: Mapping[str, list[str]]) -> ManageError:
    """422 with per-field messages, e.g. {"errors": {"domain_name": ["can't be blank"]}}."""
    return ManageError(422, {"errors": dict(fields)})


# THE table for a refused management operation (core.refusal.Refused), by its kind, never by its
# text; `field` is the request field a 422 is about. A name already taken is Mailtrap's (Rails')
# uniqueness text.
REFUSALS: dict[Kind, Callable[[Refused, str], ManageError]] = {
    Kind.NOT_FOUND: lambda e, field: MANAGE_NOT_FOUND,
    Kind.CONFLICT: lambda e, field: manage_invalid({field: ["has already been taken"]}),
    Kind.INVALID: lambda e, field: manage_invalid({field: [str(e)]}),
    Kind.FORBIDDEN: lambda e, field: MANAGE_FORBIDDEN,
}


def for_refusal(e: Refused, field: str) -> ManageError:
    return REFUSALS[e.kind](e, field)


class ApiError(Exception):
    """Raised by routes and dependencies; the app's handler writes `error` as the response."""

    def __init__(self, error: SendError | ManageError, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(error.status)
        self.error = error
        self.headers = dict(headers or {})
