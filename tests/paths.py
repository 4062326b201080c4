"""Where the tests find the checkout: one definition, wherever a test module sits under tests/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
