"""UTKFace: labels parsed from the file names ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg``.

GENDER is 0 (male) / 1 (female), as in :class:`~agecurriculum.data.records.FaceRecord`; RACE is 0-4 for White,
Black, Asian, Indian, Others and the record stores the name; DATETIME is the ``yyyymmddHHMMSSfff`` capture time
(17 digits), unused as a label. Ages run 1-116: ages above 100 stay as they are in the record (the unified bins count
them in the last group). UTKFace has no person id, so ``subject`` is None and subject-disjoint splits are impossible.

Malformed names in the real release, and what the lenient parser (the default) does with them:

- ``39_1_20170116174525125.jpg.chip.jpg``: no race field -> kept with race None ("missing race field").
- ``24_0_1_20170116220224657 .jpg.chip.jpg``: a space before ``.jpg`` -> kept ("stray space before .jpg").
- ``55_0_0_20170116232725357jpg.chip.jpg``: no dot before ``jpg`` -> kept ("missing dot before jpg").
- ``28_1_2_201701161846515488.jpg.chip.jpg``: an 18-digit time -> kept ("odd datetime field").

It also keeps names without the ``.chip.jpg`` tail (the "in-the-wild" UTKFace release names its images
``...DATETIME.jpg``) and reads a race code outside 0-4 as race None. It drops what carries no trustworthy label: a
name that is not four (or three) ``_``-separated fields, a non-numeric age, an age outside 0-120, a gender other
than 0/1, and files that are not images. The strict parser accepts only the exact documented pattern and drops
every name the lenient one would have fixed, under the same reason.
"""

from __future__ import annotations

import re
from pathlib import Path

from agecurriculum.data.records import CleaningReport, FaceRecord, LoadResult
from agecurriculum.data.sources.common import MAX_PLAUSIBLE_AGE, folder_files, is_image_name

__all__ = ["UTKFACE_RACES", "load_utkface", "parse_utkface_name"]

UTKFACE_RACES = ("White", "Black", "Asian", "Indian", "Others")
# The label part, then the separator before "jpg" (normally "."), then the optional ".chip.jpg" of the aligned crops.
_NAME = re.compile(r"(?P<stem>.*?)(?P<sep> ?\.?)jpg(?P<chip>\.chip\.jpg)?", re.IGNORECASE)
_DATETIME_DIGITS = 17


def parse_utkface_name(name: str) -> tuple[tuple[int, int, str | None] | None, list[str]]:
    """Parses one file name leniently.

    Returns:
        ``((age, gender, race_name), fixes)`` for a usable name, where ``fixes`` lists the reasons of whatever had
        to be tolerated (empty for a perfect name); or ``(None, [drop_reason])``.
    """
    if not is_image_name(name):
        return None, ["not an image file"]
    match = _NAME.fullmatch(name)
    fields = match["stem"].split("_") if match else []
    if len(fields) not in (3, 4) or not fields[-1].isdigit():
        return None, ["name not AGE_GENDER_RACE_DATETIME"]
    fixes = []
    if match["sep"] == " .":
        fixes.append("stray space before .jpg")
    elif match["sep"] != ".":
        fixes.append("missing dot before jpg")
    if not match["chip"]:
        fixes.append("no .chip.jpg suffix")
    if len(fields[-1]) != _DATETIME_DIGITS:
        fixes.append("odd datetime field")
    age, gender = fields[0], fields[1]
    if not age.isdigit():
        return None, ["age not a number"]
    if int(age) > MAX_PLAUSIBLE_AGE:
        return None, [f"age out of 0..{MAX_PLAUSIBLE_AGE}"]
    if gender not in ("0", "1"):
        return None, ["gender not 0/1"]
    race = None
    if len(fields) == 3:
        fixes.append("missing race field")
    elif fields[2].isdigit() and int(fields[2]) < len(UTKFACE_RACES):
        race = UTKFACE_RACES[int(fields[2])]
    else:
        fixes.append("unknown race code")
    return (int(age), int(gender), race), fixes


def load_utkface(folder: str | Path, strict: bool = False) -> LoadResult:
    """Loads every file of a UTKFace folder (e.g. ``UTKFace/``), labels taken from the names.

    Args:
        folder: the folder holding the images (not searched recursively).
        strict: accept only exact ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` names; by default recoverable
            malformations are fixed and reported as cleaned (see the module docstring).

    Returns:
        Records sorted by file name, and the report (one ``total`` per file, one cleaned entry per fix).

    Raises:
        ValueError: if ``folder`` is not a folder.
    """
    report, records = CleaningReport("utkface"), []
    for path in folder_files(folder, report, "the UTKFace image folder"):
        label, reasons = parse_utkface_name(path.name)
        if label is None or (strict and reasons):
            report.drop(path.name, reasons[0])
            continue
        for reason in reasons:
            report.clean(path.name, reason)
        age, gender, race = label
        records.append(FaceRecord(path, "utkface", age, age, gender, race))
    return LoadResult(records, report)
