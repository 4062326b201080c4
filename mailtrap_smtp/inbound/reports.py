"""Read a bounce or a complaint: RFC 3464 DSNs, the plain-text bounces of common MTAs, RFC 5965 ARF.

The one job of this module: bytes of a received report → a typed `Report` saying what kind of
feedback it is (hard bounce, soft bounce, spam complaint), for which original recipient, with the
status code, diagnostic, remote MTA and the bounce category of `delivery/bounces.py`, plus the
addresses in it that may be our VERP return path (the caller verifies their MAC). Anything it
cannot read is `UNPARSEABLE` with a reason, never an exception. Pure: no storage, no network.

Formats, in the order tried:
* RFC 3464 `multipart/report; report-type=delivery-status` (Postfix, Gmail, Outlook/Exchange,
  Sendmail; also `text/delivery-status` and a bare `message/delivery-status` part, which some
  gateways send);
* RFC 5965 `multipart/report; report-type=feedback-report` (ARF: Yahoo, AOL, Microsoft JMRP-style
  complaint loops);
* plain text: qmail's "qmail-send program" bounce (also Yahoo's), Exim's "Mail delivery failed"
  with its `X-Failed-Recipients` header (RFC-less but stable for decades), and Exim's delay warning.
"""

from __future__ import annotations

import email
import email.message
import email.parser
import email.policy
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ..delivery import bounces

# A report is small; whatever a sender nests deeper than this is not a report (and the walk stays
# bounded however the MIME tree is built).
_MAX_PARTS = 64
_MAX_MULTIPARTS = 16
_MAX_DELIMITER_LINES = 256
_MAX_TEXT = 256 * 1024


class Kind(StrEnum):
    BOUNCE = "bounce"            # permanent failure (5.x.x, or Action: failed without a 4.x.x)
    SOFT_BOUNCE = "soft_bounce"  # temporary: Action: delayed, or a 4.x.x status
    SPAM = "spam"                # a complaint (ARF Feedback-Type abuse / fraud / virus / other)
    NOT_FEEDBACK = "not_feedback"  # a well-formed report that reports no failure (delivered, relayed)
    UNPARSEABLE = "unparseable"


@dataclass(frozen=True)
class Report:
    kind: Kind
    format: str                           # "rfc3464", "arf", "qmail", "exim", "exim-delay", or ""
    recipient: str | None = None          # the original recipient the report is about
    status: str | None = None             # enhanced status code, "5.1.1"
    diagnostic: str | None = None         # the remote MTA's words (Diagnostic-Code, "Remote host said")
    remote_mta: str | None = None
    category: str | None = None           # delivery/bounces.py category (bounces only)
    feedback_type: str | None = None      # ARF Feedback-Type
    verp_candidates: tuple[str, ...] = ()  # addresses in the report that may be our return path
    original_message_id: str | None = None
    reason: str = ""                      # why UNPARSEABLE / NOT_FEEDBACK
    extra: dict[str, str] = field(default_factory=dict)


def unparseable(reason: str) -> Report:
    return Report(Kind.UNPARSEABLE, "", reason=reason)


_BOUNDARY = re.compile(rb"boundary\s*=", re.IGNORECASE)


def parse(raw: bytes) -> Report:
    """The report in `raw` (a whole message as received); UNPARSEABLE rather than any exception."""
    # The stdlib parser's cost grows faster than linearly with the nesting of multiparts; a report
    # has two levels or three. Counting boundary parameters first bounds the work on hostile input.
    if len(_BOUNDARY.findall(raw, 0, len(raw))) > _MAX_MULTIPARTS:
        return unparseable(f"more than {_MAX_MULTIPARTS} multipart boundaries")
    if raw.count(b"\n--") > _MAX_DELIMITER_LINES:  # RFC 2046 §5.1.1 delimiter lines start with "--"
        return unparseable(f"more than {_MAX_DELIMITER_LINES} lines starting with '--'")
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as e:  # the parser is lenient, but a hostile input must not crash the listener
        return unparseable(f"not a message: {type(e).__name__}")
    try:
        return _parse_message(msg)
    except RecursionError:
        return unparseable("MIME structure nested too deeply")
    except Exception as e:
        return unparseable(f"malformed report: {type(e).__name__}")


def _parse_message(msg: email.message.Message) -> Report:
    parts = _parts(msg)
    if parts is None:
        return unparseable(f"more than {_MAX_PARTS} MIME parts")
    ctype = msg.get_content_type()
    report_type = (msg.get_param("report-type") or "")
    report_type = report_type.lower() if isinstance(report_type, str) else ""
    if ctype == "multipart/report" and report_type == "feedback-report":
        return _arf(parts)
    status_part = next((p for p in parts if p.get_content_type() in
                        ("message/delivery-status", "text/delivery-status",
                         "message/global-delivery-status")), None)
    if status_part is not None:
        return _rfc3464(status_part, parts)
    if ctype == "multipart/report":
        return unparseable(f"multipart/report of type {report_type or 'none'} without a status part")
    text = _first_text(parts)
    if text is None:
        return unparseable("no text part")
    return _plain(msg, text, parts)


def _parts(msg: email.message.Message) -> list[email.message.Message] | None:
    out: list[email.message.Message] = []
    stack = [msg]
    while stack:
        part = stack.pop()
        out.append(part)
        if len(out) > _MAX_PARTS:
            return None
        # message/rfc822 payloads are lists too: the original's headers are read from it.
        if part.is_multipart() and part.get_content_type() not in (
                "message/delivery-status", "message/feedback-report"):
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, email.message.Message)]))
    return out


def _text_of(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw[:_MAX_TEXT] if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload[:_MAX_TEXT].decode(charset, errors="replace")
    except LookupError:
        return payload[:_MAX_TEXT].decode("utf-8", errors="replace")


def _first_text(parts: list[email.message.Message]) -> str | None:
    for p in parts:
        if p.get_content_type() == "text/plain":
            return _text_of(p)
    return None


def _field_groups(part: email.message.Message) -> list[dict[str, str]]:
    """The header blocks of a delivery-status / feedback-report part (RFC 3464 §2.1, RFC 5965 §3.1)."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):  # the stdlib parses message/delivery-status into header blocks
        for sub in payload:
            if isinstance(sub, email.message.Message):
                blocks.append({k.lower(): _unfold(str(v)) for k, v in sub.items()})
        # ...and message/feedback-report as one message, headers first, maybe a body
        return blocks
    text = _text_of(part)
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        parsed = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(chunk.strip("\r\n") + "\n")
        fields = {k.lower(): _unfold(str(v)) for k, v in parsed.items()}
        if fields:
            blocks.append(fields)
    return blocks


def _unfold(value: str) -> str:
    return " ".join(value.split())


def _typed(value: str | None) -> str | None:
    """The value of an RFC 3464 typed field ("rfc822; a@b", "smtp; 550 ...", "dns; mx.b")."""
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    return (rest if sep else kind).strip() or None


_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")


def _status(value: str | None) -> str | None:
    if not value:
        return None
    m = _STATUS.match(value.split()[0] if value.split() else "")
    return f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}" if m else None


def _category(status: str | None, diagnostic: str | None) -> str:
    """The delivery/bounces.py category of a reported failure (one classifier for the service)."""
    if diagnostic:
        reply = bounces.parse_line(diagnostic)
        if reply.code == 0 and status:  # "smtp; User unknown" with the status elsewhere
            code = 550 if status.startswith("5") else 450
            reply = bounces.parse(code, f"{status} {diagnostic}")
        elif reply.enhanced is None and status:
            reply = bounces.parse(reply.code, f"{status} {reply.text}")
        return bounces.classify(reply)
    if status:
        return bounces.classify(bounces.parse(550 if status.startswith("5") else 450, status))
    return bounces.OTHER


def _original(parts: list[email.message.Message]) -> tuple[tuple[str, ...], str | None]:
    """(VERP candidates, Message-ID) from the original message or headers the report returns."""
    candidates: list[str] = []
    message_id: str | None = None
    for p in parts:
        ctype = p.get_content_type()
        headers: email.message.Message | None = None
        if ctype in ("message/rfc822", "message/global") and p.is_multipart():
            inner = p.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
                headers = inner[0]
        elif ctype == "text/rfc822-headers":
            headers = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(_text_of(p))
        if headers is None:
            continue
        for name in ("Return-Path", "X-Original-Return-Path", "Errors-To"):
            for v in headers.get_all(name, []):
                candidates.append(_unfold(str(v)).strip("<> "))
        if message_id is None and headers.get("Message-ID"):
            message_id = _unfold(str(headers["Message-ID"]))
    return tuple(c for c in candidates if c), message_id


def _rfc3464(status_part: email.message.Message, parts: list[email.message.Message]) -> Report:
    groups = _field_groups(status_part)
    if len(groups) < 2:
        # RFC 3464 §2.1: one per-message block, then at least one per-recipient block.
        per_recipient = [g for g in groups if "final-recipient" in g or "action" in g]
        if not per_recipient:
            return unparseable("delivery-status without a per-recipient block")
        per_message: dict[str, str] = {}
    else:
        per_message, per_recipient = groups[0], groups[1:]
        if "final-recipient" in per_message or "action" in per_message:
            per_message, per_recipient = {}, groups  # a sender that left out the per-message block
    chosen = _choose_recipient(per_recipient)
    if chosen is None:
        return unparseable("no per-recipient block with Final-Recipient and Action")
    action = chosen.get("action", "").strip().lower()
    status = _status(chosen.get("status"))
    diagnostic = _typed(chosen.get("diagnostic-code"))
    candidates, message_id = _original(parts)
    base = Report(
        Kind.UNPARSEABLE, "rfc3464",
        recipient=_typed(chosen.get("original-recipient")) or _typed(chosen.get("final-recipient")),
        status=status, diagnostic=diagnostic,
        remote_mta=_typed(chosen.get("remote-mta")) or _typed(per_message.get("reporting-mta")),
        verp_candidates=candidates, original_message_id=message_id,
    )
    if action not in ("failed", "delayed"):
        if action in ("delivered", "relayed", "expanded"):
            return replace(base, kind=Kind.NOT_FEEDBACK, reason=f"Action: {action}")
        return unparseable(f"unknown Action {action[:40]!r}")
    if status is None and chosen.get("status"):
        return unparseable(f"invalid Status {chosen['status'][:40]!r}")
    if status is not None and status.startswith("2"):
        return replace(base, kind=Kind.NOT_FEEDBACK, reason=f"Action: {action} with status {status}")
    temporary = action == "delayed" or (status is not None and status.startswith("4"))
    return replace(base, kind=Kind.SOFT_BOUNCE if temporary else Kind.BOUNCE,
                   category=_category(status, diagnostic))


def _choose_recipient(blocks: list[dict[str, str]]) -> dict[str, str] | None:
    """The failed recipient if any, else the delayed one, else the first (VERP: one per report)."""
    usable = [b for b in blocks if "final-recipient" in b and "action" in b]
    for action in ("failed", "delayed"):
        for b in usable:
            if b["action"].strip().lower() == action:
                return b
    return usable[0] if usable else None


_COMPLAINT_TYPES = ("abuse", "fraud", "virus", "other")


def _arf(parts: list[email.message.Message]) -> Report:
    fb = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if fb is None:
        return unparseable("feedback-report without a message/feedback-report part")
    groups = _field_groups(fb)
    fields: dict[str, str] = {}
    for g in groups:
        for k, v in g.items():
            fields.setdefault(k, v)
    ftype = fields.get("feedback-type", "").strip().lower()
    if not ftype:
        return unparseable("feedback report without Feedback-Type")  # RFC 5965 §3.1: required
    candidates, message_id = _original(parts)
    omf = fields.get("original-mail-from", "").strip().strip("<>")
    if omf:
        candidates = (omf, *candidates)
    base = Report(
        Kind.SPAM, "arf", feedback_type=ftype,
        recipient=(fields.get("original-rcpt-to") or "").strip("<> ") or None,
        verp_candidates=candidates, original_message_id=message_id,
        extra={k: fields[k] for k in ("user-agent", "source-ip", "reported-domain", "arrival-date")
               if k in fields},
    )
    if ftype not in _COMPLAINT_TYPES:
        # "not-spam" (RFC 6650 §3) and "auth-failure" (RFC 6591) are reports, not complaints.
        return replace(base, kind=Kind.NOT_FEEDBACK, reason=f"Feedback-Type: {ftype[:40]}")
    return base


# --- plain-text bounces ---

_QMAIL = re.compile(r"qmail-send program|I'm afraid I wasn't able to deliver your message|"
                    r"Sorry, we were unable to deliver your message", re.I)
_QMAIL_RCPT = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:\s*$(.*?)(?=^<[^<>\s]+@[^<>\s]+>:\s*$|^--- |\Z)", re.M | re.S)
_REMOTE_SAID = re.compile(r"Remote host said:\s*(.+?)\s*$", re.I | re.M)
_QMAIL_HOST = re.compile(r"^\s*(\S+) does not like recipient", re.I | re.M)
_GIVING_UP = re.compile(r"Giving up on (\S+?)\.?\s*$", re.I | re.M)
_EXIM = re.compile(r"This message was created automatically by mail delivery software", re.I)
_EXIM_DELAY = re.compile(r"has not yet been delivered to one or more of its\s+recipients", re.I)
_EXIM_HOST = re.compile(r"^\s*host\s+(\S+)\s+\[[^\]]*\]", re.I | re.M)
# Exim puts the reply on the next line, or after "host h [ip]:" on the same one.
_EXIM_ERROR = re.compile(r"SMTP error from remote (?:mail server|server|mailer) after [^\n]*?:\s*"
                         r"(?:host \S+ \[[^\]]*\]:\s*)?([245]\d\d[ :-][^\r\n]+)", re.I)
_EXIM_FAILED = re.compile(r"(?:address\(es\) failed|address\(es\) deferred|still pending|"
                          r"not yet been delivered (?:is|are))\s*:\s*<?([^\s<>]+@[^\s<>]+)", re.I)
# "554: delivery error" (qmail, Yahoo) has a colon after the code.
_REPLY_LINE = re.compile(r"\b([245]\d\d)[ :-](?:\s*([245]\.\d{1,3}\.\d{1,3})\s*)?(.*)")
_PERMANENT = re.compile(r"permanent error|permanently|I've given up|delivery error", re.I)


def _reply_fields(said: str) -> tuple[str | None, str]:
    m = _REPLY_LINE.search(said)
    if not m:
        return None, said.strip()
    return _status(m.group(2)) if m.group(2) else None, said[m.start():].strip()


def _plain(msg: email.message.Message, text: str, parts: list[email.message.Message]) -> Report:
    candidates, message_id = _original(parts)
    if _QMAIL.search(text):
        return _qmail(text, candidates, message_id)
    if _EXIM.search(text):
        return _exim(msg, text, candidates, message_id)
    return unparseable("not a delivery status notification or feedback report")


def _plain_report(fmt: str, kind: Kind, rcpt: str | None, said: str, mta: str | None,
                  candidates: tuple[str, ...], message_id: str | None) -> Report:
    status, diagnostic = _reply_fields(said) if said else (None, "")
    if kind is Kind.BOUNCE and status is not None and status.startswith("4"):
        kind = Kind.SOFT_BOUNCE
    return Report(kind, fmt, recipient=rcpt, status=status, diagnostic=diagnostic or None, remote_mta=mta,
                  category=_category(status, diagnostic or None), verp_candidates=candidates,
                  original_message_id=message_id)


def _qmail(text: str, candidates: tuple[str, ...], message_id: str | None) -> Report:
    m = _QMAIL_RCPT.search(text)
    if not m:
        return unparseable("qmail-style bounce without a <recipient>: block")
    rcpt, block = m.group(1), m.group(2)
    said_m = _REMOTE_SAID.search(block)
    said = said_m.group(1) if said_m else next(
        (line.strip() for line in block.splitlines() if _REPLY_LINE.search(line)), "")
    host_m = _QMAIL_HOST.search(block) or _GIVING_UP.search(block)
    kind = Kind.BOUNCE if _PERMANENT.search(text) or said.startswith("5") else Kind.SOFT_BOUNCE
    return _plain_report("qmail", kind, rcpt, said, host_m.group(1) if host_m else None,
                         candidates, message_id)


def _exim(msg: email.message.Message, text: str, candidates: tuple[str, ...],
          message_id: str | None) -> Report:
    failed = _unfold(str(msg.get("X-Failed-Recipients", ""))).split(",")[0].strip() or None
    delay = bool(_EXIM_DELAY.search(text))
    if failed is None:
        m = _EXIM_FAILED.search(text)
        failed = m.group(1) if m else None
    if failed is None:
        return unparseable("Exim-style bounce without a failed address")
    err = _EXIM_ERROR.search(text)
    host = _EXIM_HOST.search(text)
    said = err.group(1).strip() if err else ""
    return _plain_report("exim-delay" if delay else "exim", Kind.SOFT_BOUNCE if delay else Kind.BOUNCE,
                         failed, said, host.group(1) if host else None, candidates, message_id)
