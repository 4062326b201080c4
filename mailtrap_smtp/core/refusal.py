"""The exception a use case raises when it refuses an operation: a user's mistake, said in one line,
and its kind.

Adapters show the reason as it is (the CLI on stderr with exit status 1) and decide how to answer by
the refusal's `kind` alone, each in one table of its own (`cli.REFUSAL_EXIT`,
`http/errors.REFUSALS`), never by reading the text; nothing else about the failure reaches them.
"""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    NOT_FOUND = "not_found"  # no such thing (in this account)
    CONFLICT = "conflict"    # it clashes with what is already there (a name taken)
    INVALID = "invalid"      # the input breaks a rule
    FORBIDDEN = "forbidden"  # the input is well-formed, but this may not be done with it


class Refused(Exception):
    """A refused operation; `str()` is the one-line reason for people, `kind` what sort of refusal.

    A subclass names its kind once (`kind = Kind.NOT_FOUND`); a plain `Refused` is INVALID unless
    told otherwise."""

    kind: Kind = Kind.INVALID

    def __init__(self, *args: object, kind: Kind | None = None) -> None:
        super().__init__(*args)
        if kind is not None:
            self.kind = kind
