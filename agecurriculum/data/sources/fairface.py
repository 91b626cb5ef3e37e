"""FairFace: label tables ``fairface_label_{train,val}.csv`` with columns ``file,age,gender,race,service_test``.

Ages are decades (``0-2``, ``3-9``, ``10-19``, ..., ``60-69``, ``more than 70``), stored as the inclusive range;
``more than 70`` becomes 70-100, the top of the unified bins. Gender is ``Male``/``Female``; the race (7 groups,
e.g. ``East Asian``) is kept verbatim. FairFace has no person id, so ``subject`` is None.
"""

from __future__ import annotations

from pathlib import Path

from agecurriculum.bins import MAX_AGE
from agecurriculum.data.records import FEMALE, MALE, CleaningReport, FaceRecord, LoadResult
from agecurriculum.data.sources.common import ImageIndex, read_table, table_rows

__all__ = ["FAIRFACE_AGES", "FAIRFACE_TABLES", "load_fairface"]

FAIRFACE_TABLES = ("fairface_label_val.csv", "fairface_label_train.csv")  # the published label tables

FAIRFACE_AGES = {
    "0-2": (0, 2),
    "3-9": (3, 9),
    "10-19": (10, 19),
    "20-29": (20, 29),
    "30-39": (30, 39),
    "40-49": (40, 49),
    "50-59": (50, 59),
    "60-69": (60, 69),
    "more than 70": (70, MAX_AGE),
}
_GENDERS = {"male": MALE, "female": FEMALE}


def load_fairface(root: str | Path, csv: str = "fairface_label_val.csv", require_images: bool = True) -> LoadResult:
    """Loads one FairFace label table; image paths in its ``file`` column are relative to ``root``.

    Args:
        root: the FairFace folder, holding the table and the ``val/`` (or ``train/``) images.
        csv: the table's file name under ``root``.
        require_images: drop rows whose image is missing ("image file missing").

    Raises:
        ValueError: naming the table when it is missing, not UTF-8 or lacks a column.
    """
    root = Path(root)
    path = root / csv
    _, rows = read_table(path, ("file", "age", "gender", "race"))
    report = CleaningReport("fairface")
    images = ImageIndex()
    records = []
    for item, row in table_rows(path, rows, "file", report, "file name missing"):
        if row["age"] not in FAIRFACE_AGES:
            report.drop(item, "unknown age group")
        elif row["gender"].lower() not in _GENDERS:
            report.drop(item, "unknown gender")
        else:
            image = images.find((root / row["file"]).parent, Path(row["file"]).name)
            if image is None and require_images:
                report.drop(item, "image file missing")
                continue
            records.append(
                FaceRecord(
                    image or root / row["file"],
                    "fairface",
                    *FAIRFACE_AGES[row["age"]],
                    _GENDERS[row["gender"].lower()],
                    row["race"] or None,
                )
            )
    return LoadResult(records, report)
