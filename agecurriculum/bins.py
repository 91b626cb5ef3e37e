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
"""

from __future__ import annotations

import bisect
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

MAX_AGE = 100
ADIENCE_GROUPS: tuple[tuple[int, int], ...] = (
    (0, 2), (4, 6), (8, 13), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100),
)
# CP-SAT works in int64; with at most 2**30 images every squared size and their sum stay below 2**60.
_MAX_TOTAL = 2**30
_SEED = 0  # fixed seed + one worker: the solver explores the same way on every run.


def _check_int(value: Any, what: str) -> int:
    """Returns ``value`` as an int, or raises ValueError naming ``what`` if it is not an integer."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    try:
        return int(value.__index__())
    except (AttributeError, TypeError):
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


def _is_int(value: Any) -> bool:
    """True for Python and numpy integers; False for booleans, which are ints to Python but never a count or age."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


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
        max_age = _check_int(self.max_age, "max_age")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        bounds = tuple(_check_int(b, f"boundary {i}") for i, b in enumerate(self.boundaries))
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
        age = _check_int(age, "age")
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


# The paper's bins, found by the optimizer on the age histogram of its training datasets.
PAPER_BINS = AgeBins((2, 6, 14, 23, 34, 45, 59))
# Years above its lower end that stand for the open last bin when no training ages are given.
OPEN_BIN_OFFSET = 10


def representative_ages(bins: AgeBins, train_ages: Iterable[float] | None = None,
                        last_bin_age: float | None = None) -> np.ndarray:
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
    """

    bins: AgeBins
    sizes: tuple[int, ...]
    objective: float

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
        number = _check_int(value, f"{what} {i}")
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
    max_age = _check_int(max_age, "max_age")
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


def _validate_groups(groups: Iterable[Sequence[int]], max_age: int) -> tuple[tuple[int, int], ...]:
    checked = []
    for i, group in enumerate(groups):
        if isinstance(group, str) or len(group) != 2:
            raise ValueError(f"constraint group {i} must be a (lo, hi) pair, got {group!r}")
        lo, hi = (_check_int(v, f"constraint group {i}") for v in group)
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
    """Finds the unified age bins with the most even group sizes (exact, via OR-Tools CP-SAT).

    The solve runs in two phases: first minimise the sum of squared group sizes (the variance times K, plus a
    constant), then fix that optimum and minimise c1, fix it, minimise c2, and so on, which yields the
    lexicographically smallest boundary vector among all optima. One search worker and a fixed seed keep runs
    deterministic.

    Args:
        constraint_groups: Sorted, non-overlapping ``(lo, hi)`` groups inside ``[0, max_age]``; unified group i
            must contain constraint group i.
        max_age: Last age of the last group; older ages are counted in it.
        time_limit_s: Wall-clock budget for all solves together, or None for no limit.
    """

    def __init__(
        self,
        constraint_groups: Iterable[Sequence[int]] = ADIENCE_GROUPS,
        max_age: int = MAX_AGE,
        time_limit_s: float | None = 60,
    ) -> None:
        self.max_age = _check_int(max_age, "max_age")
        if self.max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {self.max_age}")
        self.constraint_groups = _validate_groups(constraint_groups, self.max_age)
        if time_limit_s is not None and not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive or None, got {time_limit_s!r}")
        self.time_limit_s = time_limit_s

    @property
    def domains(self) -> list[range]:
        """Allowed values of every boundary: ``c_i in [hi_i, lo_{i+1} - 1]``."""
        g = self.constraint_groups
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
            group_counts: Images labelled only with a constraint group, keyed by ``"lo-hi"``, ``(lo, hi)`` or the
                group's index; they count in the unified group of the same index.

        Raises:
            ValueError: On malformed counts, or if there is nothing to balance.
            RuntimeError: If the solver does not prove optimality within ``time_limit_s``.
        """
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
        k = len(sizes)
        variance = (k * sum(s * s for s in sizes) - total * total) / (k * k)
        return BinSolution(AgeBins(boundaries, self.max_age), sizes, variance)

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
        folded[-1] += hist[self.max_age + 1:].sum()
        return folded

    def _group_vector(self, group_counts: Mapping[Any, int] | None) -> list[int]:
        extra = [0] * len(self.constraint_groups)
        named = set()
        for key, value in (group_counts or {}).items():
            i = self._group_index(key)
            if i in named:
                raise ValueError(f"group_counts names constraint group {i} twice (key {key!r})")
            named.add(i)
            count = _check_int(value, f"group_counts[{key!r}]")
            if count < 0:
                raise ValueError(f"group_counts[{key!r}] is negative: {count}")
            extra[i] = count
        return extra

    def _group_index(self, key: Any) -> int:
        groups = self.constraint_groups
        if isinstance(key, str):
            match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", key)
            pair = (int(match.group(1)), int(match.group(2))) if match else None
        elif isinstance(key, tuple) and len(key) == 2 and all(_is_int(v) for v in key):
            pair = (int(key[0]), int(key[1]))
        elif _is_int(key) and 0 <= key < len(groups):
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
