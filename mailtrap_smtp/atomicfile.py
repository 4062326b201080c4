"""Writing a file so that a reader, or a crash, sees all of it or none of it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, data: bytes, *, private: bool = False, replace: bool = True) -> None:
    """Write `data` to `path`: to a temporary file beside it first, fsynced, then moved into place,
    and the directory fsynced so that the new entry survives a crash too.

    `replace`: an existing file is replaced (rename). Otherwise the file is hard-linked into place
    and FileExistsError raised if `path` exists, so that two processes racing to create it agree on
    one file (the loser reads the winner's). On a file system without hard links that case falls
    back to an exclusive create of `path`: still race-free, though not all-or-nothing.

    `private`: the file gets mode 0600 (whatever the umask or a default ACL would add) and missing
    parent directories 0700; otherwise the modes `open()` and `mkdir()` give.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    try:
        _write_new(tmp, data, private=private)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:
                _write_new(path, data, private=private)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _fsync_dir(path.parent)


def _write_new(path: Path, data: bytes, *, private: bool) -> None:
    """Create `path` exclusively (never through a symlink) and write `data` durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600 if private else 0o666)
    try:
        if private:
            # The umask can only remove bits from 0o600, but a file system or default ACL may add some.
            os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # Makes the new directory entry durable. Best effort: some file systems cannot open or fsync
    # a directory, and the data itself is already on disk.
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
