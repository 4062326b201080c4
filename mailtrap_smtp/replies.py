"""THE table of SMTP replies: every reply the service sends is defined here, once, and used by name.

Mailtrap's documented replies (MAILTRAP_COMPAT.md §3) are reproduced byte for byte. The rest use
RFC 5321 §4.2 codes and RFC 3463 enhanced status codes. Nothing else in the code base writes reply
text; code and tests refer to replies by name (`replies.AUTH_INVALID`, `REPLIES["AUTH_INVALID"]`).
No reply ever carries exception text or client-supplied bytes, except the few marked *formatted*,
whose placeholders are filled with values the server generated itself (ids, numbers, host name).
"""

from __future__ import annotations

from dataclasses import dataclass

from .outcomes import Outcome


@dataclass(frozen=True)
class Reply:
    name: str
    code: int
    enhanced: str  # "" for replies that carry no enhanced status code (220 greeting, 334, EHLO)
    text: str

    @property
    def is_error(self) -> bool:
        return self.code >= 400

    def format(self, **values: object) -> Reply:
        """A copy with placeholders filled (only server-generated values are ever passed)."""
        return Reply(self.name, self.code, self.enhanced, self.text.format(**values))

    @property
    def line(self) -> str:
        """The reply as one line without CRLF, e.g. `535 5.7.0 Monthly messages limit reached`."""
        return f"{self.code} {self.enhanced} {self.text}" if self.enhanced else f"{self.code} {self.text}"

    def wire(self) -> bytes:
        return self.line.encode("ascii") + b"\r\n"


_TABLE: list[tuple[str, int, str, str]] = [
    # --- connection ---
    ("GREETING", 220, "", "{hostname} ESMTP mailtrap-smtp"),
    ("BYE", 221, "2.0.0", "Bye"),
    ("TOO_MANY_CONNECTIONS_IP", 421, "4.7.0", "Too many connections from your IP address"),
    ("CONNECTION_RATE_IP", 421, "4.7.0", "Too many new connections from your IP address: try again later"),
    ("PROXY_IN_SESSION", 421, "4.7.0", "PROXY header inside the session: closing connection"),
    ("SHUTTING_DOWN", 421, "4.3.2", "Service shutting down"),
    ("IDLE_TIMEOUT", 421, "4.4.2", "Timeout: closing connection"),
    ("SESSION_DEADLINE", 421, "4.4.2", "Session time limit exceeded: closing connection"),
    ("DATA_TOO_SLOW", 421, "4.4.2", "Data transfer too slow: closing connection"),
    ("TOO_MANY_ERRORS", 421, "4.7.0", "Too many errors: closing connection"),
    ("TOO_MANY_MESSAGES", 421, "4.7.0", "Too many messages in this connection"),
    ("TOO_MANY_JUNK_COMMANDS", 421, "4.7.0", "Too many NOOP, RSET, VRFY or HELP commands: closing connection"),
    ("NON_SMTP_COMMAND", 221, "2.7.0", "Error: not an SMTP command: closing connection"),
    ("IMPROPER_PIPELINING", 554, "5.5.0", "Improper use of SMTP command pipelining: closing connection"),
    # --- generic command handling ---
    ("RESET_OK", 250, "2.0.0", "Reset state"),
    ("NOOP_OK", 250, "2.0.0", "Ok"),
    ("HELP", 214, "2.0.0", "See RFC 5321"),
    ("VRFY", 252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"),
    ("LINE_TOO_LONG", 500, "5.5.2", "Line too long"),
    ("UNKNOWN_COMMAND", 500, "5.5.1", "Command not recognized"),
    ("SYNTAX", 501, "5.5.2", "Syntax error"),
    ("BAD_PARAMETER", 501, "5.5.4", "Syntax error in parameters"),
    ("BAD_CHARACTERS", 501, "5.5.2", "Syntax error: invalid characters in command"),
    ("BARE_NEWLINE", 500, "5.5.2", "Syntax error: bare LF received, use CRLF line endings"),
    ("NOT_IMPLEMENTED", 502, "5.5.1", "Command not implemented"),
    ("BDAT_NOT_SUPPORTED", 502, "5.5.1", "BDAT not supported: CHUNKING is not offered"),
    ("BAD_SEQUENCE", 503, "5.5.1", "Bad sequence of commands"),
    ("EHLO_FIRST", 503, "5.5.1", "Send EHLO first"),
    ("HELO_SYNTAX", 501, "5.5.4", "Syntax: EHLO hostname"),
    ("UNSUPPORTED_PARAMETER", 555, "5.5.4", "Unsupported parameter"),
    # --- TLS ---
    ("STARTTLS_READY", 220, "2.0.0", "Ready to start TLS"),
    ("STARTTLS_REQUIRED", 530, "5.7.0", "Must issue a STARTTLS command first"),
    ("TLS_ALREADY_ACTIVE", 503, "5.5.1", "TLS already active"),
    # --- AUTH ---
    ("AUTH_CHALLENGE_EMPTY", 334, "", ""),
    ("AUTH_CHALLENGE_USERNAME", 334, "", "VXNlcm5hbWU6"),
    ("AUTH_CHALLENGE_PASSWORD", 334, "", "UGFzc3dvcmQ6"),
    ("AUTH_OK", 235, "2.7.0", "Authentication successful"),
    ("AUTH_INVALID", 535, "5.7.8", "Authentication credentials invalid"),
    ("AUTH_TEMPORARY_FAILURE", 454, "4.7.0", "Temporary authentication failure"),
    ("AUTH_REQUIRED", 530, "5.7.1", "Authentication required"),
    ("AUTH_ALREADY", 503, "5.5.1", "Already authenticated"),
    ("AUTH_MECHANISM", 504, "5.5.4", "Unrecognized authentication mechanism"),
    ("AUTH_CANCELLED", 501, "5.7.0", "Authentication cancelled"),
    ("AUTH_BAD_BASE64", 501, "5.5.2", "Cannot decode response"),
    ("AUTH_BAD_IDENTITY", 501, "5.5.2", "Invalid characters in authentication identity"),
    ("AUTH_TOO_MANY_FAILURES", 421, "4.7.0", "Too many authentication failures: closing connection"),
    ("AUTH_IP_BLOCKED", 421, "4.7.0", "Too many authentication failures from your IP address"),
    ("QUOTA_EXCEEDED", 535, "5.7.0", "Monthly messages limit reached"),
    ("TOO_MANY_CONNECTIONS_ACCOUNT", 535, "5.7.8", "Too many connections per account"),
    # --- MAIL ---
    ("SENDER_OK", 250, "2.1.0", "Ok"),
    ("NESTED_MAIL", 503, "5.5.1", "Sender already specified"),
    ("SENDER_SYNTAX", 501, "5.1.7", "Bad sender address syntax"),
    ("SENDER_DOMAIN_NOT_ALLOWED", 550, "5.7.1", "Sending from domain is not allowed"),
    ("SIZE_EXCEEDED", 552, "5.3.4", "Message size exceeds fixed maximum message size"),
    ("NON_ASCII_ADDRESS", 553, "5.6.7", "Non-ASCII addresses are not supported"),
    # RFC 6531 §3.5: a non-ASCII path in a transaction that did not declare SMTPUTF8 (MAIL or RCPT).
    ("SMTPUTF8_REQUIRED", 553, "5.6.7", "Non-ASCII address requires SMTPUTF8: use MAIL FROM:<...> SMTPUTF8"),
    ("SENDER_NOT_UTF8", 501, "5.1.7", "Bad sender address syntax: not valid UTF-8"),
    # RFC 5321 §4.5.3.1: 64 octets before the @, 256 in the path, counted in octets of UTF-8.
    ("SENDER_TOO_LONG", 501, "5.1.7", "Sender address too long: at most 64 octets before the @ and 254 in all"),
    # --- RCPT ---
    ("RECIPIENT_OK", 250, "2.1.5", "Ok"),
    ("NEED_MAIL", 503, "5.5.1", "Need MAIL command"),
    ("RECIPIENT_SYNTAX", 501, "5.1.3", "Bad recipient address syntax"),
    ("RECIPIENT_NOT_UTF8", 501, "5.1.3", "Bad recipient address syntax: not valid UTF-8"),
    ("RECIPIENT_TOO_LONG", 501, "5.1.3",
     "Recipient address too long: at most 64 octets before the @ and 254 in all"),
    ("TOO_MANY_RECIPIENTS", 452, "4.5.3", "Too many recipients"),
    # --- DATA ---
    ("NEED_RCPT", 503, "5.5.1", "Need RCPT command"),
    ("START_DATA", 354, "", "End data with <CR><LF>.<CR><LF>"),
    ("QUEUED", 250, "2.0.0", "Ok: queued as {message_id}"),
    ("FROM_HEADER_MISMATCH", 550, "5.7.1", "From: Header does not match the sender's domain"),
    ("FROM_HEADER_COUNT", 550, "5.6.0", "Message must have exactly one From: header"),
    ("IDEMPOTENCY_KEY_INVALID", 550, "5.6.0", "X-Idempotency-Key must be 1 to 256 printable ASCII characters"),
    ("IDEMPOTENCY_IN_FLIGHT", 451, "4.5.0", "A message with this X-Idempotency-Key is still being accepted"),
    ("BARE_LINE_ENDING", 550, "5.6.0", "Message contains bare CR, bare LF or NUL: use CRLF line endings"),
    ("TEXT_LINE_TOO_LONG", 550, "5.5.2", "Line too long: at most 998 characters per line"),
    # RFC 6532 §3: the header of internationalised mail is UTF-8 (RFC 3629), nothing else. X.6.0
    # (RFC 3463 §3.7, "other or undefined media error"), like the other refusals of the content:
    # X.6.7 is registered for non-ASCII addresses, X.6.9 for a UTF-8 message a later hop cannot take.
    ("HEADER_NOT_UTF8", 550, "5.6.0", "Message header is not valid UTF-8"),
    ("TEMPORARY_FAILURE", 451, "4.3.0", "Temporary failure: please try again later"),
    # --- BDAT (RFC 3030 CHUNKING) ---
    ("BDAT_CHUNK_OK", 250, "2.0.0", "Ok: {size} octets received"),  # formatted: the parsed chunk size
    ("BDAT_BAD_SIZE", 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]: unreadable chunk size, closing connection"),
    ("BDAT_SYNTAX", 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]"),
    ("DATA_AFTER_BDAT", 503, "5.5.1", "DATA cannot follow BDAT in the same transaction"),
    # --- inbound listener (bounces and complaints to VERP return paths) ---
    ("INBOUND_NO_SUCH_USER", 550, "5.1.1", "No such user here"),
    ("INBOUND_NO_AUTH", 502, "5.5.1", "AUTH not available on this server"),
    ("INBOUND_ACCEPTED", 250, "2.0.0", "Ok: report received"),
    ("INBOUND_BUSY", 421, "4.3.2", "Too many connections: try again later"),
    # RFC 8689 §2: REQUIRETLS only on a TLS-protected session (X.7.10 "encryption needed", RFC 5248).
    ("REQUIRETLS_WITHOUT_TLS", 530, "5.7.10", "REQUIRETLS needs a TLS-protected session: issue STARTTLS first"),
]

REPLIES: dict[str, Reply] = {name: Reply(name, code, enh, text) for name, code, enh, text in _TABLE}

GREETING = REPLIES["GREETING"]
BYE = REPLIES["BYE"]
TOO_MANY_CONNECTIONS_IP = REPLIES["TOO_MANY_CONNECTIONS_IP"]
CONNECTION_RATE_IP = REPLIES["CONNECTION_RATE_IP"]
PROXY_IN_SESSION = REPLIES["PROXY_IN_SESSION"]
SHUTTING_DOWN = REPLIES["SHUTTING_DOWN"]
IDLE_TIMEOUT = REPLIES["IDLE_TIMEOUT"]
SESSION_DEADLINE = REPLIES["SESSION_DEADLINE"]
DATA_TOO_SLOW = REPLIES["DATA_TOO_SLOW"]
TOO_MANY_ERRORS = REPLIES["TOO_MANY_ERRORS"]
TOO_MANY_MESSAGES = REPLIES["TOO_MANY_MESSAGES"]
TOO_MANY_JUNK_COMMANDS = REPLIES["TOO_MANY_JUNK_COMMANDS"]
NON_SMTP_COMMAND = REPLIES["NON_SMTP_COMMAND"]
IMPROPER_PIPELINING = REPLIES["IMPROPER_PIPELINING"]
RESET_OK = REPLIES["RESET_OK"]
NOOP_OK = REPLIES["NOOP_OK"]
HELP = REPLIES["HELP"]
VRFY = REPLIES["VRFY"]
LINE_TOO_LONG = REPLIES["LINE_TOO_LONG"]
UNKNOWN_COMMAND = REPLIES["UNKNOWN_COMMAND"]
SYNTAX = REPLIES["SYNTAX"]
BAD_PARAMETER = REPLIES["BAD_PARAMETER"]
BAD_CHARACTERS = REPLIES["BAD_CHARACTERS"]
BARE_NEWLINE = REPLIES["BARE_NEWLINE"]
NOT_IMPLEMENTED = REPLIES["NOT_IMPLEMENTED"]
BDAT_NOT_SUPPORTED = REPLIES["BDAT_NOT_SUPPORTED"]
BAD_SEQUENCE = REPLIES["BAD_SEQUENCE"]
EHLO_FIRST = REPLIES["EHLO_FIRST"]
HELO_SYNTAX = REPLIES["HELO_SYNTAX"]
UNSUPPORTED_PARAMETER = REPLIES["UNSUPPORTED_PARAMETER"]
STARTTLS_READY = REPLIES["STARTTLS_READY"]
STARTTLS_REQUIRED = REPLIES["STARTTLS_REQUIRED"]
TLS_ALREADY_ACTIVE = REPLIES["TLS_ALREADY_ACTIVE"]
AUTH_CHALLENGE_EMPTY = REPLIES["AUTH_CHALLENGE_EMPTY"]
AUTH_CHALLENGE_USERNAME = REPLIES["AUTH_CHALLENGE_USERNAME"]
AUTH_CHALLENGE_PASSWORD = REPLIES["AUTH_CHALLENGE_PASSWORD"]
AUTH_OK = REPLIES["AUTH_OK"]
AUTH_INVALID = REPLIES["AUTH_INVALID"]
AUTH_TEMPORARY_FAILURE = REPLIES["AUTH_TEMPORARY_FAILURE"]
AUTH_REQUIRED = REPLIES["AUTH_REQUIRED"]
AUTH_ALREADY = REPLIES["AUTH_ALREADY"]
AUTH_MECHANISM = REPLIES["AUTH_MECHANISM"]
AUTH_CANCELLED = REPLIES["AUTH_CANCELLED"]
AUTH_BAD_BASE64 = REPLIES["AUTH_BAD_BASE64"]
AUTH_BAD_IDENTITY = REPLIES["AUTH_BAD_IDENTITY"]
AUTH_TOO_MANY_FAILURES = REPLIES["AUTH_TOO_MANY_FAILURES"]
AUTH_IP_BLOCKED = REPLIES["AUTH_IP_BLOCKED"]
QUOTA_EXCEEDED = REPLIES["QUOTA_EXCEEDED"]
TOO_MANY_CONNECTIONS_ACCOUNT = REPLIES["TOO_MANY_CONNECTIONS_ACCOUNT"]
SENDER_OK = REPLIES["SENDER_OK"]
NESTED_MAIL = REPLIES["NESTED_MAIL"]
SENDER_SYNTAX = REPLIES["SENDER_SYNTAX"]
SENDER_DOMAIN_NOT_ALLOWED = REPLIES["SENDER_DOMAIN_NOT_ALLOWED"]
SIZE_EXCEEDED = REPLIES["SIZE_EXCEEDED"]
NON_ASCII_ADDRESS = REPLIES["NON_ASCII_ADDRESS"]
SMTPUTF8_REQUIRED = REPLIES["SMTPUTF8_REQUIRED"]
SENDER_NOT_UTF8 = REPLIES["SENDER_NOT_UTF8"]
SENDER_TOO_LONG = REPLIES["SENDER_TOO_LONG"]
RECIPIENT_OK = REPLIES["RECIPIENT_OK"]
NEED_MAIL = REPLIES["NEED_MAIL"]
RECIPIENT_SYNTAX = REPLIES["RECIPIENT_SYNTAX"]
RECIPIENT_NOT_UTF8 = REPLIES["RECIPIENT_NOT_UTF8"]
RECIPIENT_TOO_LONG = REPLIES["RECIPIENT_TOO_LONG"]
TOO_MANY_RECIPIENTS = REPLIES["TOO_MANY_RECIPIENTS"]
NEED_RCPT = REPLIES["NEED_RCPT"]
START_DATA = REPLIES["START_DATA"]
QUEUED = REPLIES["QUEUED"]
FROM_HEADER_MISMATCH = REPLIES["FROM_HEADER_MISMATCH"]
FROM_HEADER_COUNT = REPLIES["FROM_HEADER_COUNT"]
IDEMPOTENCY_KEY_INVALID = REPLIES["IDEMPOTENCY_KEY_INVALID"]
IDEMPOTENCY_IN_FLIGHT = REPLIES["IDEMPOTENCY_IN_FLIGHT"]
BARE_LINE_ENDING = REPLIES["BARE_LINE_ENDING"]
TEXT_LINE_TOO_LONG = REPLIES["TEXT_LINE_TOO_LONG"]
HEADER_NOT_UTF8 = REPLIES["HEADER_NOT_UTF8"]
TEMPORARY_FAILURE = REPLIES["TEMPORARY_FAILURE"]
BDAT_CHUNK_OK = REPLIES["BDAT_CHUNK_OK"]
BDAT_BAD_SIZE = REPLIES["BDAT_BAD_SIZE"]
BDAT_SYNTAX = REPLIES["BDAT_SYNTAX"]
DATA_AFTER_BDAT = REPLIES["DATA_AFTER_BDAT"]
INBOUND_NO_SUCH_USER = REPLIES["INBOUND_NO_SUCH_USER"]
INBOUND_NO_AUTH = REPLIES["INBOUND_NO_AUTH"]
INBOUND_ACCEPTED = REPLIES["INBOUND_ACCEPTED"]
INBOUND_BUSY = REPLIES["INBOUND_BUSY"]
REQUIRETLS_WITHOUT_TLS = REPLIES["REQUIRETLS_WITHOUT_TLS"]

# How the SMTP adapter answers each use-case outcome (tests/test_outcomes.py checks it is complete).
OUTCOME_REPLIES: dict[Outcome, Reply] = {
    Outcome.SIZE_EXCEEDED: SIZE_EXCEEDED,
    Outcome.BARE_LINE_ENDING: BARE_LINE_ENDING,
    Outcome.TEXT_LINE_TOO_LONG: TEXT_LINE_TOO_LONG,
    Outcome.HEADER_NOT_UTF8: HEADER_NOT_UTF8,
    Outcome.FROM_HEADER_MISMATCH: FROM_HEADER_MISMATCH,
    Outcome.FROM_HEADER_COUNT: FROM_HEADER_COUNT,
    Outcome.SENDER_DOMAIN_NOT_ALLOWED: SENDER_DOMAIN_NOT_ALLOWED,
    Outcome.QUOTA_EXCEEDED: QUOTA_EXCEEDED,
    Outcome.TEMPORARILY_UNAVAILABLE: TEMPORARY_FAILURE,
    # A real token without sending rights on this listener (other stream, or a read-only token):
    # Mailtrap's 535, the same as a wrong token's.
    Outcome.NOT_PERMITTED: AUTH_INVALID,
    Outcome.IDEMPOTENCY_KEY_INVALID: IDEMPOTENCY_KEY_INVALID,
    Outcome.IDEMPOTENCY_IN_FLIGHT: IDEMPOTENCY_IN_FLIGHT,
    Outcome.CREDENTIAL_INVALID: AUTH_INVALID,
    Outcome.CREDENTIAL_UNKNOWN: AUTH_INVALID,
    Outcome.AUTH_UNAVAILABLE: AUTH_TEMPORARY_FAILURE,
    Outcome.TOO_MANY_CONNECTIONS: TOO_MANY_CONNECTIONS_ACCOUNT,
}
