"""Atomic file writes: a reader, or a process killed at any moment, sees the old content or the new, never a mix."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


def _read_umask() -> int:
    # Reading the umask means setting it; done once at import, before any thread could create files meanwhile.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: str | Path, content: bytes | Callable[[IO[bytes]], None], durable: bool = True) -> None:
    """Writes ``content`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    On failure (an exception, Ctrl-C) the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to (re)write; its folder is created if needed.
        content: the bytes, or a function that writes them to the binary file object it is given.
        durable: also fsync the data and the folder, so the new file survives a power cut. Checkpoints want
            this; a cache of thousands of small files that can be rebuilt does not need the cost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file readable by its owner only; give it the permissions of any new file (umask).
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            if durable:
                f.flush()
                os.fsync(f.fileno())  # the data must be on disk before the rename makes it the real file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    # Persists the rename itself; not every platform can open a folder (Windows), which is fine.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
