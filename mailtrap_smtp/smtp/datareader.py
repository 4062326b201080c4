"""The DATA reader: turns the bytes of one DATA phase into the message, with no socket in sight.

`DataReader` is fed the chunks as they arrive and scans them for the one terminator RFC 5321
§4.1.1.4 defines, CRLF "." CRLF (the DATA line's own line end counts, so "." CRLF right away is an
empty message). Only that exact sequence ends DATA: every other would-be terminator (`\\n.\\n`,
`\\n.\\r\\n`, `\\r\\n.\\n`, `\\r.\\r`, NUL variants: "SMTP smuggling") stays inside the message as
text. Past the size limit the reader stops keeping bytes (memory stays bounded: limit + one chunk)
but keeps scanning, so the refusal comes after the final dot, as RFC 5321 §4.5.3.1.10 asks.

`message()` then gives the content with its line ends settled and dot-unstuffed (RFC 5321 §4.5.2):

* `normalize` (Postfix 3.9 `smtpd_forbid_bare_newline = normal`): a line ending in a bare LF is a
  line ending in CRLF, so an LF-only client (`curl --upload-file` of a text file) is served, and
  what is stored and relayed has CRLF line ends only. A lone "." line that was not the terminator
  (it needed a bare LF to get there) is kept as the text it is; the delivery client dot-stuffs it.
* `reject`: bare LFs are left in place, and the submission check refuses the message.

Bare CR and NUL are never touched here: they stay in and the submission check refuses the whole
message (`BARE_LINE_ENDING`), in both modes. The common case, CRLF only, costs two single-byte
counts and a search for stuffed dots.
"""

from __future__ import annotations

import re

TERMINATOR = b"\r\n.\r\n"
_BARE_LF = re.compile(rb"(?<!\r)\n")
# A dot that starts a line with more on it (RFC 5321 §4.5.2); a lone "." line is not stuffing.
_STUFFED_DOT = re.compile(rb"\r\n\.(?!\r\n)")


class DataReader:
    """One DATA phase, fed chunk by chunk; `done` once the terminator was seen."""

    def __init__(self, limit: int, *, normalize: bool) -> None:
        self.limit = limit
        self.normalize = normalize
        self.done = False
        self.rest = b""  # bytes after the terminator: pipelined commands, for the command reader
        self._work = bytearray(b"\r\n")  # the DATA command's own line end starts the first line
        self._dropped = 0  # bytes no longer kept because the message is over the limit
        self._scan = 0
        self._content: bytes | None = None

    @property
    def received(self) -> int:
        """Bytes of this DATA phase so far (for the minimum data rate)."""
        return len(self._work) + self._dropped

    def feed(self, data: bytes) -> bool:
        """Add one chunk; True once the terminator was found (later chunks are not expected)."""
        work = self._work
        work += data
        idx = work.find(TERMINATOR, self._scan)
        if idx >= 0:
            self.rest = bytes(work[idx + 5:])
            if not self._dropped:
                self._content = bytes(work[2: idx + 2])
            work.clear()
            self.done = True
            return True
        self._scan = max(0, len(work) - 4)  # the terminator may straddle this chunk and the next
        if self._dropped or len(work) - 6 > self.limit:
            # Over the limit: keep only the tail that could start the terminator.
            self._dropped += len(work) - 4
            del work[:-4]
            self._scan = 0
        return False

    def message(self) -> bytes | None:
        """After `done`: the message, or None if it was over the limit."""
        content = self._content
        if content is None or len(content) > self.limit:
            return None
        message = settle(content, normalize=self.normalize)
        return None if len(message) > self.limit else message


def settle(content: bytes, *, normalize: bool) -> bytes:
    """Line ends settled (see the module docstring) and dot-stuffing undone exactly once.

    Bare LFs are looked for with two single-byte counts: more LFs than CRs means at least one bare
    LF. With as many CRs or more, a bare LF could only come with a bare CR, and such a message is
    refused whole by the submission check anyway, so it is not worth normalising.
    """
    if normalize and content.count(b"\n") > content.count(b"\r"):
        content = _BARE_LF.sub(b"\r\n", content)
        if content.startswith(b".") and not content.startswith(b".\r\n"):
            content = content[1:]
        return _STUFFED_DOT.sub(b"\r\n", content)
    # No bare LF (or a refusal coming): no lone "." line can be inside, it would have ended DATA.
    if content.startswith(b"."):
        content = content[1:]
    if b"\r\n." in content:  # most messages have no dot-stuffed line: skip the copy
        content = content.replace(b"\r\n.", b"\r\n")
    return content
