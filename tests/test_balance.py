import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agecurriculum.data.balance import BalancedDataset, age_prior_shift, balance_plan, weighted_sampler
from agecurriculum.data.datasets import FilteredDataset, TensorFaceDataset
from agecurriculum.data.records import IGNORE


def labels_from_counts(counts):
    return [b for b, n in enumerate(counts) for _ in range(n)]


def test_median_rule_cuts_bins_above_the_median_and_leaves_the_rest():
    plan = balance_plan(labels_from_counts([10, 6, 2, 4, 8]), rule="ratio")
    assert plan.median == 6
    assert plan.counts_before == (10, 6, 2, 4, 8)
    assert plan.counts_after == (6, 6, 2, 4, 6)  # 6 / 2 = 3 <= 3.5: no copies needed
    assert plan.uses.count(0) == 4 + 2 and max(plan.uses) == 1
    assert len(plan) == 24 and plan.ratio_before == 5.0 and plan.ratio_after == 3.0 and plan.ratio_reached


def test_bins_below_median_get_copies_until_the_ratio_is_reached():
    # ceil(6 / 1.5) = 4 per bin at least
    plan = balance_plan(labels_from_counts([10, 6, 2, 4, 8]), max_ratio=1.5, rule="ratio")
    assert plan.counts_after == (6, 6, 4, 4, 6)
    assert plan.uses[16:18] == (2, 2)  # both images of bin 2: original + one augmented copy
    assert plan.copies[16:18] == (1, 1) and sum(plan.copies) == 2


def test_even_number_of_bins_uses_the_median_rounded_down_and_empty_bins_stay_empty():
    # median 5.5 -> 5
    assert balance_plan(labels_from_counts([9, 3, 4, 7]), rule="ratio").counts_after == (5, 3, 4, 5)
    plan = balance_plan(labels_from_counts([10, 6, 2, 0, 8]), num_bins=6, rule="ratio")
    assert plan.median == 7 and plan.counts_after == (7, 6, 2, 0, 7, 0)


def test_copies_are_capped_per_original_and_spread_evenly():
    labels = labels_from_counts([12, 12, 1])
    # needs 6 in bin 2, one image may give only 1 + 3
    capped = balance_plan(labels, max_ratio=2, max_copies=3, rule="ratio")
    assert capped.counts_after == (12, 12, 4) and capped.ratio_after == 3.0 and not capped.ratio_reached
    reached = balance_plan(labels, max_ratio=2, max_copies=5, rule="ratio")
    assert reached.counts_after == (12, 12, 6) and reached.ratio_reached
    # bin 2 needs 10: 7 copies of 3 images
    spread = balance_plan(labels_from_counts([30, 30, 3]), max_ratio=3, rule="ratio")
    assert sorted(spread.uses[60:]) == [3, 3, 4]


def test_ignored_items_are_kept_once_and_counted_apart():
    labels = [IGNORE] * 3 + labels_from_counts([4, 1, 2])
    plan = balance_plan(labels, rule="ratio")
    assert plan.ignored == 3 and plan.uses[:3] == (1, 1, 1)
    assert plan.counts_before == (4, 1, 2) and plan.counts_after == (2, 1, 2)
    assert balance_plan([IGNORE, IGNORE]).uses == (1, 1)


def test_plan_is_deterministic_given_the_seed():
    labels = labels_from_counts([100, 20, 20, 5])
    assert balance_plan(labels, seed=3) == balance_plan(labels, seed=3)
    assert balance_plan(labels, seed=3).uses != balance_plan(labels, seed=4).uses
    assert balance_plan(labels, seed=3).counts_after == balance_plan(labels, seed=4).counts_after


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="max_ratio"):
        balance_plan([0, 1], max_ratio=0.5)
    with pytest.raises(ValueError, match="age bin of item 1 is -3"):
        balance_plan([0, -3])
    with pytest.raises(ValueError, match="num_bins"):
        balance_plan([0, 4], num_bins=3)


@settings(max_examples=60)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    max_ratio=st.floats(1.0, 6.0),
    max_copies=st.integers(0, 6),
    seed=st.integers(0, 2**32),
)
def test_plan_invariants(counts, max_ratio, max_copies, seed):
    plan = balance_plan(labels_from_counts(counts), seed, max_ratio, max_copies, num_bins=len(counts), rule="ratio")
    present = [c for c in counts if c]
    m = int(sorted(present)[(len(present) - 1) // 2] + sorted(present)[len(present) // 2]) // 2 if present else 0
    assert plan.median == m
    floor = math.ceil(m / max_ratio - 1e-9)
    for before, after in zip(plan.counts_before, plan.counts_after):
        if before > m:
            assert after == m
        elif before >= floor:
            assert after == before
        else:  # brought up to the floor, or as far as the cap allows
            assert after == min(floor, before * (1 + max_copies))
    assert plan.ratio_reached == (plan.ratio_after <= max_ratio)
    assert max(plan.uses, default=1) <= 1 + max_copies


def make_dataset(counts, size=24):
    labels = labels_from_counts(counts)
    n = len(labels)
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    return TensorFaceDataset(images, torch.tensor(labels), torch.arange(n) % 2)


def test_balanced_dataset_serves_originals_and_augmented_copies():
    ds = make_dataset([6, 1, 4])
    plan = balance_plan(ds.age_bins.tolist(), max_ratio=2)  # median 4: bin 0 cut to 4, bin 1 gets 1 copy
    assert plan.counts_after == (4, 2, 4)
    balanced = BalancedDataset(ds, plan)
    assert len(balanced) == 10 and balanced.age_bins == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    for index, (item, copy) in enumerate(balanced.entries):
        image, age_bin, gender = balanced[index]
        original, age0, gender0 = ds[item]
        assert (age_bin, gender) == (age0, gender0)
        if copy:
            assert image.shape == original.shape and not torch.allclose(image, original)
        else:
            assert torch.equal(image, original)
    assert FilteredDataset(balanced, {1}).indices == [4, 5]  # a curriculum stage can filter a balanced set


def test_balanced_copies_depend_only_on_seed_epoch_and_index():
    ds = make_dataset([3, 1, 3])
    plan = balance_plan(ds.age_bins.tolist(), max_ratio=1, rule="ratio")  # bin 1: the original + 2 copies
    copy_index = [i for i, (_, c) in enumerate(plan.entries()) if c][0]
    balanced = BalancedDataset(ds, plan)
    torch.manual_seed(123)
    first = balanced[copy_index][0]
    assert not torch.equal(balanced[copy_index + 1][0], first)  # two copies of one image differ
    torch.manual_seed(999)  # the caller's RNG state must not matter...
    assert torch.equal(BalancedDataset(ds, plan)[copy_index][0], first)
    balanced.set_epoch(1)
    assert not torch.equal(balanced[copy_index][0], first)  # ...but the epoch does
    balanced.set_epoch(0)
    assert torch.equal(balanced[copy_index][0], first)
    assert not torch.equal(BalancedDataset(ds, plan, seed=5)[copy_index][0], first)
    before = torch.get_rng_state()
    balanced[copy_index]
    assert torch.equal(before, torch.get_rng_state())  # the caller's RNG is left untouched
    with pytest.raises(ValueError, match="covers 3 items but the dataset has 2"):
        BalancedDataset(make_dataset([1, 1]), balance_plan([0, 1, 1]))


def test_weighted_sampler_draws_bins_about_equally_and_keeps_the_unknown_share():
    labels = [IGNORE] * 10 + labels_from_counts([70, 15, 5])
    sampler = weighted_sampler(labels, seed=1, num_samples=6000)
    drawn = Counter(labels[i] for i in sampler)
    assert abs(drawn[IGNORE] / 6000 - 0.1) < 0.02
    for b in range(3):
        assert abs(drawn[b] / 6000 - 0.3) < 0.03
    assert list(weighted_sampler(labels, seed=1)) == list(weighted_sampler(labels, seed=1))
    assert list(weighted_sampler(labels, seed=1)) != list(weighted_sampler(labels, seed=2))


def test_the_papers_rule_takes_a_1_to_9_histogram_to_1_to_3_5_and_the_ratio_rule_is_kept():
    # Seven bins, the largest 9 times the smallest, the median 700 (7 / 9 of the largest): the histogram on which
    # the paper's rule (cut to the median, augment every bin below it, one copy per image) gives what it reports.
    counts = [900, 850, 800, 700, 500, 300, 100]
    paper = balance_plan(labels_from_counts(counts))
    assert (paper.rule, paper.max_copies, paper.median, paper.ratio_before) == ("paper", 1, 700, 9.0)
    assert paper.counts_after == (700, 700, 700, 700, 700, 600, 200)  # 500 and 300 augmented too
    assert paper.ratio_after == 3.5 and paper.ratio_reached
    assert paper.to_dict()["rule"] == "paper"
    # The earlier rule, kept as "ratio": only bins below 700 / 3.5 = 200 are augmented, up to 200.
    ratio = balance_plan(labels_from_counts(counts), rule="ratio")
    assert ratio.counts_after == (700, 700, 700, 700, 500, 300, 200) and ratio.ratio_after == 3.5
    # Where every bin is within 3.5 of the median (UTKFace in the paper's bins), "ratio" only cuts; "paper" also
    # augments the bins below the median.
    close = labels_from_counts([400, 300, 200, 150, 120])
    assert balance_plan(close, rule="ratio").counts_after == (200, 200, 200, 150, 120)
    assert balance_plan(close).counts_after == (200, 200, 200, 200, 200)
    with pytest.raises(ValueError, match="rule must be one of paper, ratio"):
        balance_plan(close, rule="median")


@settings(max_examples=60)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    max_copies=st.integers(0, 6),
    seed=st.integers(0, 2**32),
)
def test_paper_rule_invariants(counts, max_copies, seed):
    plan = balance_plan(labels_from_counts(counts), seed, max_copies=max_copies, num_bins=len(counts))
    m = plan.median
    for before, after in zip(plan.counts_before, plan.counts_after):
        assert after == (m if before > m else min(m, before * (1 + max_copies)))
    present = [c for c in counts if c]
    if present:  # the largest bin ends at the median, the smallest at min(m, n (1 + c)): the bound in the docstring
        assert plan.ratio_after == pytest.approx(m / min(m, min(present) * (1 + max_copies)))
        assert plan.ratio_after <= max(1.0, plan.ratio_before / (1 + max_copies)) + 1e-12


def test_age_prior_shift_is_the_log_ratio_of_drawn_to_data_shares():
    # Bins 0, 0, 0, 1 (and one unknown): the data's shares are 3/4 and 1/4; weights that draw both bins equally
    # give shares 1/2 and 1/2, so the shift is log(2/3) and log(2).
    bins = [0, 0, 0, 1, IGNORE]
    weights = [1 / 6, 1 / 6, 1 / 6, 1 / 2, 0.3]
    shift = age_prior_shift(bins, weights, num_bins=3)
    assert shift == pytest.approx([math.log(2 / 3), math.log(2), 0.0])
    # Equal weights, or none, draw the data's own proportions: nothing to undo.
    assert age_prior_shift(bins, None, 3) == pytest.approx([0, 0, 0])
    assert age_prior_shift(bins, [2.0] * 5, 3) == pytest.approx([0, 0, 0])


def test_age_prior_shift_rejects_what_it_cannot_read():
    with pytest.raises(ValueError, match="non-negative weights"):
        age_prior_shift([0, 1], [1.0], 2)
    with pytest.raises(ValueError, match="non-negative weights"):
        age_prior_shift([0, 1], [1.0, -1.0], 2)
    with pytest.raises(ValueError, match="expected < 2"):
        age_prior_shift([0, 2], None, 2)
    with pytest.raises(ValueError, match="known age bin"):
        age_prior_shift([IGNORE, IGNORE], None, 2)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(0.01, 10)), min_size=1, max_size=40))
def test_undoing_the_shift_gives_back_the_data_shares(items):
    # The shift's defining property: the drawn shares times exp(-shift) are the data's shares, in every bin.
    bins, weights = [b for b, _ in items], [w for _, w in items]
    shift = age_prior_shift(bins, weights, 5)
    counts = Counter(bins)
    drawn = {b: sum(w for c, w in items if c == b) / sum(weights) for b in counts}
    for b in range(5):
        if b in counts:
            assert drawn[b] * math.exp(-shift[b]) == pytest.approx(counts[b] / len(bins))
        else:
            assert shift[b] == 0
