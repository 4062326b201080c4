"""THE vocabulary of refusals a use case can end with, shared by every adapter.

A use case (authentication, submission, and the ones that follow them) never knows which front door
called it: it raises `Rejected(Outcome.X)`. Each adapter maps an outcome to its wire form in one table of its
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
    HEADER_NOT_UTF8 = "header_not_utf8"                  # SMTPUTF8 mail whose header is not UTF-8 (RFC 6532 §3)
    FROM_HEADER_MISMATCH = "from_header_mismatch"        # From: is not on a sending domain of the account
    FROM_HEADER_COUNT = "from_header_count"              # not exactly one From: header (RFC 5322 §3.6)
    SENDER_DOMAIN_NOT_ALLOWED = "sender_domain_not_allowed"  # envelope sender's domain may not send
    QUOTA_EXCEEDED = "quota_exceeded"                    # the monthly limit would be passed
    TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"  # the database did not answer in time; nothing stored
    NOT_PERMITTED = "not_permitted"                      # the token's grant does not allow sending on this stream
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"  # an idempotency key over 256 or non-printable characters
    IDEMPOTENCY_IN_FLIGHT = "idempotency_in_flight"      # the first message with this key is still being accepted
    # Authentication (`auth.Authenticator`); it also ends with NOT_PERMITTED (a valid token whose
    # grant does not cover this door: to the client the same as CREDENTIAL_INVALID, but no guess)
    # and QUOTA_EXCEEDED (the account is at its monthly limit when a sending session starts).
    CREDENTIAL_INVALID = "credential_invalid"            # a known token id with the wrong secret: a guess
    CREDENTIAL_UNKNOWN = "credential_unknown"            # malformed token, or no live credential with its id
    # Apart from TEMPORARILY_UNAVAILABLE because SMTP answers a failed look-up at AUTH with its own
    # reply (RFC 4954 §6: 454 4.7.0), not with the 451 of a transaction.
    AUTH_UNAVAILABLE = "auth_unavailable"                # the token could not be looked up (database)
    TOO_MANY_CONNECTIONS = "too_many_connections"        # the account's sessions are at their cap


class Rejected(Exception):
    """A use case refused; `outcome` says why, in adapter-neutral terms."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome
