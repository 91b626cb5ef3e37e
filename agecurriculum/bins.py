"""Unified age bins: one set of age groups shared by every dataset.

Datasets label age differently: UTKFace and MORPH-II give exact ages, Adience gives only groups with gaps between
them (0-2, 4-6, 8-13, 15-20, 25-32, 38-43, 48-53, 60-100). The unified bins are K contiguous groups
``[0, c1], [c1+1, c2], ..., [c_{K-1}+1, max_age]`` whose integer boundaries satisfy ``c_i in [hi_i, lo_{i+1} - 1]``,
so that constraint group i always falls inside unified group i and group-labelled images keep a valid label.

Among all such boundary vectors, :class:`AgeBinOptimizer` picks the one that minimises the population variance of
the K group sizes, counted over a histogram of exact ages plus the images that carry only a group label. Because the
total is fixed, minimising the variance is the same as minimising the sum of squared sizes, an integer objective that
OR-Tools CP-SAT solves exactly: each boundary is an integer variable over its domain, the size of a group is a
difference of two entries of the cumulative-count table (``AddElement``), and each size is squared with a
multiplication constraint. Among all optima the lexicographically smallest boundary vector is returned, so results
do not depend on solver internals.

Without constraint groups (``AgeBinOptimizer(n_bins=K)``) the bins come from the labels alone: any K contiguous bins
of at least ``min_width`` ages each. Labels may then be exact ages or any age ranges (FairFace's ``20-29``, Adience's
``(25, 32)``, ``70+``; :func:`parse_age_label`); a range counts in a bin only when it lies inside it. That problem is
solved exactly by a dynamic programme over (bins left, first age) in ``O(K * max_age**2)`` integer steps; see
:class:`AgeBinOptimizer` for its objective and what becomes of a range that a boundary cuts.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from agecurriculum.checks import as_int, is_int

if TYPE_CHECKING:  # CP-SAT is imported where it runs (AgeBinOptimizer._solve): it takes 0.3 s to load, and the
    # constants and label parsers here, which every dataset loader and CLI command reads, do not need it
    from ortools.sat.python import cp_model

MAX_AGE = 100
#: Adience's eight age groups as ``(first, last)`` years, both included, which are the constraint groups of
#: :class:`AgeBinOptimizer` (unified bin ``k`` must contain group ``k``).
ADIENCE_GROUPS: tuple[tuple[int, int], ...] = (
    (0, 2),
    (4, 6),
    (8, 13),
    (15, 20),
    (25, 32),
    (38, 43),
    (48, 53),
    (60, 100),
)
# CP-SAT works in int64; with at most 2**30 images every squared size and their sum stay below 2**60.
_MAX_TOTAL = 2**30
_SEED = 0  # fixed seed + one worker: the solver explores the same way on every run.


@dataclass(frozen=True)
class AgeBins:
    """Contiguous age groups ``[0, b1], [b1+1, b2], ..., [b_last+1, max_age]``.

    Attributes:
        boundaries: Last age of every group but the final one, strictly increasing, each in ``[0, max_age)``.
        max_age: Last age of the final group; older ages are counted in the final group too.
    """

    boundaries: tuple[int, ...]
    max_age: int = MAX_AGE

    def __post_init__(self) -> None:
        max_age = as_int(self.max_age, "max_age")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        bounds = tuple(as_int(b, f"boundary {i}") for i, b in enumerate(self.boundaries))
        for i, b in enumerate(bounds):
            if not 0 <= b < max_age:
                raise ValueError(f"boundary {i} = {b} is outside [0, {max_age})")
            if i and b <= bounds[i - 1]:
                raise ValueError(f"boundaries must be strictly increasing, got {list(bounds)}")
        # Normalise lists and numpy ints so that equality and hashing behave.
        object.__setattr__(self, "boundaries", bounds)
        object.__setattr__(self, "max_age", max_age)

    @classmethod
    def from_groups(cls, groups: Iterable[Sequence[int]]) -> AgeBins:
        """Builds bins from contiguous ``(lo, hi)`` groups starting at age 0, e.g. ``[(0, 2), (3, 6), ...]``."""
        groups = [tuple(g) for g in groups]
        if not groups:
            raise ValueError("at least one group is needed")
        expected_lo = 0
        for lo, hi in groups:
            if lo != expected_lo or hi < lo:
                raise ValueError(f"groups must be contiguous from age 0; group {lo}-{hi} should start at {expected_lo}")
            expected_lo = hi + 1
        return cls(tuple(hi for _, hi in groups[:-1]), groups[-1][1])

    @property
    def groups(self) -> tuple[tuple[int, int], ...]:
        """The ``(lo, hi)`` age range of every group, both ends inclusive."""
        los = (0,) + tuple(b + 1 for b in self.boundaries)
        his = self.boundaries + (self.max_age,)
        return tuple(zip(los, his))

    def __len__(self) -> int:
        return len(self.boundaries) + 1

    def bin_of(self, age: int) -> int:
        """Index of the group holding ``age``; ages above ``max_age`` go to the last group."""
        age = as_int(age, "age")
        if age < 0:
            raise ValueError(f"age must be >= 0, got {age}")
        return bisect.bisect_left(self.boundaries, age)

    def labels(self) -> list[str]:
        """Human-readable group names such as ``"0-2"``."""
        return [f"{lo}-{hi}" for lo, hi in self.groups]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` reads it back."""
        return {"boundaries": list(self.boundaries), "max_age": self.max_age}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgeBins:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping):
            raise ValueError(f"AgeBins data must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {"boundaries", "max_age"}
        if unknown:
            raise ValueError(f"unknown AgeBins field(s): {sorted(map(str, unknown))}")
        if "boundaries" not in data:
            raise ValueError("AgeBins data lacks the field 'boundaries'")
        if not isinstance(data["boundaries"], (list, tuple)):
            raise ValueError("AgeBins field 'boundaries' must be a list of integers")
        return cls(tuple(data["boundaries"]), data.get("max_age", MAX_AGE))


#: The paper's bins 0-2, 3-6, 7-14, 15-23, 24-34, 35-45, 46-59 and 60-100, found by the optimizer on the age
#: histogram of its training datasets.
PAPER_BINS = AgeBins((2, 6, 14, 23, 34, 45, 59))
# Years above its lower end that stand for the open last bin when no training ages are given.
OPEN_BIN_OFFSET = 10


def representative_ages(
    bins: AgeBins, train_ages: Iterable[float] | None = None, last_bin_age: float | None = None
) -> np.ndarray:
    """The age ``m_k`` standing for each bin in the expected age ``sum_k p_k * m_k`` of a face.

    The mean exact training age inside the bin when training ages are given (the estimate that minimises the
    squared error of a correctly classified face; training ages crowd towards the middle of the population, e.g.
    15-23 holds more 20-23 than 15-18 year olds), else the midpoint of ``[lo, hi]``. The last bin (e.g. 60-100) is
    open-ended, since :meth:`AgeBins.bin_of` puts older ages there too, and few people are near its midpoint (80),
    so without training ages in it it stands at ``lo +`` :data:`OPEN_BIN_OFFSET`. A release keeps the ages it was
    made with (``extra.rep_ages``); this is what a release without them uses.

    Args:
        bins: the unified bins.
        train_ages: exact training ages; the mean of those inside a bin represents it (bins without any keep
            their midpoint, the last bin ``lo + 10``).
        last_bin_age: an explicit age for the last bin; overrides ``train_ages`` there.

    Returns:
        ``(K,)`` float array.
    """
    groups = bins.groups
    reps = np.array([(lo + hi) / 2 for lo, hi in groups], dtype=float)
    reps[-1] = groups[-1][0] + OPEN_BIN_OFFSET
    ages = np.asarray([] if train_ages is None else list(train_ages), dtype=float)  # numpy arrays too
    if ages.size:
        ids = np.searchsorted(bins.boundaries, ages, side="left")  # the bin of each age, as AgeBins.bin_of
        for k in range(len(groups)):
            if (ids == k).any():
                reps[k] = ages[ids == k].mean()
    if last_bin_age is not None:
        reps[-1] = float(last_bin_age)
    return reps


@dataclass(frozen=True)
class BinSolution:
    """Result of :meth:`AgeBinOptimizer.fit`.

    Attributes:
        bins: The optimal unified bins.
        sizes: Number of images in every group (exact ages plus group-labelled images).
        objective: Population variance (ddof=0) of ``sizes``.
        left_out: Group-labelled images counted in no group because a boundary cuts their range (only without
            constraint groups and with ``allow_left_out=True``; always 0 otherwise). Not part of :meth:`to_dict`,
            whose shape is the same in both modes.
    """

    bins: AgeBins
    sizes: tuple[int, ...]
    objective: float
    left_out: int = 0

    @property
    def boundaries(self) -> tuple[int, ...]:
        return self.bins.boundaries

    @property
    def groups(self) -> tuple[tuple[int, int], ...]:
        return self.bins.groups

    def to_dict(self) -> dict[str, Any]:
        """``{"boundaries": [...], "groups": [[lo, hi], ...], "sizes": [...], "objective": float}``."""
        return {
            "boundaries": list(self.boundaries),
            "groups": [list(g) for g in self.groups],
            "sizes": list(self.sizes),
            "objective": float(self.objective),
        }


def _int_array(values: Any, what: str, upper: int, upper_name: str) -> np.ndarray:
    """Converts to a 1-D int64 array of integers no larger than ``upper``.

    Integers and integral floats (``20.0``) are accepted; booleans, strings, None and fractions are not. Raises
    ValueError naming the first bad item as ``"{what} {i}"`` and its value; ``upper_name`` says what ``upper`` is.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        if values.ndim != 1:
            raise ValueError(f"{what}s must be a flat sequence, got an array of shape {values.shape}")
        bad = ~(np.isfinite(values) & (values == np.round(values))) if values.dtype.kind == "f" else None
        if bad is not None and bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{what} {i} must be an integer, got {values[i].item()!r}")
        # Compared before the cast: an integral float beyond int64 would wrap around to a negative number.
        if values.size and values.max() > upper:
            i = int(np.argmax(values > upper))
            raise ValueError(f"{what} {i} = {values[i].item()!r} exceeds {upper}, {upper_name}")
        return values.astype(np.int64)
    try:
        items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    except TypeError:
        raise ValueError(f"{what}s must be a flat sequence, got {type(values).__name__}") from None
    # Item by item rather than np.asarray: that would read True as 1 among numbers, and overflow on huge integers.
    checked = []
    for i, value in enumerate(items):
        if isinstance(value, (list, tuple, np.ndarray)):
            raise ValueError(f"{what}s must be a flat sequence; item {i} is {value!r}")
        number = as_int(value, f"{what} {i}")
        if number > upper:
            raise ValueError(f"{what} {i} = {value!r} exceeds {upper}, {upper_name}")
        checked.append(number)
    return np.array(checked, dtype=np.int64)


# Ages above max_age count in the last group, but a value beyond any human age is a data error (a birth year, a
# count of days, an overflow) that should not vanish into the last group.
AGE_CEILING = 1000


def histogram_from_ages(ages: Iterable[int], max_age: int = MAX_AGE) -> np.ndarray:
    """Counts exact ages into a histogram of length ``max_age + 1``; older ages go into the last cell.

    Ages are integers; integral floats such as ``20.0`` count as those integers. Booleans, strings, None and
    fractional ages are refused, as are ages above ``max(AGE_CEILING, max_age)``, which are data errors.

    Raises:
        ValueError: If an age is negative, not an integer or above the ceiling (the message names its position and
            value).
    """
    max_age = as_int(max_age, "max_age")
    if max_age < 0:
        raise ValueError(f"max_age must be >= 0, got {max_age}")
    ages = ages if isinstance(ages, np.ndarray) else list(ages)
    ceiling = max(AGE_CEILING, max_age)
    arr = _int_array(ages, "age", ceiling, "the oldest plausible age")
    if (arr < 0).any():
        i = int(np.argmax(arr < 0))
        raise ValueError(f"age {i} is negative: {ages[i]!r}")
    return np.bincount(np.minimum(arr, max_age), minlength=max_age + 1)


def parse_groups(text: str) -> tuple[tuple[int, int], ...]:
    """Parses ``"0-2,4-6,8-13"`` into ``((0, 2), (4, 6), (8, 13))``; order and overlap are checked by the optimizer."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip():
        raise ValueError("no age groups given; expected e.g. '0-2,4-6,8-13'")
    groups = []
    for item in items:
        match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item)
        if not match:
            raise ValueError(f"age group {item!r} is not of the form LO-HI (e.g. '25-32')")
        groups.append((int(match.group(1)), int(match.group(2))))
    return tuple(groups)


# Cells that mean "no age here" (pandas writes NaN, Adience writes None); compared in lower case.
MISSING_LABELS = frozenset({"", "none", "na", "n/a", "nan", "null"})
_EXACT_LABEL = re.compile(r"(\d+)(?:\.0*)?")  # 35, or 35.0 as spreadsheets and pandas write integers
_RANGE_LABELS = (re.compile(r"(\d+)\s*-\s*(\d+)"), re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)"))
_OPEN_LABELS = (re.compile(r"(\d+)\s*\+"), re.compile(r"more\s+than\s+(\d+)", re.IGNORECASE))


def parse_age_label(text: str, max_age: int = MAX_AGE) -> tuple[int, int] | None:
    """Reads one age label of an annotation file as an inclusive ``(lo, hi)`` range.

    Understood forms (spaces around the numbers are allowed):

    * an exact age, ``35`` (or ``35.0``) -> ``(35, 35)``;
    * a range, ``20-29`` (FairFace) or ``(25, 32)`` (Adience) -> ``(20, 29)``;
    * an open range, ``70+`` or ``more than 70`` (FairFace) -> ``(70, max_age)``: FairFace's "more than 70" is its
      class of the 70-year-olds and older, and ages above ``max_age`` count in the last bin anyway.

    Args:
        text: the cell.
        max_age: where an open range ends.

    Returns:
        The range, or None for a missing value (a blank cell or one of :data:`MISSING_LABELS`, any case).

    Raises:
        ValueError: for any other text, or a range whose first age exceeds its last.
    """
    text = text.strip()
    if text.lower() in MISSING_LABELS:
        return None
    match = _EXACT_LABEL.fullmatch(text)
    if match:
        return int(match[1]), int(match[1])
    for pattern in _RANGE_LABELS:
        match = pattern.fullmatch(text)
        if match:
            lo, hi = int(match[1]), int(match[2])
            if lo > hi:
                raise ValueError(f"age range {text!r} starts after it ends")
            return lo, hi
    for pattern in _OPEN_LABELS:
        match = pattern.fullmatch(text)
        if match:
            return int(match[1]), max(int(match[1]), max_age)
    raise ValueError(
        f"age label {text!r} is not understood; expected an age (35), a range (20-29 or (25, 32)) or an open range "
        "(70+ or 'more than 70')"
    )


def _validate_groups(groups: Iterable[Sequence[int]], max_age: int) -> tuple[tuple[int, int], ...]:
    checked = []
    for i, group in enumerate(groups):
        if isinstance(group, str) or len(group) != 2:
            raise ValueError(f"constraint group {i} must be a (lo, hi) pair, got {group!r}")
        lo, hi = (as_int(v, f"constraint group {i}") for v in group)
        if lo > hi:
            raise ValueError(f"constraint group {lo}-{hi} has lo > hi")
        if lo < 0 or hi > max_age:
            raise ValueError(f"constraint group {lo}-{hi} is outside [0, {max_age}]")
        if checked and lo <= checked[-1][1]:
            prev = checked[-1]
            raise ValueError(
                f"constraint groups must be sorted and non-overlapping: {prev[0]}-{prev[1]} then {lo}-{hi}"
            )
        checked.append((lo, hi))
    if not checked:
        raise ValueError("at least one constraint group is needed")
    return tuple(checked)


class AgeBinOptimizer:
    """Finds the unified age bins with the most even group sizes, exactly.

    **With constraint groups** (the default: Adience's): unified group i must contain constraint group i, and OR-Tools
    CP-SAT solves in two phases: first minimise the sum of squared group sizes (the variance times K, plus a
    constant), then fix that optimum and minimise c1, fix it, minimise c2, and so on, which yields the
    lexicographically smallest boundary vector among all optima. One search worker and a fixed seed keep runs
    deterministic.

    **From the labels alone** (``n_bins=K``, no constraint groups): the bins are any K contiguous groups
    ``[0, c1], [c1+1, c2], ..., [c_{K-1}+1, max_age]`` of at least ``min_width`` ages each, and ``group_counts`` may
    name any age range (FairFace's ``20-29``, Adience's ``(25, 32)``). A range counts in a bin only when it lies
    inside it; a boundary that cuts a range leaves its images in no bin ("left out"), as the trainer's default
    ``straddle="ignore"`` leaves them without an age class. The objective is lexicographic:

    1. the most images in bins (the fewest left out), then
    2. the lowest variance of the bin sizes, then
    3. the lexicographically smallest boundary vector.

    The variance alone would reward cutting ranges: an image left out shrinks an oversized bin. On FairFace's
    20,858 decade labels (both of its tables, with the children added in 2026-12) it puts a boundary inside every
    decade but the last and keeps 678 images in bins, the "most even" sizes 0, 0, 0, 0, 0, 0, 0, 678. Keeping images
    first gives FairFace's own decades instead. And by default no image
    may be left out at all (``allow_left_out=False``): then every labelled image keeps exactly one bin, as in the
    constrained mode, and when no K bins manage that (FairFace's decades next to Adience's groups cut each other;
    one image labelled ``(8, 23)`` rules out every boundary from 8 to 22) :meth:`fit` raises ValueError naming the
    ranges it would cut, rather than return bins that silently drop images. ``allow_left_out=True`` accepts the
    loss and reports it in :attr:`BinSolution.left_out`.

    This mode is solved by a dynamic programme over (bins left, first age of the next bin), exact in integers with
    ``O(K * max_age**2)`` steps; ``time_limit_s`` does not apply to it. K is the caller's choice: the variance of the
    sizes falls as K grows (the bins get smaller), so it cannot choose K, and a criterion that could (how finely a
    model can tell ages apart) lies outside the annotation files.

    Args:
        constraint_groups: Sorted, non-overlapping ``(lo, hi)`` groups inside ``[0, max_age]``; unified group i
            must contain constraint group i. None (the default) means :data:`ADIENCE_GROUPS`, or no constraint
            groups at all when ``n_bins`` is given.
        max_age: Last age of the last group; older ages are counted in it.
        time_limit_s: Wall-clock budget for all CP-SAT solves together, or None for no limit.
        n_bins: Number of bins, found from the labels alone; only without ``constraint_groups``.
        min_width: Fewest ages in a bin (with ``n_bins``).
        allow_left_out: Accept bins that cut a labelled range, leaving its images out (with ``n_bins``).

    Raises:
        ValueError: On malformed groups or settings, or ``n_bins`` bins of ``min_width`` ages that do not fit in
            ``0..max_age``.
    """

    def __init__(
        self,
        constraint_groups: Iterable[Sequence[int]] | None = None,
        max_age: int = MAX_AGE,
        time_limit_s: float | None = 60,
        *,
        n_bins: int | None = None,
        min_width: int = 1,
        allow_left_out: bool = False,
    ) -> None:
        self.max_age = as_int(max_age, "max_age")
        if self.max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {self.max_age}")
        if time_limit_s is not None and not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive or None, got {time_limit_s!r}")
        self.time_limit_s = time_limit_s
        self.min_width = as_int(min_width, "min_width")
        self.allow_left_out = bool(allow_left_out)
        if n_bins is None:
            if self.min_width != 1 or self.allow_left_out:
                raise ValueError("min_width and allow_left_out need n_bins (bins from the labels alone)")
            groups = ADIENCE_GROUPS if constraint_groups is None else constraint_groups
            self.constraint_groups: tuple[tuple[int, int], ...] | None = _validate_groups(groups, self.max_age)
            self.n_bins = len(self.constraint_groups)
        else:
            if constraint_groups is not None:
                raise ValueError("give constraint_groups or n_bins, not both (the groups fix the number of bins)")
            self.constraint_groups = None
            self.n_bins = as_int(n_bins, "n_bins")
            self._check_widths()

    def _check_widths(self) -> None:
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {self.n_bins}")
        if self.min_width < 1:
            raise ValueError(f"min_width must be >= 1, got {self.min_width}")
        if self.n_bins * self.min_width > self.max_age + 1:
            raise ValueError(
                f"{self.n_bins} bins of at least {self.min_width} age(s) need {self.n_bins * self.min_width} ages, "
                f"but 0..{self.max_age} has {self.max_age + 1}"
            )

    @property
    def domains(self) -> list[range]:
        """Allowed values of every boundary: ``c_i in [hi_i, lo_{i+1} - 1]``, or, from the labels alone, those that
        leave room for ``min_width`` ages in every bin."""
        g = self.constraint_groups
        if g is None:
            k, w = self.n_bins, self.min_width
            return [range(i * w - 1, self.max_age - (k - i) * w + 1) for i in range(1, k)]
        return [range(g[i][1], g[i + 1][0]) for i in range(len(g) - 1)]

    def fit(
        self,
        age_histogram: Sequence[int] | np.ndarray,
        group_counts: Mapping[str | tuple[int, int] | int, int] | None = None,
    ) -> BinSolution:
        """Returns the optimal bins for the given counts.

        Args:
            age_histogram: ``age_histogram[a]`` = number of images of exact age ``a``; cells beyond ``max_age``
                count in the last group.
            group_counts: Images labelled only with an age range. With constraint groups, keyed by ``"lo-hi"``,
                ``(lo, hi)`` or the group's index; they count in the unified group of the same index. From the
                labels alone, keyed by any label :func:`parse_age_label` reads (``"20-29"``, ``"(25, 32)"``,
                ``"70+"``) or ``(lo, hi)``; ranges past ``max_age`` end there.

        Raises:
            ValueError: On malformed counts, if there is nothing to balance, or (from the labels alone, without
                ``allow_left_out``) if every choice of bins cuts a labelled range.
            RuntimeError: If the solver does not prove optimality within ``time_limit_s``.
        """
        if self.constraint_groups is None:
            return self._fit_from_labels(age_histogram, group_counts)
        hist = self._histogram(age_histogram)
        extra = self._group_vector(group_counts)
        total = int(hist.sum()) + sum(extra)
        if total == 0:
            raise ValueError("all counts are zero: nothing to balance")
        if total > _MAX_TOTAL:
            raise ValueError(f"{total} images exceed the supported {_MAX_TOTAL} (CP-SAT integer range)")
        cumulative = [int(v) for v in np.cumsum(hist)]
        boundaries = self._solve(cumulative, extra, total)
        # Sizes and variance are recomputed here from integers, independent of the solver.
        ends = [cumulative[c] for c in boundaries] + [cumulative[-1]]
        sizes = tuple(e - s + x for e, s, x in zip(ends, [0] + ends[:-1], extra))
        return BinSolution(AgeBins(boundaries, self.max_age), sizes, _variance(sizes))

    def _fit_from_labels(
        self, age_histogram: Sequence[int] | np.ndarray, group_counts: Mapping[Any, int] | None
    ) -> BinSolution:
        # Labels may all be ranges (FairFace's are), so here an empty histogram is no exact ages rather than an error.
        empty = len(age_histogram) == 0
        hist = np.zeros(self.max_age + 1, dtype=np.int64) if empty else self._histogram(age_histogram)
        ranges = self._range_counts(group_counts)
        total = int(hist.sum()) + sum(ranges.values())
        if total == 0:
            raise ValueError("all counts are zero: nothing to balance")
        if total > _MAX_TOTAL:
            raise ValueError(f"{total} images exceed the supported {_MAX_TOTAL} (squared sizes must fit in int64)")
        table = _size_table(hist, ranges)
        bins = AgeBins(_best_boundaries(table, self.n_bins, self.min_width), self.max_age)
        sizes = tuple(int(table[lo, hi]) for lo, hi in bins.groups)
        left_out = total - sum(sizes)
        if left_out and not self.allow_left_out:
            raise ValueError(self._left_out_message(bins, ranges, left_out))
        return BinSolution(bins, sizes, _variance(sizes), left_out)

    def _range_counts(self, group_counts: Mapping[Any, int] | None) -> dict[tuple[int, int], int]:
        """``group_counts`` as ``{(lo, hi): count}`` with ranges past ``max_age`` ending there."""
        counts: dict[tuple[int, int], int] = {}
        keys: dict[tuple[int, int], Any] = {}
        for key, value in (group_counts or {}).items():
            lo, hi = self._range_of(key)
            if (lo, hi) in keys:
                raise ValueError(f"group_counts names the range {lo}-{hi} twice (keys {keys[lo, hi]!r} and {key!r})")
            keys[lo, hi] = key
            count = as_int(value, f"group_counts[{key!r}]")
            if count < 0:
                raise ValueError(f"group_counts[{key!r}] is negative: {count}")
            clamped = (min(lo, self.max_age), min(hi, self.max_age))
            counts[clamped] = counts.get(clamped, 0) + count
        return counts

    def _range_of(self, key: Any) -> tuple[int, int]:
        if isinstance(key, str):
            try:
                pair = parse_age_label(key, self.max_age)
            except ValueError as err:
                raise ValueError(f"group_counts key: {err}") from None
        elif isinstance(key, tuple) and len(key) == 2 and all(is_int(v) for v in key):
            pair = (int(key[0]), int(key[1]))
        else:
            pair = None
        if pair is None or not 0 <= pair[0] <= pair[1]:
            raise ValueError(f"group_counts key {key!r} is no age range; use e.g. '20-29' or (20, 29)")
        ceiling = max(AGE_CEILING, self.max_age)
        if pair[1] > ceiling:
            raise ValueError(f"group_counts key {key!r} ends above {ceiling}, the oldest plausible age")
        return pair

    def _left_out_message(self, bins: AgeBins, ranges: Mapping[tuple[int, int], int], left_out: int) -> str:
        cut = sorted(
            ((n, lo, hi) for (lo, hi), n in ranges.items() if n and bins.bin_of(lo) != bins.bin_of(hi)),
            key=lambda item: (-item[0], item[1], item[2]),
        )
        largest = ", ".join(f"{n} labelled {lo}-{hi}" for n, lo, hi in cut[:3])
        return (
            f"no {self.n_bins} bins of at least {self.min_width} age(s) keep every age range whole: the best cuts "
            f"{len(cut)} range(s) and leaves out {left_out} images ({largest}{', ...' if len(cut) > 3 else ''}); "
            "allow that with allow_left_out=True (agecurriculum bins --allow-left-out), or ask for fewer bins"
        )

    def _histogram(self, age_histogram: Sequence[int] | np.ndarray) -> np.ndarray:
        hist = _int_array(age_histogram, "count at age", _MAX_TOTAL, "the most images the solver supports")
        if hist.size == 0:
            raise ValueError("the age histogram is empty: nothing to balance")
        if (hist < 0).any():
            raise ValueError(f"count at age {int(np.argmax(hist < 0))} is negative")
        # Fold ages above max_age into the last cell and pad short histograms with zeros.
        folded = np.zeros(self.max_age + 1, dtype=np.int64)
        head = hist[: self.max_age + 1]
        folded[: head.size] = head
        folded[-1] += hist[self.max_age + 1 :].sum()
        return folded

    def _group_vector(self, group_counts: Mapping[Any, int] | None) -> list[int]:
        extra = [0] * len(self.constraint_groups)
        named = set()
        for key, value in (group_counts or {}).items():
            i = self._group_index(key)
            if i in named:
                raise ValueError(f"group_counts names constraint group {i} twice (key {key!r})")
            named.add(i)
            count = as_int(value, f"group_counts[{key!r}]")
            if count < 0:
                raise ValueError(f"group_counts[{key!r}] is negative: {count}")
            extra[i] = count
        return extra

    def _group_index(self, key: Any) -> int:
        groups = self.constraint_groups
        if isinstance(key, str):
            match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", key)
            pair = (int(match.group(1)), int(match.group(2))) if match else None
        elif isinstance(key, tuple) and len(key) == 2 and all(is_int(v) for v in key):
            pair = (int(key[0]), int(key[1]))
        elif is_int(key) and 0 <= key < len(groups):
            return int(key)
        else:
            pair = None
        if pair in groups:
            return groups.index(pair)
        names = ", ".join(f"{lo}-{hi}" for lo, hi in groups)
        raise ValueError(f"group_counts key {key!r} names no constraint group (groups: {names})")

    def _solve(self, cumulative: list[int], extra: list[int], total: int) -> tuple[int, ...]:
        domains = self.domains
        if not domains:
            return ()
        from ortools.sat.python import cp_model  # here, not at the top: see the imports of this module

        model = cp_model.CpModel()
        cuts = [model.new_int_var(d.start, d.stop - 1, f"c{i + 1}") for i, d in enumerate(domains)]
        # ends[i] = number of exact-age images with age <= c_{i+1}, read from the cumulative table.
        ends = []
        for i, cut in enumerate(cuts):
            end = model.new_int_var(0, cumulative[-1], f"end{i + 1}")
            model.add_element(cut, cumulative, end)
            ends.append(end)
        starts = [0] + ends
        ends = ends + [cumulative[-1]]
        squares = []
        for i, (start, end, x) in enumerate(zip(starts, ends, extra)):
            size = model.new_int_var(0, total, f"size{i}")
            model.add(size == end - start + x)
            square = model.new_int_var(0, total * total, f"square{i}")
            model.add_multiplication_equality(square, [size, size])
            squares.append(square)
        sum_squares = sum(squares)

        deadline = None if self.time_limit_s is None else time.monotonic() + self.time_limit_s
        model.minimize(sum_squares)
        best = self._run(model, deadline, "minimising the variance")
        model.add(sum_squares == round(best.objective_value))
        chosen = []
        for i, cut in enumerate(cuts):
            model.minimize(cut)
            value = self._run(model, deadline, f"tie-breaking boundary c{i + 1}").value(cut)
            model.add(cut == value)
            chosen.append(int(value))
        return tuple(chosen)

    @staticmethod
    def _run(model: cp_model.CpModel, deadline: float | None, phase: str) -> cp_model.CpSolver:
        from ortools.sat.python import cp_model  # loaded by _solve already

        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = _SEED
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"time limit reached before {phase}; no proven optimum")
            solver.parameters.max_time_in_seconds = remaining
        status = solver.solve(model)
        if status != cp_model.OPTIMAL:
            raise RuntimeError(
                f"CP-SAT did not prove optimality while {phase} (status {solver.status_name(status)}); "
                "raise time_limit_s"
            )
        return solver


def _variance(sizes: Sequence[int]) -> float:
    """Population variance of integer sizes, from exact integer sums."""
    k, total = len(sizes), sum(sizes)
    return (k * sum(s * s for s in sizes) - total * total) / (k * k)


def _size_table(hist: np.ndarray, ranges: Mapping[tuple[int, int], int]) -> np.ndarray:
    """``table[s, e]``: images in the bin ``[s, e]``: exact ages in it plus the ranges that lie inside it (0 for
    ``s > e``)."""
    last = hist.size - 1
    prefix = np.concatenate(([0], np.cumsum(hist)))
    exact = prefix[None, 1:] - prefix[:-1, None]
    inside = np.zeros((last + 1, last + 1), dtype=np.int64)
    for (lo, hi), n in ranges.items():
        inside[lo, hi] += n
    # Ranges with lo >= s and hi <= e: sums over lo from the top, then over hi from the bottom.
    inside = inside[::-1].cumsum(axis=0)[::-1].cumsum(axis=1)
    return np.triu(exact + inside)


def _first_bin_choices(
    table: np.ndarray, kept: np.ndarray, squares: np.ndarray, bins: int, start: int, min_width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For ``bins`` bins from age ``start`` on: every feasible last age of the first bin, with the images kept and the
    sum of squared sizes of the best completion after it; None if there is no feasible one."""
    ends = np.arange(start + min_width - 1, table.shape[0])
    rest_kept = kept[bins - 1, ends + 1]
    feasible = rest_kept >= 0
    if not feasible.any():
        return None
    ends = ends[feasible]
    sizes = table[start, ends]
    return ends, sizes + rest_kept[feasible], sizes * sizes + squares[bins - 1, ends + 1]


def _best_boundaries(table: np.ndarray, n_bins: int, min_width: int) -> tuple[int, ...]:
    """The lexicographically smallest boundary vector among those that keep the most images in bins and, among
    those, have the least sum of squared sizes (so the least variance: the kept total is fixed by then).

    Backward dynamic programme: ``kept[k, s]`` and ``squares[k, s]`` are the best (most kept, then fewest squares)
    over ages ``s..max_age`` in ``k`` bins, -1 kept where that is impossible. Lexicographic order on
    (-kept, squares) is compatible with adding bins, so the best of a prefix plus the best of the rest is best.
    A forward pass then takes the smallest optimal boundary at each step, which gives the smallest vector.
    """
    last = table.shape[0] - 1
    kept = np.full((n_bins + 1, last + 2), -1, dtype=np.int64)
    squares = np.zeros_like(kept)
    kept[0, last + 1] = 0
    for k in range(1, n_bins + 1):
        for start in range(last + 1):
            choices = _first_bin_choices(table, kept, squares, k, start, min_width)
            if choices is not None:
                _, kept_k, squares_k = choices
                kept[k, start] = kept_k.max()
                squares[k, start] = squares_k[kept_k == kept[k, start]].min()
    boundaries, start = [], 0
    for k in range(n_bins, 1, -1):
        choices = _first_bin_choices(table, kept, squares, k, start, min_width)
        assert choices is not None  # the constructor checked that n_bins * min_width ages fit
        ends, kept_k, squares_k = choices
        optimal = (kept_k == kept[k, start]) & (squares_k == squares[k, start])
        end = int(ends[np.argmax(optimal)])  # the first optimal end: the lexicographic tie-break
        boundaries.append(end)
        start = end + 1
    return tuple(boundaries)
