"""CHUNKING (RFC 3030 BDAT), the parts with no socket in sight: the BDAT command line, and what a
finished chunked message becomes before it is handed to submission.

The command is `BDAT SP chunk-size [SP "LAST"]` with `chunk-size = 1*DIGIT` (RFC 3030 §2; the
keyword is case-insensitive, as every ABNF literal). The session reads exactly chunk-size octets
after the command line's CRLF, with no dot-stuffing and no line parsing. A size it cannot read (not
digits, a sign, more than `MAX_SIZE_DIGITS` digits) means the length of what follows is unknown:
those octets can be neither skipped nor read as commands (that would be SMTP smuggling), so the
session answers and closes. A readable size with anything else wrong is still a known length: the
octets are read and discarded, then the refusal is sent (RFC 3030 §2: the receiver "MUST accept
and discard the associated message data before sending the appropriate 5XX or 4XX code").

Over-size. A chunk larger than what the account's message size limit still allows (counted over all
chunks of the transaction) is read and discarded, never kept, then answered `552 5.3.4`, and the
transaction is dropped; chunks pipelined after it meet "Need MAIL" and are discarded likewise
(RFC 3030 §2, §4.2). Reading rather than closing: the RFC asks for it, a client that sent a too-large
message learns why and may send the next one on the same connection, and it is what DATA does (its
over-size refusal also comes after the final dot, RFC 5321 §4.5.3.1.10). What it costs is bounded as
DATA's is: memory by one read, time by the minimum data rate and the session deadline, and every
refusal counts toward `smtp.max_errors`. The one exception is a client that has not authenticated:
no message can be sent before AUTH, so a chunk larger than the SIZE advertised to it closes the
session instead of being read through.

Line ends (`settle`). Without BINARYMIME (not offered: see docs/delivery.md) a chunked message is
the same RFC 5322 text as one sent with DATA, so it gets the same policy: with
`smtp.bare_newline = "normalize"` a bare LF becomes CRLF, exactly as the DATA reader does
(`datareader.py`), so what is stored, DKIM-signed and relayed has CRLF line ends only whichever
verb brought it; a bare CR or a NUL, or a bare LF in `reject` mode, stays in and submission
refuses the whole message (`BARE_LINE_ENDING`). Nothing is dot-unstuffed: BDAT has no dots to undo
(a line "." or "..x" is message text, sent on as such).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A chunk can never usefully exceed the largest message size (30 MB, 8 digits); 20 digits also
# keeps the number within what every integer parser agrees on.
MAX_SIZE_DIGITS = 20
_BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True)
class Bdat:
    """One parsed BDAT command: `size` octets follow; `well_formed` is False when the line has
    something else wrong (a bad end marker, extra words): the octets are read, then refused."""

    size: int
    last: bool
    well_formed: bool = True


def parse(arg: bytes) -> Bdat | None:
    """The BDAT command's argument, or None when the chunk size cannot be read (close the session)."""
    words = arg.split(b" ")
    size = words[0]
    if not size or len(size) > MAX_SIZE_DIGITS or not size.isdigit():
        return None  # bytes.isdigit is ASCII digits only: no sign, no spaces, no Unicode digits
    rest = words[1:]
    last = len(rest) == 1 and rest[0].upper() == b"LAST"
    return Bdat(int(size), last, well_formed=not rest or last)


def settle(content: bytes, *, normalize: bool) -> bytes:
    """The chunked message with its line ends settled as DATA's are (see the module docstring).

    More LFs than CRs means at least one bare LF; with as many CRs or more a bare LF could only come
    with a bare CR, which submission refuses whole anyway (the same shortcut as `datareader.settle`).
    """
    if normalize and content.count(b"\n") > content.count(b"\r"):
        return _BARE_LF.sub(b"\r\n", content)
    return content
