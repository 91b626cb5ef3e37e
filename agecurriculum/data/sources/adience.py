"""Adience: the annotation folds ``fold_{0..4}_data.txt`` and the benchmark's 5-fold protocol lists.

Each fold row names one face: ``user_id, original_image, face_id, age, gender, x, y, dx, dy, ...`` (tab separated).
Its image is ``faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>``, or the same name with the
``landmark_aligned_face.`` prefix (the other aligned release, and the naming of the protocol lists). The subject is
the Flickr ``user_id``; the face box is ``(x, y, x + dx, y + dy)`` in the original photo.

Label-noise rule for the age column (each fix is counted in the report under its own reason):

- ``(a, b)`` equal to an Adience group (0-2, 4-6, 8-13, 15-20, 25-32, 38-43, 48-53, 60-100): that group, no entry.
- ``(8, 12)``: the 8-13 group, spelled differently in the files ("(8, 12) read as 8-13").
- An exact age (``35`` or ``(35)``) inside a group: that group ("exact age mapped to its group"); in a gap between
  groups (3, 7, 14, 21-24, 33-37, 44-47, 54-59): kept as the exact age, which is more precise than any group
  ("exact age kept").
- Any other range, e.g. ``(38, 42)`` or ``(27, 32)``: the group it shares the most ages with ("range mapped to the
  most-overlapping group"); dropped when two groups tie or none overlaps ("range between groups").
- ``None``, blank or unreadable: dropped.

Gender ``f``/``m`` gives 1/0; ``u`` or blank gives None ("gender unknown"; the age is still usable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from agecurriculum.bins import ADIENCE_GROUPS
from agecurriculum.data.records import CleaningReport, FaceRecord, LoadResult
from agecurriculum.data.sources.common import ImageIndex, read_table

__all__ = [
    "AdienceKey",
    "FOLDS",
    "FOLD_RESULT",
    "AdienceSplit",
    "ResolvedSplit",
    "adience_key",
    "adience_age",
    "adience_folds",
    "load_adience",
    "load_adience_protocol",
    "resolve_split",
]

#: The benchmark's five folds, as its files number them (``fold_0_data.txt`` ... ``fold_4_data.txt``).
FOLDS = (0, 1, 2, 3, 4)
#: What :func:`~agecurriculum.train.adience_folds.run_adience_folds` writes into each fold's run folder once the fold
#: is scored (a resumed protocol skips the folds that have it).
FOLD_RESULT = "adience_fold.json"
FACE_PREFIXES = ("coarse_tilt_aligned_face", "landmark_aligned_face")
_COLUMNS = ("user_id", "original_image", "face_id", "age", "gender", "x", "y", "dx", "dy")
_AGE = re.compile(r"\(?\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)?")
_FACE_NAME = re.compile(rf"(?:{'|'.join(FACE_PREFIXES)})\.(\d+)\.(.+)")
_GENDERS = {"m": 0, "f": 1, "u": None, "": None}
_PARTS = ("train", "val", "test")


class AdienceKey(NamedTuple):
    """What identifies one Adience face across the fold files, the image folders and the protocol lists."""

    user_id: str
    face_id: str
    original_image: str

    def __str__(self) -> str:
        return f"{self.user_id}/{self.face_id}.{self.original_image}"


def adience_key(path: str | Path) -> AdienceKey:
    """The key of an Adience face image path ``.../<user_id>/<prefix>.<face_id>.<original_image>``.

    Raises:
        ValueError: if the file name has neither Adience face prefix.
    """
    path = Path(path)
    match = _FACE_NAME.fullmatch(path.name)
    if not match:
        raise ValueError(f"{path}: not an Adience face name ({' or '.join(FACE_PREFIXES)}.FACEID.IMAGE)")
    return AdienceKey(path.parent.name, match[1], match[2])


def adience_age(text: str) -> tuple[tuple[int, int] | None, str | None]:
    """Applies the label-noise rule of the module docstring to one age cell.

    Returns:
        ``((age_min, age_max), cleaned_reason or None)``, or ``(None, drop_reason)``.
    """
    text = text.strip()
    if text in ("", "None"):
        return None, "age missing"
    match = _AGE.fullmatch(text)
    if not match:
        return None, "age unreadable"
    lo = int(match[1])
    hi = int(match[2]) if match[2] else lo
    if (lo, hi) in ADIENCE_GROUPS:
        return (lo, hi), None
    if (lo, hi) == (8, 12):
        return (8, 13), "(8, 12) read as 8-13"
    if lo > hi:
        return None, "age unreadable"
    overlaps = [max(0, min(hi, g_hi) - max(lo, g_lo) + 1) for g_lo, g_hi in ADIENCE_GROUPS]
    best = max(overlaps)
    if lo == hi and best == 0:
        return (lo, hi), "exact age kept"
    if lo == hi:
        return ADIENCE_GROUPS[overlaps.index(best)], "exact age mapped to its group"
    if best == 0 or overlaps.count(best) > 1:
        return None, "range between groups"
    return ADIENCE_GROUPS[overlaps.index(best)], "range mapped to the most-overlapping group"


def _fold_files(root: Path) -> list[tuple[int, Path]]:
    files = [(k, root / f"fold_{k}_data.txt") for k in FOLDS]
    files = [(k, f) for k, f in files if f.is_file()]
    if not files:
        raise ValueError(f"{root}: no Adience fold files (expected fold_0_data.txt ... fold_4_data.txt)")
    return files


def adience_folds(root: str | Path) -> dict[AdienceKey, int]:
    """The fold (0-4) of every face named in the fold files, whatever its label, for fold-wise evaluation.

    Look a record up with ``adience_folds(root)[adience_key(record.path)]``.
    """
    folds = {}
    for k, path in _fold_files(Path(root)):
        for _, row in read_table(path, _COLUMNS[:3], delimiter="\t")[1]:
            if row is not None:
                folds[AdienceKey(row["user_id"], row["face_id"], row["original_image"])] = k
    return folds


def load_adience(root: str | Path, require_images: bool = True) -> LoadResult:
    """Loads the labelled faces of every ``fold_K_data.txt`` under ``root``.

    Args:
        root: the Adience folder, holding the fold files and ``faces/``.
        require_images: drop rows whose face image is missing ("image file missing"); with False every labelled
            row gives a record (label histograms), its path set to where the image would be.

    Returns:
        Records in fold-file order and the report (one ``total`` per data row; items are ``fold_K:LINE key``).

    Raises:
        ValueError: if there is no fold file, or one is not UTF-8 or lacks a column (message names it).
    """
    root = Path(root)
    report = CleaningReport("adience")
    images = ImageIndex()
    folders: dict[str, Path] = {}  # user id -> its faces folder, one Path each rather than one per row
    records = []
    for k, path in _fold_files(root):
        for line, row in read_table(path, _COLUMNS, delimiter="\t")[1]:
            report.total += 1
            if row is None:
                report.drop(f"{path.name}:{line}", "wrong number of fields")
                continue
            key = AdienceKey(row["user_id"], row["face_id"], row["original_image"])
            item = f"{path.name}:{line} {key}"
            ages, age_reason = adience_age(row["age"])
            if ages is None:
                report.drop(item, age_reason)
                continue
            if row["gender"].lower() not in _GENDERS:
                report.drop(item, "gender unreadable")
                continue
            folder = folders.get(key.user_id) or folders.setdefault(key.user_id, root / "faces" / key.user_id)
            tail = f"{key.face_id}.{key.original_image}"
            image = next(filter(None, (images.find(folder, f"{prefix}.{tail}") for prefix in FACE_PREFIXES)), None)
            if image is None and require_images:
                report.drop(item, "image file missing")
                continue
            if age_reason:
                report.clean(item, age_reason)
            gender = _GENDERS[row["gender"].lower()]
            if gender is None:
                report.clean(item, "gender unknown")
            try:
                x, y, dx, dy = (int(row[c]) for c in ("x", "y", "dx", "dy"))
                box = (x, y, x + dx, y + dy)
            except ValueError:
                box = None
                report.clean(item, "face box unreadable")
            image = image or folder / f"{FACE_PREFIXES[0]}.{tail}"
            records.append(FaceRecord(image, "adience", *ages, gender, None, key.user_id, box))
    return LoadResult(records, report)


@dataclass(frozen=True)
class AdienceSplit:
    """One round of the 5-fold protocol: fold ``test_fold`` is the test set.

    Attributes:
        test_fold: K of ``test_fold_is_K``.
        age: ``{"train"|"val"|"test": [(key, age class 0-7 in Adience group order), ...]}``.
        gender: ``{"train"|"val"|"test": [(key, 0 male / 1 female), ...]}``; the gender lists hold other faces
            than the age lists (each leaves out the faces without that label).

    The lists keep the files' order and their duplicate lines (the real age train list of fold 0 repeats 71
    faces), so that training and scoring follow the benchmark exactly as published.
    """

    test_fold: int
    age: dict[str, list[tuple[AdienceKey, int]]] = field(default_factory=dict)
    gender: dict[str, list[tuple[AdienceKey, int]]] = field(default_factory=dict)


def _read_split_list(path: Path, classes: int) -> list[tuple[AdienceKey, int]]:
    """Reads ``user/prefix.FACEID.IMAGE CLASS`` lines.

    A bad line raises instead of being dropped: the lists define the benchmark, and a silently shortened list
    would give numbers that cannot be compared with published ones.
    """
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, _, label = line.strip().rpartition(" ")
        try:
            key = adience_key(name)
            if name.count("/") != 1 or not 0 <= int(label) < classes:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{path}:{number}: expected 'user/{FACE_PREFIXES[1]}.FACEID.IMAGE CLASS' with CLASS in "
                f"0..{classes - 1}, got {line.strip()!r}"
            ) from None
        entries.append((key, int(label)))
    return entries


def load_adience_protocol(root: str | Path, folds: Iterable[int] = FOLDS) -> list[AdienceSplit]:
    """Reads ``levi_folds/test_fold_is_{0..4}/{age,gender}_{train,val,test}.txt`` under ``root``.

    The ``*_train_subset.txt`` lists are not read: they are a convenience subset of the train lists.

    Args:
        root: the Adience folder.
        folds: which rounds to read (K of ``test_fold_is_K``), in this order; default all five.

    Raises:
        ValueError: naming the missing folder or file, or the bad line; a fold outside 0-4.
    """
    base = Path(root) / "levi_folds"
    splits = []
    for k in folds:
        if k not in FOLDS:
            raise ValueError(f"Adience fold {k!r}: expected 0, 1, 2, 3 or 4")
        folder = base / f"test_fold_is_{k}"
        if not folder.is_dir():
            raise ValueError(f"{folder}: missing (expected levi_folds/test_fold_is_0 ... test_fold_is_4)")
        splits.append(
            AdienceSplit(
                k,
                {part: _read_split_list(folder / f"age_{part}.txt", len(ADIENCE_GROUPS)) for part in _PARTS},
                {part: _read_split_list(folder / f"gender_{part}.txt", 2) for part in _PARTS},
            )
        )
    return splits


@dataclass
class ResolvedSplit:
    """The records one protocol list names.

    Attributes:
        records: records found, in list order.
        labels: the list's class for each of ``records``.
        missing: entries of the list with no record (image absent, or the row's label dropped).
    """

    records: list[FaceRecord]
    labels: list[int]
    missing: list[AdienceKey]

    @property
    def resolved(self) -> int:
        return len(self.records)


def resolve_split(records: Iterable[FaceRecord], entries: Iterable[tuple[AdienceKey, int]]) -> ResolvedSplit:
    """Picks the records of ``load_adience`` that a protocol list (e.g. ``split.age["test"]``) names, in its order."""
    by_key = {adience_key(r.path): r for r in records if r.dataset == "adience"}
    resolved = ResolvedSplit([], [], [])
    for key, label in entries:
        if key in by_key:
            resolved.records.append(by_key[key])
            resolved.labels.append(label)
        else:
            resolved.missing.append(key)
    return resolved
