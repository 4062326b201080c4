"""One bound SMTP listener as the server and its sessions see it (shared, so neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Listener:
    """A bound listener: where it listens, how TLS starts, whether PROXY headers come first, its stream."""

    address: str
    port: int  # the bound port (differs from the configured one when a test asks for port 0)
    mode: str
    proxy: bool = False  # trusted peers must send a PROXY header first
    stream: str = ""  # config.Listener.stream: "" serves each token's own stream

    @property
    def label(self) -> str:
        return f"{self.address}:{self.port}/{self.mode}"
