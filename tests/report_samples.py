"""The report samples of tests/fixtures/reports/ and what each must parse to (no tests here).

Each sample has `{{VERP}}` where the original message's return path goes and `{{RCPT}}` where its
recipient goes; `render` fills them in, so the same files serve the parser table and the listener.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DIR = Path(__file__).parent / "fixtures" / "reports"


def render(name: str, verp: str, rcpt: str) -> bytes:
    raw = (DIR / name).read_bytes()
    raw = raw.replace(b"{{VERP}}", verp.encode()).replace(b"{{RCPT}}", rcpt.encode())
    # On the wire every line ends in CRLF (RFC 5322 §2.1); the files are kept with LF.
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# file → expected fields of the Report ("kind" always; the others when given).
EXPECTED: dict[str, dict[str, Any]] = {
    "rfc3464_postfix_user_unknown.eml": dict(
        kind="bounce", format="rfc3464", status="5.1.1", category="bad_recipient", remote_mta="mx.dest.test",
        diagnostic_starts="550 5.1.1 <{{RCPT}}>: Recipient address rejected: User unknown", verp=True,
        message_id="<orig-1@src.test>"),
    "rfc3464_postfix_delayed.eml": dict(
        kind="soft_bounce", format="rfc3464", status="4.4.1", category="connection_failure",
        remote_mta="mx.relay.test", verp=True),
    "rfc3464_gmail_no_such_account.eml": dict(
        kind="bounce", format="rfc3464", status="5.1.1", category="bad_recipient",
        remote_mta_starts="gmail-smtp-in.l.google.com", diagnostic_starts="550-5.1.1 The email account",
        verp=True, message_id="<orig-3@src.test>"),
    "rfc3464_exchange_mailbox_full.eml": dict(
        kind="bounce", format="rfc3464", status="5.2.2", category="mailbox_full", verp=True),
    "rfc3464_spamhaus_block.eml": dict(
        kind="bounce", format="rfc3464", status="5.7.1", category="spam_block", remote_mta="mx1.dest.test",
        verp=False),
    "rfc3464_no_per_message_block.eml": dict(
        kind="bounce", format="rfc3464", status="5.1.2", category="bad_domain", remote_mta=None),
    "rfc3464_text_delivery_status.eml": dict(
        kind="bounce", format="rfc3464", status="5.0.0", category="bad_recipient", remote_mta="gw.dest.test"),
    "rfc3464_delivered.eml": dict(kind="not_feedback", format="rfc3464", status="2.0.0"),
    "qmail_permanent.eml": dict(
        kind="bounce", format="qmail", status="5.1.1", category="bad_recipient", remote_mta="192.0.2.25",
        diagnostic_starts="550 5.1.1"),
    "yahoo_plain_no_account.eml": dict(
        kind="bounce", format="qmail", status=None, category="bad_recipient",
        diagnostic_starts="554: delivery error: dd This user doesn't have"),
    "exim_rcpt_rejected.eml": dict(
        kind="bounce", format="exim", status="5.1.1", category="bad_recipient", remote_mta="mx.dest.test"),
    "exim_delay_warning.eml": dict(
        kind="soft_bounce", format="exim-delay", status="4.2.2", category="mailbox_full",
        remote_mta="mx.dest.test"),
    "arf_abuse_rfc822.eml": dict(
        kind="spam", format="arf", feedback_type="abuse", verp=True, message_id="<orig-5@src.test>"),
    "arf_original_mail_from_headers.eml": dict(
        kind="spam", format="arf", feedback_type="abuse", verp=True, message_id="<orig-6@src.test>"),
    "arf_not_spam.eml": dict(kind="not_feedback", format="arf", feedback_type="not-spam"),
    # Hostile and malformed: a clear "unparseable" with its reason, never an exception.
    "hostile_binary_garbage.eml": dict(kind="unparseable", reason="not a delivery status notification"),
    "hostile_empty.eml": dict(kind="unparseable", reason="not a delivery status notification"),
    "hostile_report_without_boundary.eml": dict(kind="unparseable", reason="multipart/report of type"),
    "hostile_invalid_status.eml": dict(kind="unparseable", reason="invalid Status '9.9.9'"),
    "hostile_unknown_action.eml": dict(kind="unparseable", reason="unknown Action"),
    "hostile_only_per_message_block.eml": dict(kind="unparseable", reason="without a per-recipient block"),
    "hostile_arf_without_feedback_type.eml": dict(kind="unparseable", reason="without Feedback-Type"),
    "hostile_out_of_office.eml": dict(kind="unparseable", reason="not a delivery status notification"),
    "hostile_unknown_report_type.eml": dict(kind="unparseable", reason="multipart/report of type"),
    "hostile_nested_400_deep.eml": dict(kind="unparseable", reason="more than 16 multipart boundaries"),
    "hostile_200_parts.eml": dict(kind="unparseable", reason="more than 64 MIME parts"),
}
