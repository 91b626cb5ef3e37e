"""Label statistics of datasets: the age distribution the bin optimizer needs, and counts by age bin and gender.

:func:`age_distribution` turns records into what :class:`~agecurriculum.bins.AgeBinOptimizer` takes: a histogram of
exact ages plus counts of images whose label is a range that lies in one unified group whatever the boundaries, such
as a range inside constraint group i (Adience's groups themselves; FairFace's 0-2 and 60-69 against Adience's 0-2 and
60-100), because unified group i always contains constraint group i. Any other range (FairFace's 3-9) falls in one
unified group or another depending on the boundaries, so it cannot be placed before the bins exist: it is left out
of the distribution and counted in ``unplaced``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agecurriculum.bins import (
    ADIENCE_GROUPS,
    MAX_AGE,
    PAPER_BINS,
    AgeBinOptimizer,
    AgeBins,
    BinSolution,
)
from agecurriculum.data.balance import BalancePlan, balance_plan
from agecurriculum.data.datasets import IGNORE, assign_age_bin
from agecurriculum.data.plots import plot_age_histograms, plot_counts_by_gender
from agecurriculum.data.records import (
    FEMALE,
    MALE,
    CleaningReport,
    FaceRecord,
    LoadResult,
)

__all__ = [
    "GENDER_COLUMNS",
    "AgeDistribution",
    "age_distribution",
    "fit_age_bins",
    "bin_gender_counts",
    "DatasetSummary",
    "DataReport",
    "build_data_report",
]

GENDER_COLUMNS = ("male", "female", "unknown")


@dataclass
class AgeDistribution:
    """Ages of a set of records in the optimizer's terms."""

    histogram: np.ndarray  # images per exact age 0..max_age (older ages in the last cell)
    group_counts: dict[tuple[int, int], int] = field(default_factory=dict)  # images whose bin is this group's
    unplaced: int = 0  # records whose age range is not exact and has no unified group before the boundaries exist

    def __add__(self, other: AgeDistribution) -> AgeDistribution:
        groups = dict(self.group_counts)
        for group, n in other.group_counts.items():
            groups[group] = groups.get(group, 0) + n
        return AgeDistribution(self.histogram + other.histogram, groups, self.unplaced + other.unplaced)


def age_distribution(
    records: Iterable[FaceRecord],
    constraint_groups: Sequence[tuple[int, int]] = ADIENCE_GROUPS,
    max_age: int = MAX_AGE,
) -> AgeDistribution:
    """Sorts records into exact ages, ranges counted as a constraint group, and unplaceable ranges.

    A range counts as constraint group i when it lies in unified group i for every boundary vector the optimizer may
    choose: inside the group itself, or, for the first group, anywhere up to its end and, for the last group,
    anywhere from its start on (the first unified group starts at 0, the last holds every older age).

    Args:
        records: the labelled images.
        constraint_groups: sorted, non-overlapping ``(lo, hi)`` groups, as :class:`~agecurriculum.bins.AgeBinOptimizer`
            takes them.
        max_age: exact ages above it count at ``max_age``.
    """
    groups = [tuple(g) for g in constraint_groups]
    histogram = np.zeros(max_age + 1, dtype=np.int64)
    group_counts: dict[tuple[int, int], int] = {}
    unplaced = 0
    for record in records:
        if record.exact_age is not None:
            histogram[min(record.exact_age, max_age)] += 1
            continue
        group = _fixed_group(record.age_min, record.age_max, groups)
        if group is None:
            unplaced += 1
        else:
            group_counts[group] = group_counts.get(group, 0) + 1
    return AgeDistribution(histogram, group_counts, unplaced)


def _fixed_group(age_min: int, age_max: int, groups: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The constraint group whose unified group holds ``age_min..age_max`` whatever the boundaries, if any."""
    last = len(groups) - 1
    for i, (lo, hi) in enumerate(groups):
        if (i == 0 or age_min >= lo) and (i == last or age_max <= hi):
            return (lo, hi)
    return None


def fit_age_bins(
    distribution: AgeDistribution,
    constraint_groups: Sequence[tuple[int, int]] = ADIENCE_GROUPS,
    max_age: int = MAX_AGE,
) -> BinSolution:
    """The optimal unified bins for ``distribution`` (see :class:`~agecurriculum.bins.AgeBinOptimizer`)."""
    optimizer = AgeBinOptimizer(constraint_groups=constraint_groups, max_age=max_age)
    return optimizer.fit(distribution.histogram, distribution.group_counts or None)


def bin_gender_counts(records: Iterable[FaceRecord], bins: AgeBins, straddle: str = "ignore") -> tuple[np.ndarray, int]:
    """Images per (age bin, gender) as a ``(len(bins), 3)`` array with columns male, female, unknown.

    Returns:
        The counts, and the number of records whose age range straddles bins and so has no bin under ``straddle``.
    """
    counts = np.zeros((len(bins), len(GENDER_COLUMNS)), dtype=np.int64)
    no_bin = 0
    column = {MALE: 0, FEMALE: 1, None: 2}
    for record in records:
        age_bin = assign_age_bin(record, bins, straddle=straddle)
        if age_bin is None or age_bin == IGNORE:
            no_bin += 1
            continue
        counts[age_bin, column[record.gender]] += 1
    return counts, no_bin


@dataclass
class DatasetSummary:
    """One dataset in a :class:`DataReport`."""

    name: str
    report: CleaningReport  # what the loader cleaned and dropped
    counts: np.ndarray  # (bins, 3) images per age bin x (male, female, unknown)
    no_bin: int  # images whose age range straddles bins (no age label under the straddle rule)
    plan: BalancePlan  # the paper's balancing applied to this dataset's age bins


@dataclass
class DataReport:
    """Per-dataset counts by age bin and gender, cleaning reports, and the bins fitted over all datasets."""

    solution: BinSolution | None  # the optimal unified bins over the label view; None: no labels, the paper's bins
    distribution: AgeDistribution  # what the bins were fitted on
    fitted_on: list[str]  # names of the datasets whose labels the bins were fitted on
    datasets: list[DatasetSummary]

    @property
    def bins(self) -> AgeBins:
        """The bins the counts are in: the fitted ones, or the paper's when there were no labels to fit them on."""
        return PAPER_BINS if self.solution is None else self.solution.bins

    def to_dict(self) -> dict:
        labels = self.bins.labels()
        if self.solution is None:
            bins = {
                "boundaries": list(self.bins.boundaries),
                "groups": [list(g) for g in self.bins.groups],
                "sizes": None,
                "objective": None,
            }
        else:
            bins = self.solution.to_dict()
        return {
            "bins": bins,
            "bins_source": "paper" if self.solution is None else "fitted",
            "bins_fitted_on": self.fitted_on,
            "unplaced_in_histogram": self.distribution.unplaced,
            "datasets": {
                d.name: {
                    "cleaning": d.report.to_dict(),
                    "counts": {label: dict(zip(GENDER_COLUMNS, map(int, row))) for label, row in zip(labels, d.counts)},
                    "straddling_bins": d.no_bin,
                    "balanced_counts": list(d.plan.counts_after),
                }
                for d in self.datasets
            },
        }

    def to_text(self) -> str:
        labels = self.bins.labels()
        if self.solution is None:
            lines = [f"unified age bins: the paper's (no labels to fit them on): {', '.join(labels)}"]
        else:
            lines = [
                f"unified age bins over {', '.join(self.fitted_on)}: {', '.join(labels)}",
                f"  images per bin {list(self.solution.sizes)}, variance {self.solution.objective:.1f}",
            ]
        for d in self.datasets:
            lines += ["", d.report.summary(), f"  {'age bin':>8} {'male':>7} {'female':>7} {'unknown':>7} {'total':>7}"]
            for label, row in zip(labels, d.counts):
                lines.append(f"  {label:>8} {row[0]:>7} {row[1]:>7} {row[2]:>7} {row.sum():>7}")
            lines.append(
                f"  {'all':>8} {d.counts[:, 0].sum():>7} {d.counts[:, 1].sum():>7} {d.counts[:, 2].sum():>7} "
                f"{d.counts.sum():>7}"
            )
            if d.no_bin:
                lines.append(
                    f"  {d.no_bin} images have an age range that straddles bins (no age label, gender still used)"
                )
            lines.append(f"  balanced (median rule): {list(d.plan.counts_after)}")
        return "\n".join(lines)

    def write_plots(self, directory: str | Path) -> list[Path]:
        """Writes ``age_bins.png`` (before/after balancing) and ``age_bins_by_gender.png``; returns their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        labels = self.bins.labels()
        before = {d.name: list(d.plan.counts_before) for d in self.datasets}
        after = {d.name: list(d.plan.counts_after) for d in self.datasets}
        by_gender = {d.name: {g: list(d.counts[:, i]) for i, g in enumerate(GENDER_COLUMNS[:2])} for d in self.datasets}
        return [
            plot_age_histograms(before, after, labels, directory / "age_bins.png"),
            plot_counts_by_gender(by_gender, labels, directory / "age_bins_by_gender.png"),
        ]


def build_data_report(
    image_results: Mapping[str, LoadResult],
    label_results: Mapping[str, LoadResult],
    straddle: str = "ignore",
    seed: int = 0,
) -> DataReport:
    """Fits the bins on ``label_results`` and summarises each dataset of ``image_results`` in them.

    Args:
        image_results: the datasets as trained on (records whose images exist), by name.
        label_results: the label view the bins are fitted on (e.g. :func:`~agecurriculum.data.sources.label_records`);
            when empty, the counts are in the paper's bins (:data:`~agecurriculum.bins.PAPER_BINS`).
        straddle: the rule for age ranges that straddle bins (see :func:`~agecurriculum.data.datasets.assign_age_bin`).
        seed: seed of the balancing plan.
    """
    distribution = sum((age_distribution(r.records) for r in label_results.values()), _empty_distribution())
    solution = fit_age_bins(distribution) if label_results else None
    bins = PAPER_BINS if solution is None else solution.bins
    summaries = []
    for name, result in image_results.items():
        counts, no_bin = bin_gender_counts(result.records, bins, straddle)
        age_bins = [assign_age_bin(r, bins, straddle) for r in result.records]
        plan = balance_plan([b for b in age_bins if b is not None], seed=seed, num_bins=len(bins))
        summaries.append(DatasetSummary(name, result.report, counts, no_bin, plan))
    return DataReport(solution, distribution, list(label_results), summaries)


def _empty_distribution(max_age: int = MAX_AGE) -> AgeDistribution:
    return AgeDistribution(np.zeros(max_age + 1, dtype=np.int64))
