"""Comparison protocols: scoring unified-bin predictions against another dataset's own age groups.

Published numbers use each benchmark's native groups: Adience's 8 groups (0-2, 4-6, 8-13, 15-20, 25-32, 38-43,
48-53, 60-100) under its 5-fold protocol, and for UTKFace often the 7 groups 0-3, 4-12, 13-19, 20-30, 31-45, 46-60,
61+. :func:`convert_probs` turns probabilities over the unified bins into probabilities over such groups:

1. each unified bin's probability is spread uniformly over its whole years ``lo..hi`` (the last bin up to
   ``bins.max_age``), as nothing in the model says where inside a bin the age lies;
2. every year goes to the target group that contains it. A year in a gap between groups (Adience has 3, 7, 14,
   21-24, 33-37, 44-47, 54-59) goes to the nearest group by distance to its edge, and a year exactly halfway
   between two groups (3, 7, 14, 35) is split half and half, so no direction is favoured. Years below the first or
   above the last group go to that group.

The probabilities of a group are then summed. The true group of an exact age follows the same rule, except that a
halfway year has no single true group and is IGNORE (:func:`groups_of_ages`).

:data:`PROTOCOLS` names the protocols a run's report applies; a dataset lists the ones its test predictions are
scored with in its :attr:`~agecurriculum.data.sources.DatasetSource.protocols`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agecurriculum.bins import ADIENCE_GROUPS, MAX_AGE, AgeBins
from agecurriculum.data.records import IGNORE, FaceRecord
from agecurriculum.evaluation.metrics import accuracy, one_off_accuracy
from agecurriculum.evaluation.predict import Predictions

__all__ = [
    "ADIENCE_GROUPS",
    "SEVEN_GROUPS",
    "year_to_group",
    "convert_probs",
    "groups_of_ages",
    "group_metrics",
    "adience_protocol",
    "seven_group_protocol",
    "summarize_folds",
    "adience_group_of",
    "DatasetProtocol",
    "PROTOCOLS",
]

# The common 7-group scheme for UTKFace; "61+" is written up to MAX_AGE (older ages go there by the nearest rule).
SEVEN_GROUPS: tuple[tuple[int, int], ...] = ((0, 3), (4, 12), (13, 19), (20, 30), (31, 45), (46, 60), (61, MAX_AGE))


def _check_groups(groups: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    groups = tuple((int(lo), int(hi)) for lo, hi in groups)
    if not groups:
        raise ValueError("at least one target group is needed")
    for i, (lo, hi) in enumerate(groups):
        if not 0 <= lo <= hi or (i and lo <= groups[i - 1][1]):
            raise ValueError(
                f"target groups must be sorted, non-overlapping (lo, hi) pairs with 0 <= lo <= hi; "
                f"got {lo}-{hi} at position {i}"
            )
    return groups


def year_to_group(groups: Sequence[Sequence[int]], max_year: int) -> np.ndarray:
    """``(max_year + 1, T)`` matrix: row y is the share of year y in each target group (rows sum to 1)."""
    groups = _check_groups(groups)
    lo = np.array([g[0] for g in groups])
    hi = np.array([g[1] for g in groups])
    years = np.arange(max_year + 1)[:, None]
    distance = np.maximum(lo - years, 0) + np.maximum(years - hi, 0)  # 0 inside a group
    nearest = distance == distance.min(1, keepdims=True)  # two groups only for a halfway year
    return nearest / nearest.sum(1, keepdims=True)


def convert_probs(age_probs: np.ndarray, bins: AgeBins, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Probabilities over the unified ``bins`` -> probabilities over target ``groups`` (see the module docstring).

    Args:
        age_probs: ``(N, K)`` rows summing to 1.
        bins: the K unified bins.
        groups: sorted, non-overlapping ``(lo, hi)`` target groups, e.g. :data:`ADIENCE_GROUPS`.

    Returns:
        ``(N, T)`` rows summing to 1.
    """
    age_probs = np.asarray(age_probs, dtype=float)
    if age_probs.ndim != 2 or age_probs.shape[1] != len(bins):
        raise ValueError(f"age_probs must be (N, {len(bins)}) for {len(bins)} bins, got {age_probs.shape}")
    spread = np.zeros((len(bins), bins.max_age + 1))
    for k, (lo, hi) in enumerate(bins.groups):
        spread[k, lo : hi + 1] = 1 / (hi - lo + 1)
    return age_probs @ (spread @ year_to_group(groups, bins.max_age))


def groups_of_ages(ages: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """The target group of each exact age; IGNORE for NaN (no exact age) and for a year halfway between groups."""
    ages = np.asarray(ages, dtype=float)
    known = ~np.isnan(ages)
    top = int(ages[known].max()) if known.any() else 0
    shares = year_to_group(groups, max(top, max(hi for _, hi in groups)))
    labels = np.full(len(ages), IGNORE, dtype=np.int64)
    rows = shares[ages[known].astype(int)]
    labels[known] = np.where(rows.max(1) == 1, rows.argmax(1), IGNORE)
    return labels


def group_metrics(group_probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``accuracy``, ``one_off`` and ``n`` (known labels) of group probabilities against true group labels."""
    labels = np.asarray(labels, dtype=np.int64)
    return {
        "accuracy": accuracy(group_probs, labels),
        "one_off": one_off_accuracy(group_probs, labels),
        "n": int((labels != IGNORE).sum()),
    }


def adience_protocol(pred: Predictions, bins: AgeBins, labels: Sequence[int]) -> dict[str, float]:
    """Scores one Adience test fold in its native 8 groups, plus gender accuracy.

    Args:
        pred: predictions on the fold's test images, in the order of ``labels``.
        bins: the unified bins of ``pred``.
        labels: the protocol list's Adience class (0-7) of every item, e.g. ``resolve_split(...).labels``.

    Returns:
        ``accuracy``, ``one_off``, ``n`` (age, against the Adience groups) and ``gender_accuracy``; gender is
        scored on ``pred``'s own targets, as the protocol's gender lists name other faces than its age lists.
    """
    if len(labels) != len(pred):
        raise ValueError(f"{len(labels)} Adience labels for {len(pred)} predictions")
    result = group_metrics(convert_probs(pred.age_probs, bins, ADIENCE_GROUPS), np.asarray(labels))
    return {**result, "gender_accuracy": accuracy(pred.gender_probs, pred.gender_targets)}


def seven_group_protocol(
    pred: Predictions, bins: AgeBins, groups: Sequence[Sequence[int]] = SEVEN_GROUPS
) -> dict[str, float]:
    """Scores predictions in the 7 groups, the true group taken from each item's exact age (others are skipped)."""
    return group_metrics(convert_probs(pred.age_probs, bins, groups), groups_of_ages(pred.exact_ages, groups))


def summarize_folds(per_fold_metrics: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof=1, as the 5-fold protocol reports) of every numeric metric.

    Returns:
        ``{metric: {"mean": m, "std": s, "folds": k}}`` for the metrics present and numeric in every fold; ``std``
        is NaN for a single fold. A NaN in any fold makes that metric's mean NaN, rather than hiding the fold.
    """
    if not per_fold_metrics:
        raise ValueError("no folds to summarize")
    keys = [
        key
        for key, value in per_fold_metrics[0].items()
        if all(isinstance(m.get(key), (int, float)) and not isinstance(m.get(key), bool) for m in per_fold_metrics)
    ]
    summary = {}
    for key in keys:
        values = np.array([m[key] for m in per_fold_metrics], dtype=float)
        std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        summary[key] = {"mean": float(values.mean()), "std": std, "folds": len(values)}
    return summary


def adience_group_of(record: FaceRecord) -> int:
    """The Adience group (0-7) a record's age label lies in; IGNORE for an exact age in a gap between groups.

    A cleaned Adience label is one of its 8 groups, or an exact age that may fall in a gap (no group: skipped).
    """
    for index, (low, high) in enumerate(ADIENCE_GROUPS):
        if low <= record.age_min and record.age_max <= high:
            return index
    return IGNORE


@dataclass(frozen=True)
class DatasetProtocol:
    """A benchmark's way of scoring a dataset's predictions, in a run's report beside the unified-bin results.

    Attributes:
        title: its heading in the report; ``{dataset}`` becomes the dataset's title, ``{part}`` the split scored.
        score: ``score(predictions, bins, records)`` -> metrics, for one dataset's predictions and the records
            they were made on (in order).
    """

    title: str
    score: Callable[[Predictions, AgeBins, Sequence[FaceRecord]], dict[str, float]]


PROTOCOLS: dict[str, DatasetProtocol] = {
    "seven_groups": DatasetProtocol(
        "{dataset}, 7 groups (0-3, 4-12, 13-19, 20-30, 31-45, 46-60, 61+)",
        lambda pred, bins, records: seven_group_protocol(pred, bins),
    ),
    # On a run's own split; the Adience benchmark's 5-fold protocol needs one training per fold
    # (agecurriculum.train.adience_folds runs it).
    "adience_groups": DatasetProtocol(
        "{dataset}, native 8 groups ({part} split)",
        lambda pred, bins, records: adience_protocol(pred, bins, [adience_group_of(r) for r in records]),
    ),
}
