"""Helpers every dataset loader shares: reading label tables strictly, listing folders, telling image files apart."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from agecurriculum.data.images import IMAGE_SUFFIXES, is_image_name  # re-exported: the loaders' helpers
from agecurriculum.data.records import CleaningReport

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PLAUSIBLE_AGE",
    "folder_files",
    "is_image_name",
    "read_table",
    "table_rows",
    "ImageIndex",
]

# No verified human age exceeds 122; anything above this is a typo, not an old face.
MAX_PLAUSIBLE_AGE = 120


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
        ValueError: naming the file when it cannot be read, is not UTF-8, is empty, or lacks a required column;
            naming the file and line where the csv module gives up (a field over ``csv.field_size_limit()``).
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
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise ValueError(f"{path}: empty file, expected a header row")
        for column in required:
            if column not in header:
                raise ValueError(f"{path}: missing column {column!r} (header has {header})")
        rows = []
        for fields in reader:
            cells = [field.strip() for field in fields]
            if not any(cells):
                continue  # blank lines (often a trailing one) carry no label
            row = dict(zip(header, cells)) if len(cells) == len(header) else None
            rows.append((reader.line_num, row))
    except csv.Error as err:  # e.g. a field over csv.field_size_limit(): no table of labels, and not a traceback
        raise ValueError(f"{path}, line {reader.line_num}: {err}") from None
    return header, rows


def table_rows(
    path: Path, rows: Iterable[tuple[int, dict[str, str] | None]], column: str, report: CleaningReport, missing: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """The rows of a label table (:func:`read_table`'s) that are whole and name something in ``column``.

    Every row counts in ``report.total``; one with another number of fields than the header is dropped as
    ``"wrong number of fields"``, one with an empty ``column`` as ``missing``.

    Yields:
        ``(item, row)``: the row's report item ``FILE:LINE VALUE`` and the row.
    """
    for line, row in rows:
        report.total += 1
        item = f"{path.name}:{line} {row[column] if row else ''}"
        if row is None:
            report.drop(item, "wrong number of fields")
        elif not row[column]:
            report.drop(item, missing)
        else:
            yield item, row


def folder_files(folder: str | Path, report: CleaningReport, expected: str) -> list[Path]:
    """The files in ``folder`` (not its subfolders), sorted by name; each counts in ``report.total``.

    Raises:
        ValueError: ``folder`` is not a folder; the message says what was ``expected`` there.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (expected {expected})")
    paths = [folder / name for name in sorted(entry.name for entry in os.scandir(folder) if entry.is_file())]
    report.total += len(paths)
    return paths


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
