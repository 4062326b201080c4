"""The exception a use case raises when it refuses an operation: a user's mistake, said in one line.

Adapters show the reason as it is (the CLI on stderr with exit status 1); nothing else about the
failure reaches them.
"""

from __future__ import annotations


class Refused(Exception):
    """A refused operation; `str()` is the one-line reason for people."""
