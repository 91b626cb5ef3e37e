"""Atomic file writes: a reader, or a process killed at any moment, sees the old content or the new, never a mix."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "check_writable_file", "ensure_writable_folder", "error_about", "safe_torch_load"]


def _read_umask() -> int:
    # Reading the umask means setting it; done once at import, before any thread could create files meanwhile.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(
    path: str | Path, content: bytes | memoryview | Callable[[IO[bytes]], None], durable: bool = True
) -> None:
    """Writes ``content`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    On failure (an exception, Ctrl-C) the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to (re)write; its folder is created if needed.
        content: the bytes, or a function that writes them to the binary file object it is given.
        durable: also fsync the data and the folder, so the new file survives a power cut. Checkpoints want
            this; a cache of thousands of small files that can be rebuilt does not need the cost.

    Raises:
        OSError: the file cannot be written (a folder in its place, a read-only or full file system, a path under a
            regular file, ...); its ``filename`` is ``path``, never the temporary file's name.
    """
    path = Path(path)
    try:
        _write(path, content, durable)
    except OSError as err:
        if err.filename == str(path) and err.filename2 is None:
            raise
        # The temporary file's name means nothing to the user: name the file that could not be written.
        raise error_about(err, path) from err


def ensure_writable_folder(path: str | Path) -> Path:
    """Creates ``path`` (and its parents) if needed and checks that a file can be created in it.

    For work that writes at its end (a training run): it fails in a second instead of after hours.

    Raises:
        OSError: naming ``path``, when it cannot be created or written to.
    """
    path = Path(path)
    try:
        _mkdir(path)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise error_about(err, path) from err
    return path


def check_writable_file(path: str | Path) -> Path:
    """Checks that ``path`` can be written as a file: its folder is created if needed and takes a file, and no
    folder stands at ``path``.

    For work that writes one file at its end (an export): a file in the way or a read-only disk fails in a second
    instead of after the work.

    Raises:
        OSError: naming ``path`` (``afile/m.onnx: afile is a file, not a folder``).
    """
    path = Path(path)
    _refuse_folder(path)
    try:
        ensure_writable_folder(path.parent)
    except OSError as err:
        raise error_about(err, path) from err
    return path


def safe_torch_load(path: Path, what: str, error: type[Exception] = ValueError) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one line for a file it refuses.

    A checkpoint or a weights file is data: loading one must never run pickled code. For a file its safe loader
    refuses, torch prints six lines that end in the advice to load it with ``weights_only=False``, which would run any
    code the file holds; here it is one line instead, ``"{path}: not a {what} (truncated, corrupt, ...)"``, and torch's
    text stays on the exception's ``__cause__`` (``AGECURRICULUM_TRACEBACK=1`` shows it).

    Args:
        path: the file; one that cannot be opened raises the ``OSError`` that names it and says why.
        what: what the file should be, for the message ("checkpoint", "weights file").
        error: the exception type raised for a file torch refuses.

    Raises:
        error: the file is truncated, corrupt or of another kind.
    """
    import torch  # here, not above: the command line's light commands import this module without torch

    with path.open("rb") as file:
        try:
            with warnings.catch_warnings():
                # A foreign pickle draws torch's "Detected pickle protocol N" warning: a second line on the same file.
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                return torch.load(file, map_location="cpu", weights_only=True)
        except MemoryError:
            raise
        except Exception as e:  # torch raises several types (OSError too) for truncated/garbled zip files and pickles
            raise error(f"{path}: not a {what} (truncated, corrupt, or another kind of file)") from e


def _write(path: Path, content: bytes | memoryview | Callable[[IO[bytes]], None], durable: bool) -> None:
    _refuse_folder(path)  # os.replace would fail only after all the content was written
    _mkdir(path.parent)
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


def error_about(err: OSError, path: str | Path) -> OSError:
    """``err`` again, of its type and with its reason, naming ``path`` (the file the user gave, not a temporary one
    or a folder on the way): ``"PATH: reason"`` for :func:`~agecurriculum.errors.describe_error`."""
    return type(err)(err.errno, err.strerror or str(err), str(path))


def _refuse_folder(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file stands where the folder, or a parent, should be
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is a file, not a folder", str(folder)) from None


def _fsync_folder(folder: Path) -> None:
    # Persists the rename itself; not every platform can open a folder (Windows), which is fine.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
