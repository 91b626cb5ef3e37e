"""Ages of labelled records in the terms of :class:`~agecurriculum.bins.AgeBinOptimizer`, without torch.

:func:`age_distribution` turns records into what :class:`~agecurriculum.bins.AgeBinOptimizer` takes: a histogram of
exact ages plus counts of images whose label is a range that lies in one unified group whatever the boundaries, such
as a range inside constraint group i (Adience's groups themselves; FairFace's 0-2 and 60-69 against Adience's 0-2 and
60-100), because unified group i always contains constraint group i. Any other range (FairFace's 3-9) falls in one
unified group or another depending on the boundaries, so it cannot be placed before the bins exist: it is left out
of the distribution and counted in ``unplaced``.

``agecurriculum bins`` reads it without the training code; :mod:`agecurriculum.data.summary` re-exports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agecurriculum.bins import ADIENCE_GROUPS, MAX_AGE, AgeBinOptimizer, BinSolution
from agecurriculum.data.records import FaceRecord

__all__ = ["AgeDistribution", "age_distribution", "fit_age_bins"]


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
