"""How the command line prints: aligned tables and `key: value` pairs for people, JSON for programs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from collections.abc import Sequence
from typing import Any


def plain(value: Any) -> Any:
    """`value` in JSON's types: UTC times as ISO 8601 with Z, ids and addresses as text, bytes omitted."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def emit_json(data: Any) -> None:
    print(json.dumps(plain(data), indent=2, sort_keys=False))


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Aligned columns for people; `--json` gives the same rows for programs."""
    if not rows:
        print("(none)")
        return
    cells = [[("" if r.get(c) is None else str(plain(r.get(c)))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def emit_pairs(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for k, v in pairs:
        print(f"{k + ':':<{width + 1}} {'' if v is None else plain(v)}")
