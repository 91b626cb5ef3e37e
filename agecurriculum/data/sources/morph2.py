"""MORPH-II: labels from the image names ``ID_PICNUM{M,F}AGE.JPG``, or from the published label tables.

A name such as ``009055_0M54.JPG`` is subject 009055, picture 0, male, age 54. The subject is the zero-padded id of
the name, in both loaders, so records of the two agree and splits can keep a person on one side.

The published tables (``morph2_{train,valid,test}.csv``, columns ``,id_num,picture_num,race,Male,facial_hair,age,
glasses,quality``) cover all of MORPH-II without images. Their first column is the image name and their ``age``
column is the true age minus 16 (``321798_03M36.jpg`` has age 20): the true age is taken from the name, and a row
whose name disagrees with ``age + 16`` or with the ``Male`` column (1 male, -1 or 0 female) is dropped, since one of
its labels is wrong and nothing says which. ``race`` is kept verbatim (B, W, H, A, I, O).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from agecurriculum.data.records import CleaningReport, FaceRecord, LoadResult
from agecurriculum.data.sources.common import (
    MAX_PLAUSIBLE_AGE,
    ImageIndex,
    folder_files,
    is_image_name,
    read_table,
)

__all__ = ["AGE_OFFSET", "load_morph2", "load_morph2_csv", "parse_morph2_name"]

AGE_OFFSET = 16  # table age = true age - 16
_NAME = re.compile(r"(\d+)_(\d+)([MF])(\d+)\.jpe?g", re.IGNORECASE)
_MALE_COLUMN = {"1": 0, "0": 1, "-1": 1}  # "Male" cell -> gender


def parse_morph2_name(name: str) -> tuple[str, int, int] | None:
    """``(subject, gender, age)`` of a MORPH-II image name, or None when it does not follow the scheme."""
    match = _NAME.fullmatch(name)
    if not match:
        return None
    return match[1], 0 if match[3].upper() == "M" else 1, int(match[4])


def load_morph2(folder: str | Path) -> LoadResult:
    """Loads every image of a MORPH-II folder, labels taken from the names.

    Raises:
        ValueError: if ``folder`` is not a folder.
    """
    report, records = CleaningReport("morph2"), []
    for path in folder_files(folder, report, "the MORPH-II image folder"):
        label = parse_morph2_name(path.name)
        if not is_image_name(path.name):
            report.drop(path.name, "not an image file")
        elif label is None:
            report.drop(path.name, "name not ID_PICNUM{M,F}AGE")
        elif label[2] > MAX_PLAUSIBLE_AGE:
            report.drop(path.name, f"age out of 0..{MAX_PLAUSIBLE_AGE}")
        else:
            subject, gender, age = label
            records.append(FaceRecord(path, "morph2", age, age, gender, None, subject))
    return LoadResult(records, report)


def load_morph2_csv(
    csv_paths: str | Path | Iterable[str | Path],
    images_folder: str | Path | None = None,
    require_images: bool = True,
) -> LoadResult:
    """Loads the rows of the published MORPH-II label tables.

    Args:
        csv_paths: one table or several (e.g. the train, valid and test tables).
        images_folder: where the images are; a record's path is this folder plus the table's file name (matched
            without regard to case: the tables say ``.jpg``, the files ``.JPG``). None: the path is the bare name.
        require_images: with ``images_folder``, drop rows whose image is not there ("image file missing").

    Raises:
        ValueError: naming the table that is not UTF-8 or lacks a column.
    """
    paths = [Path(csv_paths)] if isinstance(csv_paths, (str, Path)) else [Path(p) for p in csv_paths]
    folder = Path(images_folder) if images_folder is not None else None
    report = CleaningReport("morph2")
    images = ImageIndex()
    records = []
    for path in paths:
        header, rows = read_table(path, ("age", "Male", "race"))
        for line, row in rows:
            report.total += 1
            name = row[header[0]] if row is not None else ""
            item = f"{path.name}:{line} {name}"
            label = parse_morph2_name(name)
            if row is None:
                report.drop(item, "wrong number of fields")
            elif label is None:
                report.drop(item, "name not ID_PICNUM{M,F}AGE")
            elif not row["age"].lstrip("-").isdigit():
                report.drop(item, "age not a number")
            elif label[2] != int(row["age"]) + AGE_OFFSET:
                report.drop(item, "name age != table age + 16")
            elif _MALE_COLUMN.get(row["Male"], label[1]) != label[1]:
                report.drop(item, "name gender != Male column")
            else:
                image = images.find(folder, name) if folder is not None else Path(name)
                if image is None and require_images:
                    report.drop(item, "image file missing")
                    continue
                subject, gender, age = label
                race = row["race"] or None
                records.append(FaceRecord(image or folder / name, "morph2", age, age, gender, race, subject))
    return LoadResult(records, report)
