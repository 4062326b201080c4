"""The header section of a message split into its raw fields (RFC 5322 §2.2), the body left undecoded.

The one splitter: submission reads and rewrites fields with it, DKIM signing canonicalises them,
delivery asks whether they are ASCII, and `queue show` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ParsedHeader:
    fields: list[tuple[bytes, bytes]]  # (lower-case name, the whole raw field incl. folds and CRLF)
    rest: bytes  # everything after the header fields: b"" or the blank line and the body


def parse_header(raw: bytes) -> ParsedHeader:
    """Split the header section into raw fields without decoding the body (RFC 5322 §2.2)."""
    fields, end = split_fields(raw)
    rest = raw[end:]
    if rest and not rest.startswith(b"\r\n"):
        rest = b"\r\n" + rest  # a malformed line ended the header: keep it, but in the body
    return ParsedHeader(fields, rest)


def split_fields(raw: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """The header fields, as in `ParsedHeader.fields`, and the offset where they end in `raw`: at
    the blank line, at a line that is not a field, or at the end. The body is not copied."""
    fields: list[tuple[bytes, bytes]] = []
    pos = 0
    n = len(raw)
    while pos < n:
        end = raw.find(b"\r\n", pos)
        end = n if end < 0 else end + 2
        line = raw[pos:end]
        if line in (b"\r\n", b""):
            break  # the blank line that ends the header section
        if line[:1] in (b" ", b"\t") and fields:
            name, whole = fields[-1]
            fields[-1] = (name, whole + line)
        else:
            colon = line.find(b":")
            name = line[:colon].rstrip(b" \t") if colon > 0 else b""
            if not name or any(c < 33 or c > 126 for c in name):
                break  # not a header field: the body starts here
            fields.append((name.lower(), line))
        pos = end
    return fields, pos


def field_value(whole: bytes) -> str:
    value = whole.partition(b":")[2]
    return value.replace(b"\r\n", b"").strip().decode("utf-8", "replace")


def field_name(whole: bytes) -> str:
    """The field's name as written (the case kept, WSP before the colon dropped)."""
    return whole[:whole.find(b":")].rstrip(b" \t").decode("ascii")


def header_bytes(parsed: ParsedHeader) -> bytes:
    """The header fields as they were in the message, without the blank line or body after them."""
    return b"".join(whole for _, whole in parsed.fields)
