"""Tests for agecurriculum.schedule: Eq. 7 rules (property-based), serialisation, difficulty score, presets."""

import dataclasses
import json
import warnings
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agecurriculum.schedule import (
    BIN_RANGE,
    COMPLETE_LAST_STAGE,
    DATASET_SUBSEQUENCE,
    INCREASING_SCORE,
    MISSING_SCORE,
    NESTED_BINS,
    PRESETS,
    DatasetStats,
    MultiDatasetSample,
    ScheduleError,
    ScheduleWarning,
    TrainingSchedule,
    Violation,
    check_schedule,
    list1_curriculum,
    list2_curriculum,
    original_curriculum,
    preset,
    score,
)

FAST = settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["utkface", "adience", "morph2", "fairface", "mine"]


class Generated(NamedTuple):
    stages: list
    num_bins: int
    universe: list  # every dataset, as the last stage orders them


@st.composite
def valid_schedules(draw, min_stages=1, min_bins=1, min_datasets=1, min_first=1, scored=None):
    """A valid schedule built forwards: insert dataset names, add bins, raise the score, end complete."""
    num_bins = draw(st.integers(min_bins, 10))
    universe = draw(
        st.lists(st.sampled_from(NAMES), min_size=max(min_datasets, min_first), max_size=len(NAMES), unique=True)
    )
    n_stages = draw(st.integers(min_stages, 6))
    has_scores = draw(st.booleans()) if scored is None else scored

    n_first = draw(st.integers(max(min_first, 1), len(universe)))
    datasets, pending = universe[:n_first], universe[n_first:]
    bins = set(draw(st.lists(st.integers(0, num_bins - 1), min_size=1, unique=True)))
    value = draw(st.floats(-1000, 1000))
    stages = []
    for k in range(n_stages):
        last = k == n_stages - 1
        if k > 0:
            bins |= set(draw(st.lists(st.integers(0, num_bins - 1))))
            value += draw(st.floats(0.01, 100))
        # Later stages insert some not-yet-used names at any position; the last inserts all that remain.
        new = pending if last else draw(st.lists(st.sampled_from(pending), unique=True)) if k and pending else []
        for name in new:
            datasets.insert(draw(st.integers(0, len(datasets))), name)
        pending = [name for name in pending if name not in new]
        if last:
            bins = set(range(num_bins))
        epochs = draw(st.integers(1, 3))
        stages.append(MultiDatasetSample(list(datasets), set(bins), epochs, value if has_scores else None))
    return Generated(stages, num_bins, sorted(universe, key=stages[-1].datasets.index))


def is_ordered_subset(short, long):
    """Independent of the library: find each name at a strictly later position than the previous one."""
    pos = -1
    for name in short:
        later = [i for i, other in enumerate(long) if other == name and i > pos]
        if not later:
            return False
        pos = later[0]
    return True


@FAST
@given(valid_schedules())
def test_generated_schedules_are_valid_and_every_rule_holds(g):
    schedule = TrainingSchedule(g.stages, num_bins=g.num_bins)
    assert check_schedule(g.stages, num_bins=g.num_bins) == []
    assert schedule.violations == []
    stages = g.stages
    scores = [s.score for s in stages]
    assert all(x is None for x in scores) or all(
        scores[i] < scores[j] for i in range(len(scores)) for j in range(i + 1, len(scores))
    )
    for before, after in zip(stages, stages[1:]):
        assert is_ordered_subset(before.datasets, after.datasets)
        assert all(b in after.bins for b in before.bins)
    assert sorted(stages[-1].datasets) == sorted(g.universe)
    assert sorted(stages[-1].bins) == list(range(g.num_bins))
    assert all(0 <= b < g.num_bins for s in stages for b in s.bins)
    assert list(schedule) == stages and len(schedule) == len(stages) and schedule[-1] == stages[-1]
    assert set(schedule.datasets) == set(g.universe)
    assert schedule.total_epochs == sum(s.epochs * len(s.datasets) for s in stages)


def _replace(stages, k, **changes):
    out = list(stages)
    out[k] = dataclasses.replace(out[k], **changes)
    return out


# Each mutation: (strategy kwargs for a schedule it applies to, fn(draw, g) -> (stages, kwargs, rule, stage)).
def swap_scores(draw, g):
    i = draw(st.integers(0, len(g.stages) - 2))
    j = draw(st.integers(i + 1, len(g.stages) - 1))
    stages = _replace(g.stages, i, score=g.stages[j].score)
    stages = _replace(stages, j, score=g.stages[i].score)
    return stages, {}, INCREASING_SCORE, i + 1  # stage i + 1 is now below the moved-up score (or is j itself)


def equal_scores(draw, g):
    j = draw(st.integers(1, len(g.stages) - 1))
    return _replace(g.stages, j, score=g.stages[j - 1].score), {}, INCREASING_SCORE, j


def drop_score(draw, g):
    j = draw(st.integers(0, len(g.stages) - 1))
    return _replace(g.stages, j, score=None), {}, MISSING_SCORE, j


def drop_dataset_later(draw, g):
    k = draw(st.integers(1, len(g.stages) - 1))
    name = draw(st.sampled_from(g.stages[k - 1].datasets))
    kept = [d for d in g.stages[k].datasets if d != name]
    if not kept:  # a stage cannot be empty; add a fresh name so only the drop matters
        kept = ["extra"]
    return _replace(g.stages, k, datasets=kept), {}, DATASET_SUBSEQUENCE, k


def reorder_dataset_later(draw, g):
    candidates = [k for k in range(1, len(g.stages)) if len(g.stages[k - 1].datasets) >= 2]
    if not candidates:
        return None
    k = draw(st.sampled_from(candidates))
    a, b = draw(st.lists(st.sampled_from(g.stages[k - 1].datasets), min_size=2, max_size=2, unique=True))
    swapped = [b if d == a else a if d == b else d for d in g.stages[k].datasets]
    return _replace(g.stages, k, datasets=swapped), {}, DATASET_SUBSEQUENCE, k


def drop_bin_later(draw, g):
    k = draw(st.integers(1, len(g.stages) - 1))
    b = draw(st.sampled_from(sorted(g.stages[k - 1].bins)))
    kept = g.stages[k].bins - {b}
    return (_replace(g.stages, k, bins=kept), {}, NESTED_BINS, k) if kept else None


def drop_dataset_last(draw, g):
    last = len(g.stages) - 1
    name = draw(st.sampled_from(g.stages[last].datasets))
    # Without all_datasets the "all" is the union of stages, so name the universe explicitly.
    kept = [d for d in g.stages[last].datasets if d != name]
    return _replace(g.stages, last, datasets=kept), {"all_datasets": g.universe}, COMPLETE_LAST_STAGE, last


def drop_bin_last(draw, g):
    last = len(g.stages) - 1
    b = draw(st.integers(0, g.num_bins - 1))
    return _replace(g.stages, last, bins=g.stages[last].bins - {b}), {}, COMPLETE_LAST_STAGE, last


def out_of_range_bin(draw, g):
    k = draw(st.integers(0, len(g.stages) - 1))
    extra = draw(st.integers(g.num_bins, g.num_bins + 5))
    return _replace(g.stages, k, bins=g.stages[k].bins | {extra}), {}, BIN_RANGE, k


MUTATIONS = {
    "swap-scores": ({"min_stages": 2, "scored": True}, swap_scores),
    "equal-scores": ({"min_stages": 2, "scored": True}, equal_scores),
    "drop-score": ({"min_stages": 2, "scored": True}, drop_score),
    "drop-dataset-later": ({"min_stages": 2}, drop_dataset_later),
    "reorder-dataset-later": ({"min_stages": 2, "min_first": 2}, reorder_dataset_later),
    "drop-bin-later": ({"min_stages": 2, "min_bins": 2}, drop_bin_later),
    "drop-dataset-last": ({"min_datasets": 2}, drop_dataset_last),
    "drop-bin-last": ({"min_bins": 2}, drop_bin_last),
    "out-of-range-bin": ({}, out_of_range_bin),
}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_violation_is_caught(kind, data):
    strategy_kwargs, mutate = MUTATIONS[kind]
    g = data.draw(valid_schedules(**strategy_kwargs))
    mutated = mutate(data.draw, g)
    if mutated is None:
        return  # this mutation cannot apply to this schedule (e.g. it would empty a stage)
    stages, kwargs, rule, stage = mutated

    with pytest.raises(ScheduleError) as info:
        TrainingSchedule(stages, num_bins=g.num_bins, **kwargs)
    found = {(v.stage, v.rule) for v in info.value.violations}
    assert (stage, rule) in found
    for v in info.value.violations:
        assert str(v) in str(info.value)

    # Non-strict: the same violations, one ScheduleWarning each, and the schedule is built.
    with pytest.warns(ScheduleWarning) as record:
        schedule = TrainingSchedule(stages, num_bins=g.num_bins, strict=False, **kwargs)
    assert schedule.violations == info.value.violations
    messages = [str(w.message) for w in record if issubclass(w.category, ScheduleWarning)]
    assert messages == [str(v) for v in info.value.violations]
    assert list(schedule) == stages


def test_violation_message_format():
    stages = [MultiDatasetSample(["a"], [3, 4, 5]), MultiDatasetSample(["a"], [0, 1, 2, 3, 4, 5, 6, 7])]
    stages.insert(1, MultiDatasetSample(["a"], [0, 1, 2]))
    (v,) = check_schedule(stages)
    assert v == Violation(1, NESTED_BINS, "bins {0, 1, 2} do not contain stage 0's bins {3, 4, 5}")
    assert str(v) == "stage 1: rule 'nested-bins': bins {0, 1, 2} do not contain stage 0's bins {3, 4, 5}"
    with pytest.raises(ValueError, match="rule"):
        Violation(0, "no-such-rule", "x")


def test_scores_compared_across_unscored_gaps_and_all_violations_found():
    full = range(4)
    stages = [
        MultiDatasetSample(["a"], full, score=2.0),
        MultiDatasetSample(["a"], full),
        MultiDatasetSample(["a"], full, score=1.0),
    ]
    assert {(v.stage, v.rule) for v in check_schedule(stages, num_bins=4)} == {
        (1, MISSING_SCORE),
        (2, INCREASING_SCORE),
    }
    # Several rules at once: all are reported, in stage order.
    stages = [MultiDatasetSample(["b", "a"], [0, 9]), MultiDatasetSample(["a"], [1])]
    rules = [(v.stage, v.rule) for v in check_schedule(stages, num_bins=4)]
    assert rules == [(0, BIN_RANGE), (1, DATASET_SUBSEQUENCE), (1, NESTED_BINS), (1, COMPLETE_LAST_STAGE)]


def test_all_datasets_and_argument_errors():
    stages = [MultiDatasetSample(["a"], range(8))]
    assert TrainingSchedule(stages).datasets == ("a",)
    with pytest.raises(ScheduleError) as info:
        TrainingSchedule(stages, all_datasets=["a", "b"])
    assert "['b']" in str(info.value) and info.value.violations[0].rule == COMPLETE_LAST_STAGE
    with pytest.raises(ValueError, match="not in all_datasets"):
        check_schedule(stages, all_datasets=["b"])
    with pytest.raises(ScheduleError, match="at least one stage") as info:
        TrainingSchedule([])
    assert info.value.violations == []
    with pytest.raises(ValueError, match="num_bins"):
        check_schedule(stages, num_bins=0)
    with pytest.raises(TypeError, match="stage 0"):
        check_schedule([{"datasets": ["a"], "bins": [0]}])


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"datasets": [], "bins": [0]}, "datasets"),
        ({"datasets": "utkface", "bins": [0]}, "datasets"),
        ({"datasets": ["a", "a"], "bins": [0]}, "datasets"),
        ({"datasets": ["a", " "], "bins": [0]}, "datasets"),
        ({"datasets": ["a", 3], "bins": [0]}, "datasets"),
        ({"datasets": ["a"], "bins": []}, "bins"),
        ({"datasets": ["a"], "bins": [-1]}, "bins"),
        ({"datasets": ["a"], "bins": [1.5]}, "bins"),
        ({"datasets": ["a"], "bins": [True]}, "bins"),
        ({"datasets": ["a"], "bins": [0], "epochs": 0}, "epochs"),
        (
            {"datasets": ["a"], "bins": [0], "epochs": 2.5},
            "epochs",
        ),  # integral floats (2.0) are integers: agecurriculum.checks
        ({"datasets": ["a"], "bins": [0], "score": float("nan")}, "score"),
        ({"datasets": ["a"], "bins": [0], "score": "1"}, "score"),
    ],
)
def test_sample_rejects_bad_fields(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MultiDatasetSample(**kwargs)


def test_sample_normalises_and_is_frozen():
    s = MultiDatasetSample(["a", "b"], [2, np.int64(0), 2], np.int32(3), 1)
    assert s.datasets == ("a", "b") and s.bins == frozenset({0, 2}) and s.epochs == 3
    assert isinstance(s.score, float) and type(s.epochs) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 4
    assert hash(s) == hash(MultiDatasetSample(("a", "b"), {0, 2}, 3, 1.0))


def test_sample_dict_form():
    s = MultiDatasetSample(["utkface", "adience"], {5, 3, 4}, 2)
    assert s.to_dict() == {"datasets": ["utkface", "adience"], "bins": [3, 4, 5], "epochs": 2}
    assert MultiDatasetSample(["a"], [0], score=0.5).to_dict() == {
        "datasets": ["a"],
        "bins": [0],
        "epochs": 1,
        "score": 0.5,
    }
    assert MultiDatasetSample.from_dict({"datasets": ["a"], "bins": [1, 0]}) == MultiDatasetSample(["a"], [0, 1], 1)
    with pytest.raises(ValueError, match="'bins'"):
        MultiDatasetSample.from_dict({"datasets": ["a"]})
    with pytest.raises(ValueError, match="'datasets'"):
        MultiDatasetSample.from_dict({"bins": [0]})
    with pytest.raises(ValueError, match="epoch"):
        MultiDatasetSample.from_dict({"datasets": ["a"], "bins": [0], "epoch": 2})
    with pytest.raises(ValueError, match="object"):
        MultiDatasetSample.from_dict([["a"], [0]])


@FAST
@given(valid_schedules(), st.booleans())
def test_dict_and_json_round_trip(g, explicit_universe):
    kwargs = {"num_bins": g.num_bins, "all_datasets": g.universe if explicit_universe else None}
    schedule = TrainingSchedule(g.stages, **kwargs)
    assert TrainingSchedule.from_dicts(schedule.to_dicts(), **kwargs) == schedule
    assert TrainingSchedule.from_json(schedule.to_json(), **kwargs) == schedule
    assert json.loads(schedule.to_json()) == schedule.to_dicts()
    assert eval(repr(schedule)) == schedule  # noqa: S307 - repr is meant to rebuild the schedule


def test_save_load_round_trip_and_paper_form(tmp_path):
    path = tmp_path / "original.json"
    with pytest.warns(ScheduleWarning):
        schedule = original_curriculum(epochs=3)
        schedule.save(path)
        loaded = TrainingSchedule.load(path, strict=False)
    assert loaded == schedule
    paper = json.loads(path.read_text())
    assert paper[0] == {"datasets": ["utkface", "adience"], "bins": [3, 4, 5], "epochs": 3, "score": 1.0}
    assert paper[-1] == {
        "datasets": ["utkface", "adience", "morph2"],
        "bins": list(range(8)),
        "epochs": 3,
        "score": 6.0,
    }
    assert [p.name for p in tmp_path.iterdir()] == ["original.json"]  # no temp file left behind
    # A hand-written file in the paper's form, epochs omitted.
    path.write_text(json.dumps([{"datasets": ["a"], "bins": [0, 1]}, {"datasets": ["a", "b"], "bins": [0, 1, 2]}]))
    assert TrainingSchedule.load(path, num_bins=3).total_epochs == 3


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[{", "invalid JSON"),
        ('{"datasets": ["a"], "bins": [0]}', "list"),
        ('[{"datasets": ["a"], "bins": [0, 1]}, {"datasets": ["a"]}]', "stage 1: missing key 'bins'"),
        ('[{"datasets": ["a"], "bins": [0, 1]}, {"datasets": ["a"], "bins": [0, 1], "extra": 1}]', "stage 1: unknown"),
        ('[{"datasets": ["a"], "bins": [0, 1], "epochs": -1}]', "stage 0: epochs"),
        ('[{"datasets": ["a"], "bins": [0, 1]}, {"datasets": ["a"], "bins": [1]}]', "stage 1: rule 'nested-bins'"),
        ("[]", "at least one stage"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, text, expected):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        TrainingSchedule.load(path, num_bins=2)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_malformed_non_utf8_file_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe[")
    with pytest.raises(ValueError, match="bad.json"):
        TrainingSchedule.load(path)


# --- difficulty score -------------------------------------------------------------------------------------------


def test_score_hand_computed():
    stats = {
        # bin 0: 3 male 1 female; bin 1: 2 male; bin 2 (outside the sample): 100 female.
        "a": DatasetStats({(0, 0): 3, (0, 1): 1, (1, 0): 2, (2, 1): 100}, quality=0.5),
        # bin 1: 2 female.
        "b": DatasetStats({(1, 1): 2}, quality=1.0),
    }
    sample = MultiDatasetSample(["a", "b"], [0, 1])
    # n = 8; male 5, female 3 -> G = 2/8; n_0 = 4, n_1 = 4 -> A = 0; Q = (6 * 0.5 + 2 * 1.0) / 8.
    assert score(sample, stats) == pytest.approx(100 * 2 / 8 + 10 * 0 + 1 * 5 / 8)
    assert score(sample, stats, weights=(0, 0, 1)) == pytest.approx(5 / 8)
    # Only "a" on bins 0, 1: n = 6, male 5 female 1 -> G = 4/6; n_0 = 4, n_1 = 2 -> A = 1/2; Q = 0.5.
    only_a = MultiDatasetSample(["a"], [0, 1])
    assert score(only_a, stats, weights=(1, 1, 1)) == pytest.approx(4 / 6 + 1 / 2 + 0.5)
    # One bin: A = 0. An empty bin among the sample's bins: A = 1.
    assert score(MultiDatasetSample(["a"], [2]), stats, weights=(0, 1, 0)) == 0.0
    assert score(MultiDatasetSample(["b"], [0, 1]), stats, weights=(0, 1, 0)) == 1.0
    # More women than men counts the same as more men than women.
    assert score(MultiDatasetSample(["a", "b"], [1, 2]), stats, weights=(1, 0, 0)) == pytest.approx(100 / 104)


def test_score_priority_gender_over_age_over_quality():
    n = 100
    # Gender imbalance 0.2, bins and quality perfect.
    gendered = DatasetStats({(0, 0): 30, (0, 1): 20, (1, 0): 30, (1, 1): 20}, quality=0.0)
    # Gender balanced, but a whole bin empty (A = 1) and the hardest photos (Q = 1).
    aged = DatasetStats({(0, 0): n // 2, (0, 1): n // 2}, quality=1.0)
    # Gender balanced, bins balanced, hardest photos.
    blurry = DatasetStats({(0, 0): 25, (0, 1): 25, (1, 0): 25, (1, 1): 25}, quality=1.0)
    stats = {"gendered": gendered, "aged": aged, "blurry": blurry}
    s = {name: score(MultiDatasetSample([name], [0, 1]), stats) for name in stats}
    assert s == pytest.approx({"gendered": 20.0, "aged": 11.0, "blurry": 1.0})
    assert s["gendered"] > s["aged"] > s["blurry"]


def test_score_errors():
    stats = {"a": DatasetStats({(0, 0): 1}, quality=0.0)}
    with pytest.raises(ValueError, match="'missing'"):
        score(MultiDatasetSample(["a", "missing"], [0]), stats)
    with pytest.raises(ValueError, match="no images") as info:
        score(MultiDatasetSample(["a"], [5]), stats)
    assert "MultiDatasetSample" in str(info.value)
    with pytest.raises(ValueError, match="weights"):
        score(MultiDatasetSample(["a"], [0]), stats, weights=(1, 1))
    with pytest.raises(ValueError, match="weights"):
        score(MultiDatasetSample(["a"], [0]), stats, weights=(1, -1, 1))


def test_dataset_stats():
    stats = DatasetStats.from_labels(np.array([0, 0, 1, 3]), np.array([1, 0, 1, 1]), quality=0.25)
    assert dict(stats.counts) == {(0, 1): 1, (0, 0): 1, (1, 1): 1, (3, 1): 1}
    assert stats.quality == 0.25
    with pytest.raises(ValueError, match="length"):
        DatasetStats.from_labels([0, 1], [0], 0.5)
    with pytest.raises(ValueError, match="quality"):
        DatasetStats({}, quality=1.5)
    with pytest.raises(ValueError, match="gender"):
        DatasetStats({(0, 2): 1}, quality=0.5)
    with pytest.raises(ValueError, match="counts"):
        DatasetStats({(0, 0): -1}, quality=0.5)


@pytest.mark.parametrize("strict", [True, False])
def test_with_scores(strict):
    stages = [MultiDatasetSample(["a"], [0]), MultiDatasetSample(["a"], [0, 1])]
    # Bin 0 alone: balanced genders, one bin -> 0. Bins 0, 1: bin 1 is empty -> A = 1 -> 10.
    stats = {"a": DatasetStats({(0, 0): 1, (0, 1): 1}, quality=0.0)}
    scored = TrainingSchedule(stages, num_bins=2, strict=strict).with_scores(stats)
    assert [s.score for s in scored] == [0.0, 10.0] and scored.strict is strict
    # Reversing the weights' effect (a sample scored harder first) is caught with the same strictness.
    harder_first = TrainingSchedule(
        [MultiDatasetSample(["a"], [0, 1]), MultiDatasetSample(["a"], [0, 1])], num_bins=2, strict=strict
    )
    if strict:
        with pytest.raises(ScheduleError, match="increasing-score"):
            harder_first.with_scores(stats)
    else:
        with pytest.warns(ScheduleWarning, match="increasing-score"):
            harder_first.with_scores(stats)


# --- presets ------------------------------------------------------------------------------------------------------


def _stages(schedule):
    return [(list(s.datasets), sorted(s.bins)) for s in schedule]


UA, UAM, AU, AUM = (
    ["utkface", "adience"],
    ["utkface", "adience", "morph2"],
    ["adience", "utkface"],
    ["adience", "utkface", "morph2"],
)
MUA = ["morph2", "utkface", "adience"]
ALL, MID, YOUNG, OLD, MID_UP = list(range(8)), [3, 4, 5], [0, 1, 2], [6, 7], [3, 4, 5, 6, 7]

PRESET_CASES = {
    "original": ([(UA, MID), (UA, MID_UP), (UA, ALL), (UAM, MID), (UAM, MID_UP), (UAM, ALL)], {(3, NESTED_BINS)}),
    "list1": (
        [(["morph2"], MID), (MUA, MID), (UA, YOUNG), (UA, OLD), (MUA, MID), (MUA, ALL)],
        {(2, DATASET_SUBSEQUENCE), (2, NESTED_BINS), (3, NESTED_BINS), (4, NESTED_BINS)},
    ),
    "list2": (
        [(AUM, MID), (AU, YOUNG), (AU, OLD), (AU, ALL), (AUM, MID)],
        {(1, DATASET_SUBSEQUENCE), (1, NESTED_BINS), (2, NESTED_BINS), (4, NESTED_BINS), (4, COMPLETE_LAST_STAGE)},
    ),
}


@pytest.mark.parametrize("name", sorted(PRESET_CASES))
def test_presets_exact_stages_and_broken_rules(name):
    expected_stages, expected_violations = PRESET_CASES[name]
    with pytest.warns(ScheduleWarning) as record:
        schedule = preset(name, epochs=2)
    assert _stages(schedule) == expected_stages
    assert all(s.epochs == 2 for s in schedule) and schedule.num_bins == 8 and not schedule.strict
    assert {(v.stage, v.rule) for v in schedule.violations} == expected_violations
    assert len([w for w in record if issubclass(w.category, ScheduleWarning)]) == len(expected_violations)
    with pytest.raises(ScheduleError) as info:
        preset(name, strict=True)
    assert {(v.stage, v.rule) for v in info.value.violations} == expected_violations


def test_preset_functions_and_registry():
    assert PRESETS == {"original": original_curriculum, "list1": list1_curriculum, "list2": list2_curriculum}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScheduleWarning)
        assert preset("list1") == list1_curriculum() and preset("list2", 3) == list2_curriculum(3)
        assert original_curriculum().datasets == ("utkface", "adience", "morph2")
    with pytest.raises(ValueError, match="list1"):
        preset("list3")


@pytest.mark.parametrize("name", sorted(PRESET_CASES))
def test_presets_carry_the_papers_order_as_scores_and_eq7_checks_it(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScheduleWarning)
        schedule = preset(name)
    assert [s.score for s in schedule] == [float(k + 1) for k in range(len(schedule))]
    assert INCREASING_SCORE not in {v.rule for v in schedule.violations}
    # The rule is now checked: the same stages in reverse score order break it.
    reversed_scores = [dataclasses.replace(s, score=-s.score) for s in schedule]
    assert INCREASING_SCORE in {v.rule for v in check_schedule(reversed_scores, num_bins=8)}


def test_integers_follow_the_one_rule_of_agecurriculum_checks():
    import numpy as np

    # The same rule as bins and releases: numpy integers and integral floats count, booleans and strings do not.
    stage = MultiDatasetSample(["a"], bins=[np.int64(0), 1.0], epochs=np.int32(2))
    assert stage.bins == frozenset({0, 1}) and stage.epochs == 2 and type(stage.epochs) is int
    for bad in (True, "2", 2.5):
        with pytest.raises(ValueError, match=f"epochs must be an integer, got {bad!r}"):
            MultiDatasetSample(["a"], bins=[0], epochs=bad)
