"""The admin CLI as tests run it: the `cli_run` fixture, `cli_run(*args) -> (exit status, stdout,
stderr)`, against this test's database and configuration (a pytest plugin, see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailtrap_smtp import cli

CliRun = Callable[..., tuple[int, str, str]]


def make_cli_run(make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                 **sections: dict[str, Any]) -> CliRun:
    """A `cli_run` for a configuration with these extra sections (e.g. `plans=`)."""
    make_config(**sections)
    path = str(tmp_path / "config.toml")

    def go(*args: str) -> tuple[int, str, str]:
        code = cli.main(["-c", path, *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


@pytest.fixture
def cli_run(make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CliRun:
    return make_cli_run(make_config, tmp_path, capsys)
