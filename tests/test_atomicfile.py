"""write_atomically: all of the file or none, modes, and the no-replace race rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailtrap_smtp.atomicfile import write_atomically


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_replace_overwrites_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "m.eml"
    write_atomically(path, b"first")
    write_atomically(path, b"second")
    assert path.read_bytes() == b"second"
    assert _leftovers(path.parent) == []


def test_without_replace_an_existing_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    write_atomically(path, b"winner", replace=False)
    with pytest.raises(FileExistsError):
        write_atomically(path, b"loser", replace=False)
    assert path.read_bytes() == b"winner"
    assert _leftovers(tmp_path) == []


def test_private_files_are_0600_in_0700_directories(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "secret" / "kek"
        write_atomically(path, b"k" * 32, private=True, replace=False)
        public = tmp_path / "public.eml"
        write_atomically(public, b"x")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert public.stat().st_mode & 0o777 == 0o666  # what open() gives under this umask
