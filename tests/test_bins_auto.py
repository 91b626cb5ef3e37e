"""Tests of AgeBinOptimizer(n_bins=K): bins from the labels alone must equal a brute-force search, ties included,
and, on the real annotation files, an independent dynamic programme and CP-SAT model written here."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ortools.sat.python import cp_model

from agecurriculum.bins import MAX_AGE, AgeBinOptimizer, BinSolution, parse_age_label
from agecurriculum.cli.bins import read_annotations
from agecurriculum.data.sources import load_morph2_csv, load_utkface


def fold(max_age, histogram, ranges):
    """Exact-age counts per age 0..max_age, and the ranges clamped to max_age, as the optimizer reads them."""
    counts = [0] * (max_age + 1)
    for age, n in enumerate(histogram):
        counts[min(age, max_age)] += int(n)
    clamped = {}
    for (lo, hi), n in ranges.items():
        key = (min(lo, max_age), min(hi, max_age))
        clamped[key] = clamped.get(key, 0) + int(n)
    return counts, clamped


def bin_size(counts, ranges, lo, hi):
    return sum(counts[lo : hi + 1]) + sum(n for (a, b), n in ranges.items() if lo <= a and b <= hi)


def brute_force(max_age, n_bins, min_width, histogram, ranges):
    """Reference: every boundary vector in lexicographic order; the first with the most images kept, then the least
    sum of squared sizes. Returns (boundaries, sizes, left_out)."""
    counts, ranges = fold(max_age, histogram, ranges)
    total = sum(counts) + sum(ranges.values())
    best = None
    for cuts in itertools.combinations(range(max_age), n_bins - 1):  # in lexicographic order
        edges = [-1, *cuts, max_age]
        if any(edges[i + 1] - edges[i] < min_width for i in range(n_bins)):
            continue
        sizes = [bin_size(counts, ranges, edges[i] + 1, edges[i + 1]) for i in range(n_bins)]
        key = (-sum(sizes), sum(s * s for s in sizes))
        if best is None or key < best[0]:
            best = (key, cuts, sizes)
    _, cuts, sizes = best
    return tuple(cuts), tuple(sizes), total - sum(sizes)


def forward_dp(max_age, n_bins, min_width, histogram, ranges, keep_first=True):
    """An independent exact method: forward DP over the last age of each bin, pure Python integers, with a cost that
    is either (-kept, squares) or, with keep_first=False, the sum of squared sizes alone. Ties keep the first
    boundary vector met, iterating ends in increasing order, which is the lexicographically smallest."""
    counts, ranges = fold(max_age, histogram, ranges)
    size = {}
    for lo in range(max_age + 1):
        for hi in range(lo, max_age + 1):
            size[lo, hi] = bin_size(counts, ranges, lo, hi)
    # best[j][e]: (cost, cuts) of j bins covering exactly 0..e.
    best = [dict() for _ in range(n_bins + 1)]
    for e in range(min_width - 1, max_age + 1):
        s = size[0, e]
        best[1][e] = ((-s, s * s) if keep_first else (0, s * s), ())
    for j in range(2, n_bins + 1):
        for e in range(max_age + 1):
            options = []
            for prev in sorted(best[j - 1]):
                if e - prev >= min_width:
                    s = size[prev + 1, e]
                    (kept, sq), cuts = best[j - 1][prev]
                    cost = (kept - s, sq + s * s) if keep_first else (0, sq + s * s)
                    options.append((cost, cuts + (prev,)))
            if options:
                best[j][e] = min(options)  # min on (cost, cuts): the smallest cuts among equal costs
    _, cuts = best[n_bins][max_age]
    edges = [-1, *cuts, max_age]
    sizes = tuple(size[edges[i] + 1, edges[i + 1]] for i in range(n_bins))
    return cuts, sizes, sum(counts) + sum(ranges.values()) - sum(sizes)


def cp_sat(max_age, n_bins, histogram, ranges):
    """Another independent exact method (min_width 1): CP-SAT with the size of a bin read from a table indexed by
    its first and last age; maximise the images kept, then minimise the squares, then each boundary in turn."""
    counts, ranges = fold(max_age, histogram, ranges)
    width = max_age + 1
    table = [bin_size(counts, ranges, lo, hi) if lo <= hi else 0 for lo in range(width) for hi in range(width)]
    model = cp_model.CpModel()
    cuts = [model.new_int_var(0, max_age - 1, f"c{i}") for i in range(n_bins - 1)]
    for a, b in itertools.pairwise(cuts):
        model.add(a < b)
    firsts = [0, *[c + 1 for c in cuts]]
    lasts = [*cuts, max_age]
    sizes, squares = [], []
    for i, (first, last) in enumerate(zip(firsts, lasts)):
        index = model.new_int_var(0, width * width - 1, f"i{i}")
        model.add(index == first * width + last)
        size = model.new_int_var(0, max(table), f"s{i}")
        model.add_element(index, table, size)
        square = model.new_int_var(0, max(table) ** 2, f"q{i}")
        model.add_multiplication_equality(square, [size, size])
        sizes.append(size)
        squares.append(square)

    def solve(objective, maximize=False):
        (model.maximize if maximize else model.minimize)(objective)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        assert solver.solve(model) == cp_model.OPTIMAL
        value = round(solver.objective_value)
        model.add(objective == value)
        return solver

    solve(sum(sizes), maximize=True)
    solver = solve(sum(squares))
    for cut in cuts:
        solver = solve(cut)
    found = tuple(solver.value(c) for c in cuts)
    found_sizes = tuple(solver.value(s) for s in sizes)
    return found, found_sizes, sum(counts) + sum(ranges.values()) - sum(found_sizes)


def check(max_age, n_bins, min_width, histogram, ranges, allow_left_out=True):
    optimizer = AgeBinOptimizer(n_bins=n_bins, min_width=min_width, max_age=max_age, allow_left_out=allow_left_out)
    cuts, sizes, left_out = brute_force(max_age, n_bins, min_width, histogram, ranges)
    if sum(histogram) + sum(ranges.values()) == 0:
        with pytest.raises(ValueError, match="nothing to balance"):
            optimizer.fit(histogram, ranges)
        return
    if left_out and not allow_left_out:
        with pytest.raises(ValueError, match=f"leaves out {left_out} images"):
            optimizer.fit(histogram, ranges)
        return
    solution = optimizer.fit(histogram, ranges)
    assert (solution.boundaries, solution.sizes, solution.left_out) == (cuts, sizes, left_out)
    assert solution.objective == pytest.approx(float(np.var(sizes)), rel=1e-12, abs=1e-9)
    assert all(hi - lo + 1 >= min_width for lo, hi in solution.groups)


counts = st.one_of(st.integers(0, 3), st.integers(0, 1000))  # small counts make ties frequent


@st.composite
def problems(draw):
    max_age = draw(st.integers(0, 12))
    min_width = draw(st.integers(1, 3))
    n_bins = draw(st.integers(1, max(1, min(4, (max_age + 1) // min_width))))
    if n_bins * min_width > max_age + 1:
        min_width = 1
    histogram = draw(st.lists(counts, max_size=max_age + 4))
    pairs = st.tuples(st.integers(0, max_age + 2), st.integers(0, 4)).map(lambda p: (p[0], p[0] + p[1]))
    ranges = draw(st.dictionaries(pairs, counts, max_size=4))
    return max_age, n_bins, min_width, histogram, ranges


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.booleans())
def test_equals_brute_force(problem, allow_left_out):
    check(*problem, allow_left_out=allow_left_out)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_equals_the_forward_dp_with_and_without_ranges(problem):
    max_age, n_bins, min_width, histogram, ranges = problem
    if sum(histogram) + sum(ranges.values()) == 0:
        return
    solution = AgeBinOptimizer(n_bins=n_bins, min_width=min_width, max_age=max_age, allow_left_out=True).fit(
        histogram, ranges
    )
    assert (solution.boundaries, solution.sizes, solution.left_out) == forward_dp(*problem)


def test_ties_take_the_smallest_boundaries():
    # Mass at 3 and 7 only: any c1 in 3..6 gives sizes (1, 1); 3 is the smallest.
    solution = AgeBinOptimizer(n_bins=2, max_age=10).fit([0, 0, 0, 1, 0, 0, 0, 1])
    assert solution.boundaries == (3,) and solution.sizes == (1, 1) and solution.objective == 0.0
    # Images at 9 and 10 only, bins of 2 ages or more: they share the last bin whatever the first two are, so those
    # are as small as allowed.
    assert AgeBinOptimizer(n_bins=3, min_width=2, max_age=10).fit([0] * 9 + [1, 1]).boundaries == (1, 3)


def test_a_range_counts_only_in_a_bin_that_holds_it():
    # c1 = 2 or 3 would cut 2-4 and c1 >= 4 would put it beside age 0; c1 = 0 and 1 both give (5, 5).
    solution = AgeBinOptimizer(n_bins=2, max_age=9).fit([5] + [0] * 9, {"2-4": 5})
    assert solution.sizes == (5, 5) and solution.boundaries == (0,)


def test_keeping_images_comes_before_balance():
    # Balance alone would cut 10-19 (leaving (10, 10)); keeping its 100 images wins.
    histogram = [10] + [0] * 19 + [10]
    solution = AgeBinOptimizer(n_bins=2, max_age=20).fit(histogram, {(10, 19): 100})
    assert solution.left_out == 0 and solution.sizes in ((10, 110), (110, 10))


def test_left_out_is_refused_unless_allowed():
    ranges = {"0-5": 7, "(3, 9)": 2}  # every boundary inside 0..8 cuts one of them
    with pytest.raises(
        ValueError,
        match=r"the best cuts 1 range\(s\) and leaves out 2 images \(2 labelled 3-9\); "
        "allow that with allow_left_out=True",
    ):
        AgeBinOptimizer(n_bins=3, max_age=9).fit([0] * 10, ranges)
    solution = AgeBinOptimizer(n_bins=3, max_age=9, allow_left_out=True).fit([0] * 10, ranges)
    assert solution.left_out == 2 and sum(solution.sizes) == 7
    assert set(solution.to_dict()) == {"boundaries", "groups", "sizes", "objective"}


def test_open_ranges_end_at_max_age_and_keys_can_be_labels_or_pairs():
    as_labels = AgeBinOptimizer(n_bins=3).fit([0] * 101, {"more than 70": 4, "(25, 32)": 3, "0-2": 5})
    as_pairs = AgeBinOptimizer(n_bins=3).fit([0] * 101, {(70, 100): 4, (25, 32): 3, (0, 2): 5})
    assert as_labels == as_pairs and as_labels.sizes == (5, 3, 4)
    # A range past max_age ends at max_age, so it fits in the last bin.
    assert AgeBinOptimizer(n_bins=2, max_age=10).fit([1], {(8, 40): 1}).sizes == (1, 1)


def test_domains_leave_room_for_min_width():
    optimizer = AgeBinOptimizer(n_bins=3, min_width=4, max_age=20)
    assert optimizer.domains == [range(3, 13), range(7, 17)]
    assert optimizer.constraint_groups is None and optimizer.n_bins == 3
    assert AgeBinOptimizer().n_bins == 8  # the constrained mode, unchanged


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_bins": 102}, r"102 bins of at least 1 age\(s\) need 102 ages, but 0..100 has 101"),
        ({"n_bins": 20, "min_width": 6}, "need 120 ages"),
        ({"n_bins": 0}, "n_bins must be >= 1"),
        ({"n_bins": 3, "min_width": 0}, "min_width must be >= 1"),
        ({"n_bins": 2.5}, "n_bins must be an integer"),
        ({"n_bins": 3, "constraint_groups": [(0, 2), (5, 9)]}, "not both"),
        ({"min_width": 3}, "need n_bins"),
        ({"allow_left_out": True}, "need n_bins"),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AgeBinOptimizer(**kwargs)


@pytest.mark.parametrize(
    ("group_counts", "message"),
    [
        ({"young": 1}, "age label 'young' is not understood"),
        ({"9-3": 1}, "starts after it ends"),
        ({"": 1}, "is no age range"),
        ({3: 1}, "is no age range"),
        ({(5, 2): 1}, "is no age range"),
        ({(True, 2): 1}, "is no age range"),
        ({(1, 5000): 1}, "ends above 1000"),
        ({"20-29": 1, (20, 29): 2}, "names the range 20-29 twice"),
        ({"20-29": -1}, "negative"),
        ({"20-29": 1.5}, "must be an integer"),
        ({"20-29": 2**31}, "exceed"),
    ],
)
def test_fit_rejects_bad_group_counts(group_counts, message):
    with pytest.raises(ValueError, match=message):
        AgeBinOptimizer(n_bins=3).fit([1], group_counts)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("35", (35, 35)),
        (" 35.0 ", (35, 35)),
        ("20-29", (20, 29)),
        ("20 - 29", (20, 29)),
        ("(25, 32)", (25, 32)),
        ("(8,12)", (8, 12)),
        ("70+", (70, 100)),
        ("more than 70", (70, 100)),
        ("More Than 70", (70, 100)),
        ("120+", (120, 120)),
        ("", None),
        ("None", None),
        ("NaN", None),
        ("n/a", None),
        ("null", None),
    ],
)
def test_parse_age_label(text, expected):
    assert parse_age_label(text) == expected


@pytest.mark.parametrize("text", ["x", "35.5", "-3", "20-", "(25 32)", "25-32-40", "less than 5", "(25, 32"])
def test_parse_age_label_refuses(text):
    with pytest.raises(ValueError, match="not understood"):
        parse_age_label(text)


def test_bin_solution_keeps_left_out_out_of_to_dict():
    solution = BinSolution(AgeBinOptimizer(n_bins=2, max_age=3).fit([1, 1, 1, 1]).bins, (2, 2), 0.0, left_out=3)
    assert "left_out" not in solution.to_dict() and solution.left_out == 3


# ----- the real annotation files -----


def real_counts(shared_data, tmp_path):
    """Per dataset: (histogram, ranges) read from its annotation files by the CLI's reader. UTKFace's ages are in its
    file names and MORPH-II's tables hold the age minus 16, so both are first written to a CSV of true ages in
    tmp_path (never kept)."""
    utkface = tmp_path / "utkface.csv"
    write_ages(utkface, load_utkface(shared_data / "utkface" / "UTKFace").records)
    morph2 = tmp_path / "morph2.csv"
    write_ages(morph2, load_morph2_csv(sorted((shared_data / "morph2").glob("morph2_*.csv"))).records)
    files = {
        "utkface": [utkface],
        "morph2": [morph2],
        "fairface": sorted((shared_data / "fairface").glob("fairface_label_*.csv")),
        "adience": sorted((shared_data / "adience").glob("fold_*_data.txt")),
    }
    files["all"] = [path for paths in files.values() for path in paths]
    result = {}
    for name, paths in files.items():
        counts = read_annotations(paths)
        result[name] = (counts.histogram.tolist(), counts.group_counts)
    return result


def write_ages(path, records):
    with path.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([["age"], *([r.age_min] for r in records if r.age_min == r.age_max)])


@pytest.fixture(scope="module")
def real(shared_data, tmp_path_factory):
    return real_counts(shared_data, tmp_path_factory.mktemp("real-ages"))


@pytest.mark.parametrize("name", ["utkface", "morph2", "fairface", "adience", "all"])
def test_real_data_equals_the_forward_dp(real, name):
    histogram, ranges = real[name]
    solution = AgeBinOptimizer(n_bins=8, allow_left_out=True).fit(histogram, ranges)
    assert (solution.boundaries, solution.sizes, solution.left_out) == forward_dp(MAX_AGE, 8, 1, histogram, ranges)
    if name != "all":  # one labelling scheme at a time keeps every image; FairFace's and Adience's cut each other
        assert solution.left_out == 0
        assert AgeBinOptimizer(n_bins=8).fit(histogram, ranges) == solution
    else:
        assert solution.left_out > 0
        with pytest.raises(ValueError, match="allow_left_out=True"):
            AgeBinOptimizer(n_bins=8).fit(histogram, ranges)


# CP-SAT over a table of every (first, last) age pair is slow at 101 ages and 8 bins (minutes), so it checks the real
# labels folded at a lower max_age; the forward DP above checks the full problem.
@pytest.mark.parametrize(("name", "max_age", "n_bins"), [("fairface", 25, 3), ("all", 25, 3), ("adience", 30, 3)])
def test_real_data_equals_cp_sat(real, name, max_age, n_bins):
    histogram, ranges = real[name]
    solution = AgeBinOptimizer(n_bins=n_bins, max_age=max_age, allow_left_out=True).fit(histogram, ranges)
    assert (solution.boundaries, solution.sizes, solution.left_out) == cp_sat(max_age, n_bins, histogram, ranges)


@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_equals_cp_sat_on_small_problems(problem):
    max_age, n_bins, _, histogram, ranges = problem
    if sum(histogram) + sum(ranges.values()) == 0:
        return
    solution = AgeBinOptimizer(n_bins=n_bins, max_age=max_age, allow_left_out=True).fit(histogram, ranges)
    assert (solution.boundaries, solution.sizes, solution.left_out) == cp_sat(max_age, n_bins, histogram, ranges)


@pytest.mark.parametrize(
    ("name", "max_age", "n_bins", "min_width"),
    [("all", 30, 4, 1), ("adience", 40, 3, 2), ("fairface", 25, 4, 3), ("morph2", 60, 3, 5)],
)
def test_real_data_equals_brute_force_on_coarser_problems(real, name, max_age, n_bins, min_width):
    check(max_age, n_bins, min_width, *real[name])
    check(max_age, n_bins, min_width, *real[name], allow_left_out=False)


def test_variance_alone_would_cut_fairface_decades(real):
    # The class docstring's reason for keeping images first, checked on whatever FairFace tables the folder holds
    # (their size grew once already): balance alone cuts decades until most images are left out and most bins are
    # empty, while keeping images first leaves none out.
    histogram, ranges = real["fairface"]
    total = int(sum(histogram)) + sum(ranges.values())
    cuts, sizes, left_out = forward_dp(MAX_AGE, 8, 1, histogram, ranges, keep_first=False)
    assert sum(sizes) + left_out == total
    assert sum(sizes) < 0.05 * total and sum(size > 0 for size in sizes) <= 2
    kept_first = AgeBinOptimizer(n_bins=8).fit(histogram, ranges)
    assert kept_first.left_out == 0 and sum(kept_first.sizes) == total
    assert {hi for lo, hi in ranges} >= set(kept_first.boundaries)  # every boundary ends a decade
