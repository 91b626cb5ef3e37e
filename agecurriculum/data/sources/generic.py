"""A user's own labelled faces, from a CSV file.

The header must have ``path`` and either ``age`` or both ``age_min`` and ``age_max`` (inclusive); ``gender``,
``subject`` and ``race`` are optional, other columns are ignored. When both age spellings are present, a row with a
blank ``age`` uses its range, so exact ages and age groups can share one file. Gender accepts ``0``/``1``,
``m``/``f`` and ``male``/``female`` in any case; blank means unknown. Example::

    path,age,gender,subject
    alice/001.jpg,34,f,alice
    bob/007.jpg,51,M,bob
"""

from __future__ import annotations

from pathlib import Path

from agecurriculum.data.records import FEMALE, MALE, CleaningReport, FaceRecord, LoadResult
from agecurriculum.data.sources.common import MAX_PLAUSIBLE_AGE, ImageIndex, read_table, table_rows

__all__ = ["parse_gender", "load_csv"]

_GENDERS = {"0": MALE, "m": MALE, "male": MALE, "1": FEMALE, "f": FEMALE, "female": FEMALE, "": None}
_UNKNOWN = object()  # parse_gender's answer for a cell it cannot read (None already means "unknown gender")


def parse_gender(text: str) -> int | None:
    """0 (male), 1 (female) or None (blank) from a gender cell.

    Raises:
        ValueError: for any other spelling.
    """
    gender = _GENDERS.get(text.strip().lower(), _UNKNOWN)
    if gender is _UNKNOWN:
        raise ValueError(f"gender {text!r} is not one of 0/1, m/f, male/female or blank")
    return gender  # type: ignore[return-value]


def _parse_ages(row: dict[str, str]) -> tuple[int, int]:
    """``(age_min, age_max)`` of a row; raises ValueError with the drop reason."""
    if row.get("age"):
        lo = hi = row["age"]
    elif row.get("age_min") or row.get("age_max"):
        lo, hi = row.get("age_min", ""), row.get("age_max", "")
    else:
        raise ValueError("age missing")
    if not (lo.isdigit() and hi.isdigit()):
        raise ValueError("age not a whole number")
    if not int(lo) <= int(hi) <= MAX_PLAUSIBLE_AGE:
        raise ValueError(f"age not in 0..{MAX_PLAUSIBLE_AGE} or min > max")
    return int(lo), int(hi)


def load_csv(
    csv_path: str | Path, dataset: str = "custom", root: str | Path | None = None, require_images: bool = True
) -> LoadResult:
    """Loads a user's label CSV (format in the module docstring).

    Args:
        csv_path: the CSV file (UTF-8, with or without a byte-order mark).
        dataset: name stored in every record and the report.
        root: folder that relative paths are resolved against; default the CSV's folder.
        require_images: drop rows whose image file is missing ("image file missing").

    Returns:
        Records in file order; report items are ``FILE:LINE PATH`` (LINE counts the header as line 1).

    Raises:
        ValueError: naming the file when it is not UTF-8 or lacks ``path`` or the age column(s).
    """
    csv_path = Path(csv_path)
    header, rows = read_table(csv_path, ("path",))
    if "age" not in header and not {"age_min", "age_max"} <= set(header):
        raise ValueError(f"{csv_path}: missing column 'age' (or both 'age_min' and 'age_max'); header has {header}")
    root = Path(root) if root is not None else csv_path.parent
    report = CleaningReport(dataset)
    images = ImageIndex()
    records = []
    for item, row in table_rows(csv_path, rows, "path", report, "path missing"):
        try:
            ages = _parse_ages(row)
        except ValueError as err:
            report.drop(item, str(err))
            continue
        try:
            gender = parse_gender(row.get("gender", ""))
        except ValueError:
            report.drop(item, "gender unreadable")
            continue
        path = root / row["path"]  # an absolute path in the CSV stays absolute
        image = images.find(path.parent, path.name)
        if image is None and require_images:
            report.drop(item, "image file missing")
            continue
        records.append(
            FaceRecord(image or path, dataset, *ages, gender, row.get("race") or None, row.get("subject") or None)
        )
    return LoadResult(records, report)
