"""Helpers every dataset loader shares: reading label tables strictly, and telling image files apart."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "MAX_PLAUSIBLE_AGE", "is_image_name", "read_table", "ImageIndex"]

# Files with other suffixes (.txt landmarks, .DS_Store, Thumbs.db) sit next to face images in the real folders.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
# No verified human age exceeds 122; anything above this is a typo, not an old face.
MAX_PLAUSIBLE_AGE = 120


def is_image_name(name: str) -> bool:
    """True when the file name ends in an image suffix (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def read_table(
    path: Path, required: Iterable[str], delimiter: str = ","
) -> tuple[list[str], list[tuple[int, dict[str, str] | None]]]:
    """Reads a delimited label file with a header row.

    Args:
        path: the file.
        required: columns the header must have.
        delimiter: field separator.

    Returns:
        The header and, for every non-blank data line, ``(line number, row)``; ``row`` maps column to the stripped
        cell, or is None when the line has a different number of fields than the header (the caller drops it
        with a reason instead of failing the whole file).

    Raises:
        ValueError: naming the file when it cannot be read, is not UTF-8, is empty, or lacks a required column.
    """
    path = Path(path)
    try:
        # utf-8-sig: spreadsheets often save a byte-order mark that would otherwise stick to the first column name.
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    if not header:
        raise ValueError(f"{path}: empty file, expected a header row")
    for column in required:
        if column not in header:
            raise ValueError(f"{path}: missing column {column!r} (header has {header})")
    rows = []
    for fields in reader:
        if not any(field.strip() for field in fields):
            continue  # blank lines (often a trailing one) carry no label
        row = dict(zip(header, (f.strip() for f in fields))) if len(fields) == len(header) else None
        rows.append((reader.line_num, row))
    return header, rows


class ImageIndex:
    """Answers "does this image exist?" by listing each folder once, instead of one stat per label row.

    Lookups ignore case, because label tables and image folders disagree on it (MORPH-II tables say ``.jpg``,
    the files are ``.JPG``); the real file name is returned.
    """

    def __init__(self) -> None:
        self._folders: dict[Path, dict[str, str]] = {}

    def find(self, folder: Path, name: str) -> Path | None:
        """The path of ``folder/name`` matched without regard to case, or None when there is no such file."""
        names = self._folders.get(folder)
        if names is None:
            try:
                names = {entry.name.lower(): entry.name for entry in os.scandir(folder) if entry.is_file()}
            except OSError:  # a missing folder simply holds no images
                names = {}
            self._folders[folder] = names
        real = names.get(name.lower())
        return folder / real if real is not None else None
