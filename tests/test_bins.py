"""Tests of agecurriculum.bins: the CP-SAT optimizer must equal a brute-force search, ties included."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ortools.sat.python import cp_model

from agecurriculum.bins import (
    ADIENCE_GROUPS,
    AGE_CEILING,
    MAX_AGE,
    PAPER_BINS,
    AgeBinOptimizer,
    AgeBins,
    BinSolution,
    histogram_from_ages,
    parse_groups,
)


def brute_force(groups, max_age, histogram, extra=None):
    """Reference: tries every boundary vector; returns (boundaries, sizes, variance) of the lexicographically
    first optimum."""
    extra = list(extra or [0] * len(groups))
    counts = [0] * (max_age + 1)
    for age, n in enumerate(histogram):
        counts[min(age, max_age)] += int(n)
    domains = [range(groups[i][1], groups[i + 1][0]) for i in range(len(groups) - 1)]
    best = None
    for cuts in itertools.product(*domains):  # product yields in lexicographic order
        edges = [-1, *cuts, max_age]
        sizes = [sum(counts[edges[i] + 1 : edges[i + 1] + 1]) + extra[i] for i in range(len(groups))]
        score = sum(s * s for s in sizes)
        if best is None or score < best[0]:
            best = (score, cuts, sizes)
    _, cuts, sizes = best
    return tuple(cuts), tuple(sizes), float(np.var(sizes))


@st.composite
def constraint_groups(draw, max_age):
    """Sorted, non-overlapping groups inside [0, max_age], K = 1..5, some of a single age."""
    k = draw(st.integers(1, 5))
    groups, cur = [], 0
    for i in range(k):
        room = max_age - (k - 1 - i)  # later groups need at least one age each
        lo = draw(st.integers(cur, room))
        hi = draw(st.integers(lo, room))
        groups.append((lo, hi))
        cur = hi + 1
    return tuple(groups)


# Small counts make ties frequent; large ones make the optimum unique.
counts = st.one_of(st.integers(0, 3), st.integers(0, 1000))


def keyed(groups, index, form):
    """The three accepted key forms of group_counts."""
    return {"str": f"{groups[index][0]}-{groups[index][1]}", "tuple": groups[index], "int": index}[form]


@st.composite
def problems(draw, adience=False):
    max_age = MAX_AGE if adience else draw(st.integers(20, 40))
    groups = ADIENCE_GROUPS if adience else draw(constraint_groups(max_age))
    # Lengths past max_age + 1 exercise folding of older ages into the last group; shorter ones, padding.
    histogram = draw(st.lists(counts, min_size=1, max_size=max_age + 10))
    extra = None
    if draw(st.booleans()):
        chosen = draw(st.sets(st.integers(0, len(groups) - 1)))
        extra = {keyed(groups, i, draw(st.sampled_from(["str", "tuple", "int"]))): draw(counts) for i in chosen}
    return groups, max_age, histogram, extra


def extra_vector(groups, extra):
    vector = [0] * len(groups)
    for key, n in (extra or {}).items():
        index = key if isinstance(key, int) else groups.index(key if isinstance(key, tuple) else parse_groups(key)[0])
        vector[index] = n
    return vector


def check_against_brute_force(groups, max_age, histogram, extra):
    expected_vector = extra_vector(groups, extra)
    if sum(histogram) + sum(expected_vector) == 0:
        with pytest.raises(ValueError, match="nothing to balance"):
            AgeBinOptimizer(groups, max_age).fit(histogram, extra)
        return
    solution = AgeBinOptimizer(groups, max_age).fit(histogram, extra)
    cuts, sizes, variance = brute_force(groups, max_age, histogram, expected_vector)
    assert solution.boundaries == cuts
    assert solution.sizes == sizes
    assert solution.objective == pytest.approx(variance, rel=1e-12, abs=1e-9)
    for (lo, hi), (ulo, uhi) in zip(groups, solution.groups):
        assert ulo <= lo <= hi <= uhi  # each constraint group lies in its unified group


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_optimizer_equals_brute_force_on_random_groups(problem):
    check_against_brute_force(*problem)


@settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow])
@given(problems(adience=True))
def test_optimizer_equals_brute_force_on_adience_groups(problem):
    check_against_brute_force(*problem)


def test_adience_known_histogram():
    rng = np.random.default_rng(7)
    histogram = rng.integers(0, 500, MAX_AGE + 1)
    extra = {"25-32": 120, "0-2": 40, "60-100": 7}
    check_against_brute_force(ADIENCE_GROUPS, MAX_AGE, histogram.tolist(), extra)


def test_ties_return_lexicographically_smallest_boundaries():
    # Every boundary choice gives sizes (1, 1, 1): all are optimal, the smallest vector must win.
    solution = AgeBinOptimizer([(0, 0), (5, 5), (10, 10)], max_age=10).fit([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    assert solution.boundaries == (0, 5)
    assert solution.objective == 0.0


def test_group_counts_only_pick_lowest_boundaries():
    # Exact-age histogram empty: sizes do not depend on the boundaries, so every vector ties.
    solution = AgeBinOptimizer().fit([0] * 101, {"25-32": 120})
    assert solution.boundaries == tuple(hi for _, hi in ADIENCE_GROUPS[:-1])
    assert solution.sizes == (0, 0, 0, 0, 120, 0, 0, 0)


def test_symmetric_histogram_breaks_tie_to_the_left():
    # Mass at ages 3 and 7 with c1 in [2, 7]: c1 in 3..6 all give (1, 1); c1 = 3 is the smallest optimum.
    histogram = [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
    solution = AgeBinOptimizer([(0, 2), (8, 10)], max_age=10).fit(histogram)
    assert solution.boundaries == (3,)
    assert brute_force([(0, 2), (8, 10)], 10, histogram)[0] == (3,)


def test_single_group_has_no_boundaries():
    solution = AgeBinOptimizer([(0, 100)]).fit([3, 4, 5])
    assert solution.boundaries == ()
    assert solution.groups == ((0, 100),)
    assert solution.sizes == (12,)
    assert solution.objective == 0.0


def test_ages_above_max_age_fold_into_last_group():
    histogram = [0] * 150
    histogram[120] = 9
    histogram[1] = 1
    solution = AgeBinOptimizer([(0, 2), (30, 40)], max_age=40).fit(histogram)
    assert solution.sizes[-1] >= 9
    assert solution.boundaries == brute_force([(0, 2), (30, 40)], 40, histogram)[0]


def test_numpy_and_list_input_agree_and_repeat():
    rng = np.random.default_rng(3)
    histogram = rng.integers(0, 50, 101)
    first = AgeBinOptimizer().fit(histogram)
    assert AgeBinOptimizer().fit(histogram.tolist()) == first
    assert AgeBinOptimizer().fit(histogram.astype(float)) == first


def test_solution_to_dict_shape():
    solution = AgeBinOptimizer([(0, 2), (5, 9)], max_age=9).fit([1, 2, 3, 4, 5])
    data = solution.to_dict()
    assert set(data) == {"boundaries", "groups", "sizes", "objective"}
    assert data["groups"][0][0] == 0 and data["groups"][-1][1] == 9
    assert sum(data["sizes"]) == 15
    assert isinstance(data["objective"], float)
    assert json.loads(json.dumps(data)) == data


def test_unproven_optimum_raises(monkeypatch):
    monkeypatch.setattr(cp_model.CpSolver, "solve", lambda self, model, *args, **kwargs: cp_model.FEASIBLE)
    with pytest.raises(RuntimeError, match="optimality"):
        AgeBinOptimizer().fit(list(range(101)))


# ----- errors -----


@pytest.mark.parametrize(
    ("histogram", "group_counts", "message"),
    [
        ([], None, "empty"),
        ([0] * 101, None, "nothing to balance"),
        ([0, 0], {"0-2": 0}, "nothing to balance"),
        ([1, 2, 3, -4], None, "age 3 is negative"),
        ([1, 2.5], None, "age 1 must be an integer"),
        ([1, "x"], None, "age 1 must be an integer"),
        ([[1, 2]], None, "flat"),
        ([1], {"26-32": 5}, "'26-32' names no constraint group"),
        ([1], {(1, 2): 5}, r"\(1, 2\) names no constraint group"),
        ([1], {8: 5}, "8 names no constraint group"),
        ([1], {"young": 5}, "'young' names no constraint group"),
        ([1], {"0-2": -1}, "negative"),
        ([1], {"0-2": 1.5}, "must be an integer"),
        ([1], {"0-2": 1, 0: 2}, "twice"),
        ([2**31], None, "exceed"),
    ],
)
def test_fit_rejects_bad_counts(histogram, group_counts, message):
    with pytest.raises(ValueError, match=message):
        AgeBinOptimizer().fit(histogram, group_counts)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([(4, 6), (0, 2)], "0-2"),
        ([(0, 5), (3, 8)], "0-5 then 3-8"),
        ([(0, 2), (2, 4)], "0-2 then 2-4"),
        ([(5, 2)], "5-2 has lo > hi"),
        ([(0, 2), (60, 120)], r"60-120 is outside \[0, 100\]"),
        ([(-1, 2)], r"-1-2 is outside"),
        ([], "at least one"),
        ([(1, 2, 3)], "pair"),
    ],
)
def test_optimizer_rejects_bad_groups(groups, message):
    with pytest.raises(ValueError, match=message):
        AgeBinOptimizer(groups)


@pytest.mark.parametrize("limit", [0, -1])
def test_optimizer_rejects_bad_time_limit(limit):
    with pytest.raises(ValueError, match="time_limit_s"):
        AgeBinOptimizer(time_limit_s=limit)


# ----- histogram_from_ages and parse_groups -----


def test_histogram_from_ages_counts_and_clamps():
    hist = histogram_from_ages([0, 0, 5, 100, 130], max_age=100)
    assert hist.shape == (101,)
    assert hist[0] == 2 and hist[5] == 1 and hist[100] == 2 and hist.sum() == 5
    assert histogram_from_ages([], max_age=3).tolist() == [0, 0, 0, 0]
    assert histogram_from_ages(np.array([1.0, 2.0]), max_age=3).tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(
    ("ages", "message"),
    [([3, -2], "-2"), ([3, 2.5], "2.5"), (["x"], "'x'"), ([True], "True"), ([None], "None")],
)
def test_histogram_from_ages_names_bad_value(ages, message):
    with pytest.raises(ValueError, match=message):
        histogram_from_ages(ages)


@pytest.mark.parametrize(
    ("ages", "message"),
    [
        ([True, False, 20], "age 0 must be an integer, got True"),  # numpy alone would count them as 1 and 0
        ([20, 30, np.False_], "age 2 must be an integer, got np.False_"),
        (np.array([True, False]), "age 0 must be an integer, got True"),
        ([20, "20"], "age 1 must be an integer, got '20'"),
        ([20, 20.5], "age 1 must be an integer, got 20.5"),
        ([20, float("nan")], "age 1 must be an integer, got nan"),
        ([20, float("inf")], "age 1 must be an integer, got inf"),
        ([20, None], "age 1 must be an integer, got None"),
        ([20, [3]], "flat"),
        ([1, 10**29], "age 1 = 100000000000000000000000000000 exceeds 1000, the oldest plausible age"),
        ([2**64], "age 0 = 18446744073709551616 exceeds 1000"),
        ([1e29], "age 0 = 1e\\+29 exceeds 1000"),
        (np.array([5.0, 1e29]), "age 1 = 1e\\+29 exceeds 1000"),
        (np.array([5, 2**62]), "age 1 = 4611686018427387904 exceeds 1000"),
        ([1985], "age 0 = 1985 exceeds 1000"),  # a birth year, not an age
    ],
)
def test_histogram_from_ages_refuses_booleans_non_integers_and_huge_ages(ages, message):
    with pytest.raises(ValueError, match=message):
        histogram_from_ages(ages)


def test_histogram_from_ages_accepts_integral_floats_and_folds_up_to_the_ceiling():
    assert histogram_from_ages([20, 20.0, np.float32(20.0), np.int16(20)], max_age=30)[20] == 4
    hist = histogram_from_ages([0, 101, AGE_CEILING], max_age=100)
    assert hist[0] == 1 and hist[100] == 2
    # A max_age above the ceiling raises the ceiling with it.
    assert histogram_from_ages([1500], max_age=2000)[1500] == 1


@given(st.lists(st.integers(0, AGE_CEILING), max_size=30), st.data())
def test_histogram_from_ages_names_the_first_boolean(ages, data):
    position = data.draw(st.integers(0, len(ages)))
    flag = data.draw(st.booleans())
    with pytest.raises(ValueError, match=f"^age {position} must be an integer, got {flag}$"):
        histogram_from_ages(ages[:position] + [flag] + ages[position:])


@given(
    st.lists(st.one_of(st.integers(0, AGE_CEILING), st.integers(0, AGE_CEILING).map(float)), max_size=30),
    st.integers(0, 120),
)
def test_histogram_from_ages_counts_ints_and_integral_floats(ages, max_age):
    hist = histogram_from_ages(ages, max_age=max_age)
    assert hist.shape == (max_age + 1,) and hist.sum() == len(ages)
    assert hist.tolist() == np.bincount(np.minimum(np.array(ages, dtype=int), max_age), minlength=max_age + 1).tolist()


@given(st.integers(AGE_CEILING + 1, 10**40))
def test_histogram_from_ages_refuses_any_age_above_the_ceiling(age):
    with pytest.raises(ValueError, match=f"age 1 = {age} exceeds {AGE_CEILING}"):
        histogram_from_ages([3, age])


@pytest.mark.parametrize(
    ("histogram", "group_counts", "message"),
    [
        ([True, 5], None, "count at age 0 must be an integer, got True"),
        ([5, 10**29], None, "count at age 1 = 100000000000000000000000000000 exceeds"),
        (np.array([5.0, 1e29]), None, "count at age 1 = 1e\\+29 exceeds"),
        ([1], {"0-2": True}, "must be an integer, got True"),
        ([1], {"0-2": None}, "must be an integer, got None"),
        ([1], {"0-2": "3"}, "must be an integer, got '3'"),
        ([1], {"0-2": 10**29}, "exceed"),
        ([1], {(False, 2): 1}, "names no constraint group"),  # False == 0, but a boolean is not an age
        ([1], {True: 1}, "names no constraint group"),
        ([1], {"0-2-4": 1}, "names no constraint group"),
        ([1], {"": 1}, "names no constraint group"),
    ],
)
def test_fit_refuses_booleans_and_huge_counts(histogram, group_counts, message):
    with pytest.raises(ValueError, match=message):
        AgeBinOptimizer().fit(histogram, group_counts)


def test_fit_accepts_integral_float_counts():
    as_ints = AgeBinOptimizer().fit([3, 1, 4, 1, 5], {"0-2": 2, (60, 100): 7})
    as_floats = AgeBinOptimizer().fit([3.0, 1.0, 4.0, 1.0, 5.0], {"0-2": 2.0, (60, 100): np.int64(7)})
    assert as_ints == as_floats


def test_parse_groups():
    assert parse_groups("0-2,4-6, 8 - 13") == ((0, 2), (4, 6), (8, 13))
    assert parse_groups(",".join(f"{lo}-{hi}" for lo, hi in ADIENCE_GROUPS)) == ADIENCE_GROUPS


@pytest.mark.parametrize(
    ("text", "message"), [("", "no age groups"), ("0-2,,4-6", "''"), ("a-b", "'a-b'"), ("5", "'5'")]
)
def test_parse_groups_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_groups(text)


# ----- AgeBins -----


@pytest.mark.parametrize(
    ("age", "index"), [(0, 0), (2, 0), (3, 1), (6, 1), (7, 2), (14, 2), (15, 3), (59, 6), (60, 7), (100, 7), (250, 7)]
)
def test_bin_of_edges(age, index):
    assert PAPER_BINS.bin_of(age) == index


def test_bin_of_rejects_negative_age():
    with pytest.raises(ValueError, match="-1"):
        PAPER_BINS.bin_of(-1)


def test_paper_bins():
    assert len(PAPER_BINS) == 8
    assert PAPER_BINS.labels() == ["0-2", "3-6", "7-14", "15-23", "24-34", "35-45", "46-59", "60-100"]
    # The paper's bins are feasible for the Adience constraint groups.
    domains = AgeBinOptimizer().domains
    assert all(c in d for c, d in zip(PAPER_BINS.boundaries, domains))


def test_agebins_round_trips():
    data = json.loads(json.dumps(PAPER_BINS.to_dict()))
    assert AgeBins.from_dict(data) == PAPER_BINS
    assert AgeBins.from_groups(PAPER_BINS.groups) == PAPER_BINS
    assert AgeBins([2, np.int64(6)], 10) == AgeBins((2, 6), 10)
    assert AgeBins(()).groups == ((0, 100),)


@given(st.integers(0, 60).flatmap(lambda m: st.tuples(st.just(m), st.sets(st.integers(0, max(m - 1, 0))))))
def test_agebins_groups_partition_ages(case):
    max_age, cuts = case
    bins = AgeBins(tuple(sorted(c for c in cuts if c < max_age)), max_age)
    for index, (lo, hi) in enumerate(bins.groups):
        assert bins.bin_of(lo) == bins.bin_of(hi) == index
    assert bins.groups[0][0] == 0 and bins.groups[-1][1] == max_age
    assert AgeBins.from_dict(bins.to_dict()) == bins == AgeBins.from_groups(bins.groups)


@pytest.mark.parametrize(
    ("boundaries", "max_age", "message"),
    [
        ((3, 3), 100, "strictly increasing"),
        ((5, 2), 100, "strictly increasing"),
        ((100,), 100, "outside"),
        ((-1,), 100, "outside"),
        ((1.5,), 100, "integer"),
        ((), -1, "max_age"),
    ],
)
def test_agebins_validation(boundaries, max_age, message):
    with pytest.raises(ValueError, match=message):
        AgeBins(boundaries, max_age)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_age": 5}, "boundaries"),
        ({"boundaries": 3}, "list"),
        ({"boundaries": [], "extra": 1}, "extra"),
        ([1], "mapping"),
    ],
)
def test_agebins_from_dict_errors(data, message):
    with pytest.raises(ValueError, match=message):
        AgeBins.from_dict(data)


@pytest.mark.parametrize(("groups", "message"), [([], "at least one"), ([(0, 2), (4, 6)], "4-6"), ([(1, 5)], "1-5")])
def test_agebins_from_groups_errors(groups, message):
    with pytest.raises(ValueError, match=message):
        AgeBins.from_groups(groups)


def test_bin_solution_properties():
    solution = BinSolution(PAPER_BINS, (1,) * 8, 0.0)
    assert solution.boundaries == PAPER_BINS.boundaries
    assert solution.groups == PAPER_BINS.groups
