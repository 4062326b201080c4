"""The operator's log, like Postfix's mail log: one line per thing that happened to mail.

One line per connection end (peer, TLS version, account, messages, duration, why it closed), per
accepted message (queue id, account, stream, sender, recipient count, size), per refusal (reply
name, account, peer), per AUTH failure, per block of a client (connection cap, connection rate,
AUTH failures), and per delivery attempt (queue id, recipient, MX, reply, TLS version, TLS policy,
what the message asked of TLS and why a policy was not met, delay, status: delivered, deferred,
bounced or expired). Lines go to the `mailtrap_smtp.maillog` logger.

`maillog.format` chooses the shape: "text" (default) is `event key=value ...` through the service's
own log handler; "json" writes one JSON object per line (with `ts`, `event` and the fields) to
stderr, for a log shipper. Never logged: a token, a password, any byte of message content, or
anything a client said that could shape a line (values are quoted, control characters escaped).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

log = logging.getLogger("mailtrap_smtp.maillog")
_json = False


def configure(fmt: str) -> None:
    """Select "text" or "json" (idempotent; called by each service at start)."""
    global _json
    _json = fmt == "json"
    for handler in [h for h in log.handlers if getattr(h, "_maillog", False)]:
        log.removeHandler(handler)
    log.propagate = not _json
    if _json:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._maillog = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.setLevel(logging.INFO)


_PLAIN = re.compile(r'[^\s"=\\\x00-\x1f\x7f-\x9f]+')


def _text_value(value: Any) -> str:
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text)  # quoted, with control characters escaped


def emit(event: str, **fields: Any) -> None:
    """One line; fields whose value is None are left out."""
    if not log.isEnabledFor(logging.INFO):
        return
    kept = {k: v for k, v in fields.items() if v is not None}
    if _json:
        line = json.dumps({"ts": round(time.time(), 3), "event": event, **kept}, default=str)
    else:
        line = " ".join([event, *(f"{k}={_text_value(v)}" for k, v in kept.items())])
    log.info(line)


def connection_end(*, peer: str, tls: str | None, account: str | None, messages: int, duration: float,
                   reason: str) -> None:
    emit("disconnect", peer=peer, tls=tls, account=account, messages=messages,
         duration=round(duration, 3), reason=reason)


def accepted(*, queue_id: Any, account: str, stream: str, sender: str, recipients: int, size: int,
             peer: str) -> None:
    emit("accepted", queue_id=queue_id, account=account, stream=stream, sender=sender,
         recipients=recipients, size=size, peer=peer)


def refused(*, reply: str, code: int, account: str | None, peer: str) -> None:
    emit("refused", reply=reply, code=code, account=account, peer=peer)


def auth_failed(*, reply: str, peer: str) -> None:
    emit("auth_failed", reply=reply, peer=peer)


def blocked(*, peer: str, why: str) -> None:
    """A client turned away for what it did before: connection cap or rate, AUTH failures."""
    emit("blocked", peer=peer, why=why)


def delivery(*, queue_id: Any, recipient: str | None, status: str, reply: str, mx: str | None,
             tls: str | None, delay: float | None, tls_policy: str | None = None, tls_request: str | None = None,
             tls_failure: str | None = None) -> None:
    """`tls_policy`, `tls_request`, `tls_failure`: the attempt's TLS outcome (delivery/tlsoutcome.py)."""
    emit("delivery", queue_id=queue_id, recipient=recipient, status=status, mx=mx, tls=tls,
         tls_policy=tls_policy, tls_request=tls_request, tls_failure=tls_failure,
         delay=None if delay is None else round(delay, 3), reply=reply)
