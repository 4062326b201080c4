"""Shared typing for repositories: anything that can run a query (a pool or one connection).

asyncpg's pool, connection and pooled-connection proxy share the query methods but no base
class, so `Conn` is deliberately loose.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

Conn: TypeAlias = Any
Record: TypeAlias = asyncpg.Record
