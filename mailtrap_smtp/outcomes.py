"""THE vocabulary of refusals a use case can end with, shared by every adapter.

A use case (submission, and the ones that follow it) never knows which front door called it: it
raises `Rejected(Outcome.X)`. Each adapter maps an outcome to its wire form in one table of its
own: the SMTP adapter to a reply of `replies.py` (`replies.OUTCOME_REPLIES`), the HTTP API to a
status and Mailtrap's JSON error text. A test proves that every outcome has a mapping in each table,
so a new outcome cannot reach a client as a generic failure by accident.
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    SIZE_EXCEEDED = "size_exceeded"                      # larger than the account's message size limit
    BARE_LINE_ENDING = "bare_line_ending"                # bare CR, bare LF or NUL in the message
    TEXT_LINE_TOO_LONG = "text_line_too_long"            # a line over 998 characters (RFC 5322 §2.1.1)
    FROM_HEADER_MISMATCH = "from_header_mismatch"        # From: is not on a sending domain of the account
    FROM_HEADER_COUNT = "from_header_count"              # not exactly one From: header (RFC 5322 §3.6)
    SENDER_DOMAIN_NOT_ALLOWED = "sender_domain_not_allowed"  # envelope sender's domain may not send
    QUOTA_EXCEEDED = "quota_exceeded"                    # the monthly limit would be passed
    TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"  # the database did not answer in time; nothing stored
    NOT_PERMITTED = "not_permitted"                      # the token's grant does not allow sending on this stream
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"  # an idempotency key over 256 or non-printable characters
    IDEMPOTENCY_IN_FLIGHT = "idempotency_in_flight"      # the first message with this key is still being accepted


class Rejected(Exception):
    """A use case refused; `outcome` says why, in adapter-neutral terms."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome
