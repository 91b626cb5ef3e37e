"""Deterministic train/validation/test splits of face records.

Each record's part is a function of one key and the seed alone: the key's SHA-256 with the seed, read as a number
``u`` in [0, 1), picks train when ``u < f_train``, validation when ``u < f_train + f_val``, test otherwise. So:

* the split is the same on every machine and Python run (hashlib, not Python's salted ``hash()``);
* adding records never moves the old ones to another part;
* each part gets approximately the requested fraction of keys (exactly so only on average).

The key is the person where the record has a subject id (MORPH-II, Adience): all images of one person fall in one
part, so a model is never tested on a face it trained on. Without a subject id (UTKFace, FairFace) the key is the
image, so **the same person may appear in two parts**: UTKFace has several photos of some people and no ids to
group them. The image is named by its content (SHA-256 of the file's bytes) where the file can be read, so
byte-identical copies land in the same part: UTKFace holds such copies under different names and labels, which
would otherwise leak test faces into training. Keys are ``dataset/subject/<id>``, ``dataset/content/<sha256>`` or,
for files that cannot be read, ``dataset/image/<parent folder>/<file name>``; never the absolute path, so moving the
data folder does not change the split. Subject ids are per dataset: the same id in two datasets names two people.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agecurriculum.data.records import FaceRecord

__all__ = ["PARTS", "Split", "check_fractions", "split_key", "part_of", "split_records"]

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Records of one split, each part in input order."""

    train: list[FaceRecord]
    val: list[FaceRecord]
    test: list[FaceRecord]

    def sizes(self) -> dict[str, int]:
        """Number of records in each part."""
        return {part: len(getattr(self, part)) for part in PARTS}


def split_key(record: FaceRecord, by_content: bool = True) -> str:
    """The string that decides a record's part: its person when known, else its image (see the module docstring).

    Args:
        record: the record.
        by_content: name an image by the SHA-256 of its bytes (when the file can be read) rather than its name.
    """
    if record.subject is not None:
        return f"{record.dataset}/subject/{record.subject}"
    if by_content:
        try:
            return f"{record.dataset}/content/{hashlib.sha256(record.path.read_bytes()).hexdigest()}"
        except OSError:
            pass  # a missing or unreadable file: its name still gives it a fixed part
    return f"{record.dataset}/image/{record.path.parent.name}/{record.path.name}"


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """``fractions`` as a (train, val, test) tuple once they are three numbers >= 0 that sum to 1, else ValueError."""
    if (
        not isinstance(fractions, Sequence)
        or len(fractions) != 3
        or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not f >= 0 for f in fractions)
        or abs(sum(fractions) - 1) > 1e-6
    ):
        raise ValueError(f"fractions must be three numbers >= 0 that sum to 1 (train, val, test), got {fractions!r}")
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def part_of(key: str, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a split key (see :func:`split_key`)."""
    train, val, _ = check_fractions(fractions)
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "train" if u < train else "val" if u < train + val else "test"


def split_records(
    records: Iterable[FaceRecord],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    by_content: bool = True,
) -> Split:
    """Splits records into train/validation/test parts, subject-disjoint where subject ids exist.

    Args:
        records: the records, of one or more datasets.
        fractions: wanted share of keys (people, or images without a subject id) in train, val and test.
        seed: another seed gives another, equally deterministic split.
        by_content: key images without a subject id by their content (see :func:`split_key`).

    Raises:
        ValueError: if ``fractions`` are not three non-negative numbers summing to 1.
    """
    fractions = check_fractions(fractions)
    parts: dict[str, list[FaceRecord]] = {part: [] for part in PARTS}
    for record in records:
        parts[part_of(split_key(record, by_content), fractions, seed)].append(record)
    return Split(**parts)
