"""The envelope sender of each delivered recipient: its VERP return path, or the client's own.

With `domains.ownership = "cname"` the ownership record `<token>.<domain>` CNAMEs to our
return-path host, so it is the MAIL FROM domain: SPF (RFC 7208 §2.4) is evaluated on our host's
record, DMARC relaxed alignment holds (RFC 7489 §3.1.2: same organizational domain as From:), and
bounces come back to our inbound listener tagged with the message and recipient (delivery/verp.py).
With `ownership = "txt"`, a domain that skipped DNS verification, or a message with no sending
domain, the client's MAIL FROM is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .. import dkim
from ..config import Config
from ..store import queue, returnpath
from ..store.types import Conn
from . import verp


def load_key(cfg: Config) -> bytes:
    """The VERP MAC key: `domains.verp_key_file` (default <data_dir>/verp.key), created on first use.

    Created exactly like the DKIM key-encryption key (32 random bytes, mode 0600, race-free) and,
    like it, never stored in the database or the repository: a leaked key only lets someone forge
    bounces, a lost one only makes the bounces of messages already sent unrecognisable.
    """
    return dkim.load_or_create_kek(verp_key_path(cfg))


def verp_key_path(cfg: Config) -> Path:
    return cfg.path(cfg.domains.verp_key_file) if cfg.domains.verp_key_file else cfg.data_dir / "verp.key"


class ReturnPaths:
    """Chooses MAIL FROM per claimed recipient; the key is read once, when first needed."""

    def __init__(self, cfg: Config, key: bytes | None = None) -> None:
        self.enabled = cfg.domains.verp and cfg.domains.ownership == "cname"
        self._cfg = cfg
        self._key = key

    def key(self) -> bytes:
        if self._key is None:
            self._key = load_key(self._cfg)
        return self._key

    async def senders(self, conn: Conn, claimed: Sequence[queue.Claimed]) -> dict[int, str]:
        """recipient id → VERP return path, for the recipients that get one (others keep theirs)."""
        if not self.enabled:
            return {}
        hosts = await returnpath.return_path_hosts(conn, (c.domain_id for c in claimed if c.domain_id))
        if not hosts:
            return {}
        key = self.key()
        return {c.id: verp.make(key, verp.Tag(c.message_id, c.id), hosts[c.domain_id])
                for c in claimed if c.domain_id in hosts}
