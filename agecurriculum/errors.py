"""One line for the user about any error: what the command line prints, and what a Predictor result's ``error``
holds."""

from __future__ import annotations

__all__ = ["describe_error"]


def describe_error(err: BaseException) -> str:
    """One line for the user: ``"PATH: reason"`` for file-system errors, never an empty message.

    ``str(OSError)`` reads ``[Errno 30] Read-only file system: 'x'``; a ``MemoryError`` has no text at all.
    """
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 else err.filename
        return f"{where}: {err.strerror}" if where else err.strerror
    if isinstance(err, MemoryError):
        return f"out of memory{f' ({err})' if str(err) else ''}"
    text = str(err).strip()
    if isinstance(err, RuntimeError):  # from torch or another library: its first line says what happened
        text = text.splitlines()[0] if text else ""
    return text or type(err).__name__
