"""One-click unsubscribe headers (RFC 8058, RFC 2369 §3.2) for bulk messages: which messages get
them, and their bytes.

Why only messages with ONE envelope recipient: the URL must name the recipient to be removed
(RFC 8058 §3.1: "enough information to identify the mail recipient"), and the one-click POST body
is fixed to `List-Unsubscribe=One-Click` (§3.1), so nothing in the request can say who clicked.
DKIM must cover both headers (§4; `dkim/signer.py` signs them), and we sign once, at acceptance
(`submission.py`: nothing touches the bytes after signing), so the stored message holds one
header for all its recipients. A per-message token would let any one recipient of a shared
message unsubscribe the others; a per-recipient header would need one signed copy per recipient.
So a bulk message gets the headers only when it has exactly one recipient (which is how bulk mail
is sent: the send API and SMTP clients send one message per subscriber); a bulk message to several
recipients is sent without them.

The token names the message and the recipient's public id (`recipients.public_id`, known before
signing, unlike the row id) with the VERP key and MAC (`delivery/verp.py`, its own label). A
message that already carries its own `List-Unsubscribe` keeps it: two would leave the receiver to
guess (RFC 2369 §2 expects one field), and the client chose its own.
"""

from __future__ import annotations

import uuid

from .config import Config
from .delivery import return_path, verp

POST_VALUE = "List-Unsubscribe=One-Click"  # the one body RFC 8058 §3.1 defines
PATH = "/unsubscribe/"


class ListUnsubscribe:
    """Makes the headers; the VERP key file is read once, when first needed."""

    def __init__(self, cfg: Config, key: bytes | None = None) -> None:
        self._cfg = cfg
        self._key = key

    def key(self) -> bytes:
        if self._key is None:
            self._key = return_path.load_key(self._cfg)
        return self._key

    def url(self, message_id: uuid.UUID, recipient: uuid.UUID) -> str:
        token = verp.unsubscribe_token(self.key(), message_id, recipient)
        return f"https://{self._cfg.http_public_host}{PATH}{token}"

    def headers(self, message_id: uuid.UUID, recipient: uuid.UUID) -> list[bytes]:
        """The two header fields, CRLF-terminated (RFC 2369 §2: the URL in angle brackets)."""
        return [f"List-Unsubscribe: <{self.url(message_id, recipient)}>\r\n".encode("ascii"),
                f"List-Unsubscribe-Post: {POST_VALUE}\r\n".encode("ascii")]


def wanted(stream: str, enabled: bool, recipients: int) -> bool:
    """Whether a message gets the headers (see the module docstring)."""
    return enabled and stream == "bulk" and recipients == 1
