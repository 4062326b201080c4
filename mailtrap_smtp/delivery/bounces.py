"""Classify a remote reply (or a local failure) into a bounce category.

The category is what a sender acts on: drop the address (`bad_recipient`), try later
(`mailbox_full`), fix their content or reputation (`spam_block`, `policy`), etc. The enhanced
status code (RFC 3463, registry of RFC 5248) is the primary signal because it is structured; the
text of the reply is consulted only to tell apart cases the codes blur (a 5.7.1 can be a spam
block or a relaying policy) and for servers that send no enhanced code at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3463 §2: class "." subject "." detail, right after the basic code.
_ENHANCED = re.compile(r"^\s*(?:[245]\d\d[ -])?\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_BASIC = re.compile(r"^\s*([245])(\d)(\d)\b")

BAD_RECIPIENT = "bad_recipient"
BAD_DOMAIN = "bad_domain"
BAD_SENDER = "bad_sender"
INACTIVE_MAILBOX = "inactive_mailbox"
MAILBOX_FULL = "mailbox_full"
MESSAGE_TOO_LARGE = "message_too_large"
CONTENT_REJECTED = "content_rejected"
POLICY = "policy"
SPAM_BLOCK = "spam_block"
AUTHENTICATION = "authentication"
GREYLISTED = "greylisted"
THROTTLED = "throttled"
DNS_FAILURE = "dns_failure"
CONNECTION_FAILURE = "connection_failure"
TLS_REQUIRED = "tls_required"
PROTOCOL_ERROR = "protocol_error"
INVALID_ENVELOPE = "invalid_envelope"
SMTPUTF8_UNSUPPORTED = "smtputf8_unsupported"  # X.6.7: the address (or headers) need SMTPUTF8, not offered
OTHER = "other"

_SPAM_WORDS = re.compile(
    r"spam|blocklist|blacklist|block list|black list|\brbl\b|dnsbl|spamhaus|reputation|"
    r"(?<!grey)(?<!gray)listed (?:at|on|in|by)|junk|bulk mail|abuse", re.IGNORECASE)
_AUTH_WORDS = re.compile(r"\bspf\b|\bdkim\b|\bdmarc\b|authenticat|unauthenticated", re.IGNORECASE)
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such user|does not exist|doesn't exist|not exist|invalid recipient|"
    r"recipient rejected|address rejected|unknown recipient|no mailbox|mailbox not found|"
    r"mailbox unavailable|undeliverable address|unrouteable|doesn't have an? \S+ account", re.IGNORECASE)
_FULL = re.compile(r"quota|mailbox full|over ?quota|insufficient storage|mailbox is full", re.IGNORECASE)
_DISABLED = re.compile(r"disabled|inactive|deactivated|suspended|no longer", re.IGNORECASE)
_GREYLIST = re.compile(r"greylist|graylist|try again later|deferred", re.IGNORECASE)
_RATE = re.compile(r"rate|too many|throttl|limit exceeded|slow down", re.IGNORECASE)
_SIZE = re.compile(r"too (big|large)|size limit|exceeds.*size|message size", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteReply:
    """A reply from a remote server (or, code 0, our own words for a failure before any reply)."""

    code: int          # basic reply code; 0 when there was no reply (network, DNS, local)
    enhanced: str | None
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text


def parse(code: int, message: str) -> RemoteReply:
    """A reply from its code and text (the text may or may not start with the enhanced code)."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    m = _ENHANCED.match(text)
    enhanced = f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}" if m else None
    return RemoteReply(code, enhanced, text)


def parse_line(line: str) -> RemoteReply:
    """A reply from a whole reply line such as "550 5.1.1 No such user"."""
    m = _BASIC.match(line)
    if not m:
        return parse(0, line)
    return parse(int(line[:3]), line[3:].lstrip(" -"))


def classify(reply: RemoteReply) -> str:
    """The bounce (or deferral) category of a reply; see the module docstring."""
    enh, text, code = reply.enhanced, reply.text, reply.code
    if enh:
        _, subject, detail = (int(x) for x in enh.split("."))
        if subject == 1:
            if detail in (7, 8):
                return BAD_SENDER
            if detail in (2, 10):
                return BAD_DOMAIN
            if detail == 6:
                return INACTIVE_MAILBOX
            return BAD_RECIPIENT
        if subject == 2:
            if detail == 2:
                return MAILBOX_FULL
            if detail == 3:
                return MESSAGE_TOO_LARGE
            if detail == 1:
                return INACTIVE_MAILBOX if _DISABLED.search(text) or code >= 500 else THROTTLED
            return MAILBOX_FULL if _FULL.search(text) else OTHER
        if subject == 3:
            if detail == 4:
                return MESSAGE_TOO_LARGE
            if detail == 1:
                return MAILBOX_FULL
            return OTHER
        if subject == 4:
            if detail in (4,):
                return BAD_DOMAIN if reply.code >= 500 or reply.code == 0 else CONNECTION_FAILURE
            if detail in (1, 2, 7):
                return CONNECTION_FAILURE
            return OTHER
        if subject == 5:
            return PROTOCOL_ERROR
        if subject == 6:
            # RFC 5248 X.6.7 "Non-ASCII addresses not permitted": not the content, the path to it.
            return SMTPUTF8_UNSUPPORTED if detail == 7 else CONTENT_REJECTED
        if subject == 7:
            if code and code < 500 and detail == 28:
                return THROTTLED  # 4.7.28: rate limited (RFC 5248 registry)
            if code and code < 500 and _GREYLIST.search(text) and re.search("gr[ea]ylist", text, re.I):
                return GREYLISTED
            if _SPAM_WORDS.search(text):
                return SPAM_BLOCK
            if detail in (23, 24, 25, 26, 27) or _AUTH_WORDS.search(text):
                return AUTHENTICATION
            if code and code < 500 and detail in (0, 1) and _GREYLIST.search(text):
                return GREYLISTED
            if code and code < 500 and (detail == 28 or _RATE.search(text)):
                return THROTTLED
            return POLICY
    # No enhanced code: fall back on the basic code and the words.
    if _SPAM_WORDS.search(text):
        return SPAM_BLOCK
    if _FULL.search(text) or code == 452:
        return MAILBOX_FULL
    if _SIZE.search(text):
        return MESSAGE_TOO_LARGE
    if _UNKNOWN_USER.search(text) or (code in (550, 551, 553) and _UNKNOWN_USER.search(text)):
        return BAD_RECIPIENT
    if code and code < 500 and _GREYLIST.search(text):
        return GREYLISTED
    if code and code < 500 and _RATE.search(text):
        return THROTTLED
    if code == 552:
        return MESSAGE_TOO_LARGE
    if code in (500, 501, 502, 503, 504):
        return PROTOCOL_ERROR
    if code == 554:
        return POLICY
    return OTHER
