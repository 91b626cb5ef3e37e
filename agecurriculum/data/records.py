"""The one record type every dataset loader returns, and the report of what a loader cleaned or dropped.

Datasets disagree on how they label age (an exact age, an Adience group, a FairFace decade) and on what else they
know (race, the person's id). A :class:`FaceRecord` holds all of it in one shape: the age as an inclusive range
``[age_min, age_max]`` (equal ends for an exact age), the gender as 0 (male) / 1 (female) / None, and optional race,
subject id and face box. Loaders never silently fix or skip a label: each change goes into a
:class:`CleaningReport` with its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "IGNORE",
    "MALE",
    "FEMALE",
    "STRADDLE_RULES",
    "Straddle",
    "FaceRecord",
    "CleaningReport",
    "LoadResult",
    "merge_results",
]

#: The ``gender`` of a man's :class:`FaceRecord` (0, as in UTKFace's file names).
MALE = 0
#: The ``gender`` of a woman's :class:`FaceRecord`.
FEMALE = 1

#: The label of an unknown age bin or gender; the losses' ``ignore_index``.
IGNORE = -100

Straddle = Literal["ignore", "overlap", "drop", "error"]
#: The rules for age ranges that straddle bins, the values of ``straddle`` in
#: :func:`~agecurriculum.data.datasets.assign_age_bin` and :class:`~agecurriculum.data.datasets.FaceDataset` (here,
#: with the labels, so that the command line's help names them without loading torch).
STRADDLE_RULES: tuple[str, ...] = ("ignore", "overlap", "drop", "error")


@dataclass(frozen=True)
class FaceRecord:
    """One labelled face image.

    Attributes:
        path: the image file.
        dataset: name of the dataset it belongs to, e.g. ``"utkface"``.
        age_min: youngest age the label allows, in years.
        age_max: oldest age the label allows (``== age_min`` for an exact age).
        gender: ``MALE`` (0), ``FEMALE`` (1) or None when unknown.
        race: the dataset's race label, verbatim, or None.
        subject: id of the person, for subject-disjoint splits, or None.
        box: face box ``(x0, y0, x1, y1)`` in the image, when the dataset gives one, or None.
    """

    path: Path
    dataset: str
    age_min: int
    age_max: int
    gender: int | None = None
    race: str | None = None
    subject: str | None = None
    box: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):  # Path(a Path) parses it again: a third of loading a dataset's labels
            object.__setattr__(self, "path", Path(self.path))
        if not 0 <= self.age_min <= self.age_max:
            raise ValueError(f"{self.path}: age range [{self.age_min}, {self.age_max}] is not 0 <= min <= max")
        if self.gender not in (None, MALE, FEMALE):
            raise ValueError(f"{self.path}: gender must be 0 (male), 1 (female) or None, got {self.gender!r}")

    @property
    def exact_age(self) -> int | None:
        """The age in years when the label is exact, else None."""
        return self.age_min if self.age_min == self.age_max else None


@dataclass
class CleaningReport:
    """What a loader did to the labels of one dataset.

    ``cleaned`` entries were kept after a documented fix (e.g. a UTKFace name with a missing race field); ``dropped``
    entries were left out. Each entry is ``(item, reason)`` where ``item`` names the file or row.
    """

    dataset: str
    total: int = 0  # items the loader looked at (files or label rows)
    cleaned: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def clean(self, item: str, reason: str) -> None:
        self.cleaned.append((item, reason))

    def drop(self, item: str, reason: str) -> None:
        self.dropped.append((item, reason))

    @property
    def kept(self) -> int:
        return self.total - len(self.dropped)

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of items per reason: ``{"cleaned": {reason: n}, "dropped": {reason: n}}``."""
        return {
            "cleaned": dict(Counter(reason for _, reason in self.cleaned)),
            "dropped": dict(Counter(reason for _, reason in self.dropped)),
        }

    def summary(self) -> str:
        """A few human-readable lines: totals, then one line per reason with its count."""
        lines = [
            f"{self.dataset}: {self.total} items, {self.kept} kept, {len(self.cleaned)} cleaned, "
            f"{len(self.dropped)} dropped"
        ]
        for kind, reasons in self.counts().items():
            for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {kind} {n}: {reason}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "total": self.total, "kept": self.kept, **self.counts()}


@dataclass
class LoadResult:
    """A loader's output: the records and the cleaning report."""

    records: list[FaceRecord]
    report: CleaningReport


def merge_results(results: Sequence[LoadResult]) -> LoadResult:
    """Several loads of one dataset (e.g. its label tables) as one: records in order, one summed report."""
    report = CleaningReport(results[0].report.dataset)
    for result in results:
        report.total += result.report.total
        report.cleaned += result.report.cleaned
        report.dropped += result.report.dropped
    return LoadResult([r for result in results for r in result.records], report)
