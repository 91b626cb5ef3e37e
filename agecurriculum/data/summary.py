"""Label statistics of datasets: counts by age bin and gender, cleaning reports and the balancing, in a report.

The age distribution the bin optimizer takes (:func:`age_distribution`, :func:`fit_age_bins`) is
:mod:`agecurriculum.data.distribution`'s, re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agecurriculum.bins import (
    MAX_AGE,
    PAPER_BINS,
    AgeBins,
    BinSolution,
)
from agecurriculum.data.balance import BalancePlan, balance_plan
from agecurriculum.data.datasets import assign_age_bin
from agecurriculum.data.distribution import AgeDistribution, age_distribution, fit_age_bins
from agecurriculum.data.plots import plot_age_histograms, plot_counts_by_gender
from agecurriculum.data.records import (
    FEMALE,
    IGNORE,
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
