"""The adaptive curriculum: the policy on synthetic losses, and the trainer with ``schedule: adaptive``."""

import json
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_trainer import TinyDual, learnable_dataset

from agecurriculum.adaptive import ACTIONS, AdaptiveCurriculum, AdaptiveSettings, stage_images
from agecurriculum.config import RunConfig, apply_overrides, check_config
from agecurriculum.schedule import (
    COMPLETE_LAST_STAGE,
    DATASET_SUBSEQUENCE,
    MultiDatasetSample,
    ScheduleWarning,
    TrainingSchedule,
    check_schedule,
)
from agecurriculum.train import CurriculumTrainer, TrainerConfig
from agecurriculum.train.plan import describe_run
from agecurriculum.train.run import build_curriculum, build_schedule

DATASETS = ("a", "b", "c")


def table(level, datasets=DATASETS, bins=range(8), **extra):
    """Losses of every cell: ``level(dataset, bin)``, with some cells overridden by ``extra`` ('a3': 1.0)."""
    losses = {(d, b): level(d, b) for d in datasets for b in bins}
    losses.update({(key[0], int(key[1:])): value for key, value in extra.items()})
    return losses


def run_policy(policy, losses_at, sizes=None, limit=200):
    """Drives the policy like a training loop: ``losses_at(t, stage)`` after each stage; returns the stages."""
    stage = policy.next_stage(losses_at(0, None))
    t = 0
    while stage is not None and t < limit:
        t += 1
        stage = policy.next_stage(losses_at(t, stage), images=stage_images(stage, sizes) if sizes else 0)
    assert t < limit, "the policy never stopped"
    return list(policy.stages)


def test_first_stage_comes_from_the_settings_and_is_the_middle_third_by_default():
    assert AdaptiveCurriculum(DATASETS).next_stage() == MultiDatasetSample(["a"], {3, 4, 5}, 1, score=1)
    assert AdaptiveCurriculum(DATASETS, num_bins=7).next_stage().bins == {3, 4}
    chosen = AdaptiveCurriculum(
        DATASETS, settings=AdaptiveSettings(start_datasets=["c", "a"], start_bins=[0, 1], epochs=2)
    )
    assert chosen.next_stage() == MultiDatasetSample(["c", "a"], {0, 1}, 2, score=1)


def test_stays_while_the_loss_falls_and_widens_to_the_easiest_neighbour_on_a_plateau():
    policy = AdaptiveCurriculum(DATASETS, settings=AdaptiveSettings(min_improvement=0.05, max_stages_per_set=10))
    policy.next_stage(table(lambda d, b: 2.0))
    # 10% lower: no plateau, the same set again.
    assert policy.next_stage(table(lambda d, b: 1.8)) == MultiDatasetSample(["a"], {3, 4, 5}, score=2)
    # 1% lower: a plateau. Bin 6 is easier than bin 2 and than dataset b on bins 3-5: it joins.
    after = table(lambda d, b: 1.78, a2=1.9, a6=1.5, b3=1.6, b4=1.6, b5=1.6)
    assert policy.next_stage(after) == MultiDatasetSample(["a"], {3, 4, 5, 6}, score=3)
    assert policy.decisions[-1].action == "widen-bins" and "bin 6" in policy.decisions[-1].reason
    # Next plateau: dataset b (mean 1.2 over bins 3-6) is easier than bins 2 (1.9) and 7 (1.7): it is appended.
    after = table(lambda d, b: 1.77, a2=1.9, a7=1.7, b3=1.2, b4=1.2, b5=1.2, b6=1.2)
    assert policy.next_stage(after) == MultiDatasetSample(["a", "b"], {3, 4, 5, 6}, score=4)
    assert policy.decisions[-1].action == "add-dataset"


def test_widens_after_max_stages_per_set_even_while_improving():
    policy = AdaptiveCurriculum(DATASETS, settings=AdaptiveSettings(max_stages_per_set=2, revisit=False))
    stages = [policy.next_stage(table(lambda d, b, k=k: 3.0 - 0.5 * k)) for k in range(4)]
    assert [len(s.bins) + len(s.datasets) for s in stages] == [4, 4, 5, 5]


def test_a_forgotten_dataset_is_revisited_once_then_the_whole_set_returns():
    settings_ = AdaptiveSettings(start_datasets=["a", "b"], max_stages_per_set=10, forget_tolerance=0.1)
    policy = AdaptiveCurriculum(DATASETS, settings=settings_)
    policy.next_stage(table(lambda d, b: 2.0))
    policy.observe(table(lambda d, b: 1.5))  # a and b reach 1.5 during the stage: their best
    # At the end of the next stage a's loss is 20% above its best (b, trained last, is fine).
    revisit = policy.next_stage(table(lambda d, b: 1.8 if d == "a" else 1.2))
    assert revisit == MultiDatasetSample(["a"], {3, 4, 5}, score=2)
    assert policy.decisions[-1].action == "revisit" and "a +20.0%" in policy.decisions[-1].reason
    assert policy.next_stage(table(lambda d, b: 1.1)) == MultiDatasetSample(["a", "b"], {3, 4, 5}, score=3)
    assert policy.decisions[-1].action == "return"
    # Forgotten again on this set: no second revisit (the set goes on).
    assert policy.next_stage(table(lambda d, b: 1.6 if d == "a" else 0.5)).datasets == ("a", "b")
    # revisit: false never drops a dataset.
    quiet = AdaptiveCurriculum(DATASETS, settings=AdaptiveSettings(**{**settings_.__dict__, "revisit": False}))
    quiet.next_stage(table(lambda d, b: 2.0))
    quiet.observe(table(lambda d, b: 1.5))
    assert quiet.next_stage(table(lambda d, b: 1.8 if d == "a" else 1.2)).datasets == ("a", "b")


def test_with_a_budget_it_completes_in_time_and_stops_when_spent():
    sizes = {d: {b: 100 for b in range(8)} for d in DATASETS}  # a complete stage: 2,400 images
    policy = AdaptiveCurriculum(
        DATASETS, budget=6000, train_sizes=sizes, settings=AdaptiveSettings(final_share=0.1, max_stages_per_set=20)
    )
    stages = run_policy(policy, lambda t, s: table(lambda d, b: 3.0 / (1 + t)), sizes)  # always improving
    # Never a plateau: it stays on the first set until the budget left (2,400) is one complete stage.
    assert len(stages) == 13 and all(len(s.bins) == 3 and s.datasets == ("a",) for s in stages[:-1])
    assert stages[-1].bins == set(range(8)) and len(stages[-1].datasets) == 3
    assert policy.decisions[-2].action == "complete" and "a complete stage needs 2400" in policy.decisions[-2].reason
    assert policy.done and policy.decisions[-1].action == "stop" and policy.images_seen >= 6000
    assert policy.next_stage() is None
    assert not check_schedule(stages, all_datasets=DATASETS)


def test_without_a_budget_it_stops_at_the_complete_sets_plateau_or_max_stages():
    policy = AdaptiveCurriculum(DATASETS, settings=AdaptiveSettings(max_stages=6, revisit=False))
    stages = run_policy(policy, lambda t, s: table(lambda d, b: 3.0 / (1 + t)))
    assert len(stages) == 6 and stages[-1].bins == set(range(8)) and len(stages[-1].datasets) == 3
    assert policy.decisions[-2].action == "complete" and "max_stages" in policy.decisions[-1].reason
    flat = AdaptiveCurriculum(DATASETS, settings=AdaptiveSettings(max_stages=50))
    stages = run_policy(flat, lambda t, s: table(lambda d, b: 2.0))  # nothing improves: widen every stage
    assert len(stages) == 1 + 5 + 2  # start, 5 bins, 2 datasets (the complete set); then its plateau stops it
    assert "complete set" in flat.decisions[-1].reason


def test_unknown_losses_rank_last_and_ties_go_to_the_lower_bin():
    policy = AdaptiveCurriculum(DATASETS, settings=AdaptiveSettings(max_stages_per_set=1, revisit=False))
    policy.next_stage()
    assert policy.next_stage(table(lambda d, b: math.nan, a2=1.0, a6=1.0)).bins == {2, 3, 4, 5}
    # Bin 1 of a is unknown, bin 6 is at 1.0 and dataset c at 0.5 (its one known cell): c joins.
    assert policy.next_stage({("c", 3): 0.5}).datasets == ("a", "c")


def test_bad_settings_and_observations_name_the_field():
    for bad, field in (
        (dict(min_improvement=1.5), "min_improvement"),
        (dict(epochs=0), "epochs"),
        (dict(start_bins=[2, 5]), "start_bins"),
        (dict(start_bins=3), "start_bins"),
        (dict(start_datasets=["z"]), "start_datasets"),
        (dict(final_share=-0.1), "final_share"),
    ):
        with pytest.raises(ValueError, match=f"^{field}: "):
            AdaptiveCurriculum(DATASETS, settings=AdaptiveSettings(**bad))
    policy = AdaptiveCurriculum(DATASETS)
    with pytest.raises(ValueError, match=r"unknown cell \('z', 1\)"):
        policy.observe({("z", 1): 1.0})
    with pytest.raises(ValueError, match="^budget: "):
        AdaptiveCurriculum(DATASETS, budget=0)


def test_state_dict_round_trip_continues_with_the_same_decisions():
    def losses(t, stage):  # falling, easier in the middle bins, and dataset a forgets every fourth stage
        return table(
            lambda d, b: (
                2.0 / (1 + 0.1 * t)
                + 0.05 * abs(b - 4)
                + (0.3 if d == "b" else 0.0)
                + (0.5 * (t % 4 == 2) if d == "a" else 0.0)
            )
        )

    policy_settings = AdaptiveSettings(start_datasets=["a", "b"], max_stages=12)
    whole = AdaptiveCurriculum(DATASETS, settings=policy_settings)
    expected = run_policy(whole, losses)
    first = AdaptiveCurriculum(DATASETS, settings=policy_settings)
    stage = first.next_stage(losses(0, None))
    for t in range(1, 5):
        stage = first.next_stage(losses(t, stage))
    state = json.loads(json.dumps(first.state_dict()))  # plain JSON types only
    second = AdaptiveCurriculum(DATASETS, settings=policy_settings)
    second.load_state_dict(state)
    t = 4
    while stage is not None:
        t += 1
        stage = second.next_stage(losses(t, stage))
    assert list(second.stages) == expected and second.decisions == whole.decisions
    assert any(d.action == "revisit" for d in whole.decisions)  # this sequence exercises a revisit


loss_tables = st.lists(st.lists(st.floats(0.05, 5.0), min_size=24, max_size=24), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(loss_tables, st.booleans(), st.integers(1, 4), st.sampled_from([None, 3000, 9000]))
def test_any_loss_sequence_gives_valid_stages_and_keeps_the_rules_it_claims(tables, revisit, max_per_set, budget):
    sizes = {d: {b: 50 for b in range(8)} for d in DATASETS}
    policy = AdaptiveCurriculum(
        DATASETS,
        budget=budget,
        train_sizes=sizes,
        settings=AdaptiveSettings(revisit=revisit, max_stages_per_set=max_per_set),
    )

    def losses(t, stage):
        values = tables[t % len(tables)]
        return {(d, b): values[i * 8 + b] for i, d in enumerate(DATASETS) for b in range(8)}

    stages = run_policy(policy, losses, sizes)
    again = AdaptiveCurriculum(
        DATASETS,
        budget=budget,
        train_sizes=sizes,
        settings=AdaptiveSettings(revisit=revisit, max_stages_per_set=max_per_set),
    )
    assert run_policy(again, losses, sizes) == stages  # deterministic
    assert all(isinstance(s, MultiDatasetSample) for s in stages)
    assert [s.score for s in stages] == list(range(1, len(stages) + 1))
    assert all(d.action in ACTIONS for d in policy.decisions)
    violations = check_schedule(stages, num_bins=8, all_datasets=DATASETS)
    # Kept by construction: nested bins, increasing scores, bins in range, a complete last stage; only a revisit
    # breaks the dataset subsequence, and only where a revisit stage is.
    revisits = {d.stage for d in policy.decisions if d.action == "revisit"}
    assert {(v.rule, v.stage) for v in violations} <= {(DATASET_SUBSEQUENCE, i) for i in revisits}
    if not revisit:
        assert not violations and TrainingSchedule(stages, all_datasets=DATASETS)  # strict: raises on any
    schedule = policy.schedule() if not violations else None
    if violations:
        with pytest.warns(ScheduleWarning):
            schedule = policy.schedule()
    assert list(schedule) == stages and not any(v.rule == COMPLETE_LAST_STAGE for v in violations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScheduleWarning)  # the revisits' violations, checked above
        replayed = TrainingSchedule.from_json(policy.to_json(), strict=False, all_datasets=DATASETS)
    assert replayed.stages == tuple(stages)


# --------------------------------------------------------------------------------------------- in the trainer


def make_adaptive_trainer(run_dir=None, budget=None, **policy):
    torch.manual_seed(0)
    sets = {"a": learnable_dataset(96, 1), "b": learnable_dataset(96, 2)}
    vals = {"a": learnable_dataset(48, 3), "b": learnable_dataset(48, 4)}
    sizes = {name: {b: int((ds.age_bins == b).sum()) for b in range(8)} for name, ds in sets.items()}
    curriculum = AdaptiveCurriculum(
        ["a", "b"], 8, AdaptiveSettings(**{"max_stages": 8, **policy}), budget=budget, train_sizes=sizes
    )
    cfg = TrainerConfig(batch_size=16, lr=1e-2, seed=0, early_stopping_patience=None, image_budget=budget)
    return CurriculumTrainer(TinyDual(), curriculum, sets, vals, config=cfg, run_dir=run_dir)


def weights(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_trainer_runs_what_the_policy_decides_from_per_bin_validation_losses(tmp_path):
    trainer = make_adaptive_trainer(tmp_path)
    history = trainer.fit()
    policy = trainer.curriculum
    assert policy.done and policy.stages[0] == MultiDatasetSample(["a"], {3, 4, 5}, score=1)
    # Algorithm 1 over the decided stages, in order, and nothing else.
    expected = [(i, name) for i, stage in enumerate(policy.stages) for name in stage.datasets]
    assert [(r.stage, r.dataset) for r in history] == expected
    assert policy.stages[-1].bins == set(range(8)) and set(policy.stages[-1].datasets) == {"a", "b"}
    assert policy.images_seen == trainer.images_seen == sum(r.images for r in history)
    # The per-bin losses it saw are the plain cross-entropies of each (dataset, bin) of the validation sets.
    per_bin = trainer.evaluate_per_bin(trainer.val_sets["b"])[1]
    val = trainer.val_sets["b"]
    with torch.no_grad():
        age_logits, gender_logits = trainer.model.eval()(val.images)
    ce = torch.nn.functional.cross_entropy(
        age_logits, val.age_bins, reduction="none"
    ) + torch.nn.functional.cross_entropy(gender_logits, val.genders, reduction="none")
    for b in range(8):
        assert per_bin[b] == pytest.approx(ce[val.age_bins == b].mean().item(), rel=1e-5)
    assert policy.losses[("b", 2)] == pytest.approx(per_bin[2], rel=1e-5)
    # The learned schedule and the decisions are on disk, and the schedule passes Eq. 7 when nothing was revisited.
    saved = TrainingSchedule.load(tmp_path / "learned_schedule.json", strict=False)
    assert saved.stages == policy.stages
    decisions = json.loads((tmp_path / "adaptive.json").read_text(encoding="utf-8"))["decisions"]
    assert [d["action"] for d in decisions] == [d.action for d in policy.decisions]


def test_image_budget_ends_static_and_adaptive_runs_at_the_batch_that_reaches_it():
    trainer = make_adaptive_trainer(budget=300)
    history = trainer.fit()
    assert 300 <= trainer.images_seen < 300 + 16 and sum(r.images for r in history) == trainer.images_seen
    assert trainer.curriculum.decisions[-1].action == "stop" and "budget" in trainer.curriculum.decisions[-1].reason
    assert trainer.curriculum.stages[-1].bins == set(range(8))  # completed before the budget ran out
    torch.manual_seed(0)
    schedule = TrainingSchedule([MultiDatasetSample(["a", "b"], range(8), epochs=5)])
    static = CurriculumTrainer(
        TinyDual(),
        schedule,
        {"a": learnable_dataset(96, 1), "b": learnable_dataset(96, 2)},
        config=TrainerConfig(batch_size=16, image_budget=200),
    )
    assert [r.images for r in static.fit()] == [96, 96, 16]  # the third epoch stops at its first batch


def test_resume_after_a_kill_gives_the_same_decisions_and_weights(tmp_path):
    whole = make_adaptive_trainer(tmp_path / "whole")
    whole.fit()

    class Killed(Exception):
        pass

    def kill_after(epoch):
        def callback(record):
            if record.global_epoch == epoch:
                raise Killed

        return callback

    run_dir = tmp_path / "killed"
    for epoch in (0, 3):  # killed after the first epoch, and again after a later one
        trainer = make_adaptive_trainer(run_dir)
        trainer.callbacks.append(kill_after(epoch))
        with pytest.raises(Killed):
            trainer.fit(resume=True)
    resumed = make_adaptive_trainer(run_dir)
    resumed.fit(resume=True)
    assert resumed.curriculum.stages == whole.curriculum.stages
    assert resumed.curriculum.decisions == whole.curriculum.decisions
    assert [(r.stage, r.dataset, r.images) for r in resumed.history] == [
        (r.stage, r.dataset, r.images) for r in whole.history
    ]
    assert torch.equal(weights(resumed), weights(whole))
    # Another policy setting is another run: refused.
    with pytest.raises(Exception, match="belongs to a different run"):
        make_adaptive_trainer(run_dir, min_improvement=0.5).fit(resume=True)


def test_the_learned_schedule_replays_as_a_static_schedule_to_the_same_weights(tmp_path):
    adaptive = make_adaptive_trainer(tmp_path)
    adaptive.fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScheduleWarning)  # no revisit here: the replay is strictly valid
        config = apply_overrides(RunConfig(), [f"schedule={tmp_path / 'learned_schedule.json'}"])
        replayed_schedule = build_schedule(config, 8)
    assert replayed_schedule.stages == adaptive.curriculum.stages
    torch.manual_seed(0)
    sets = {"a": learnable_dataset(96, 1), "b": learnable_dataset(96, 2)}
    vals = {"a": learnable_dataset(48, 3), "b": learnable_dataset(48, 4)}
    cfg = TrainerConfig(batch_size=16, lr=1e-2, seed=0, early_stopping_patience=None)
    replay = CurriculumTrainer(TinyDual(), replayed_schedule, sets, vals, config=cfg)
    replay.fit()
    assert [(r.stage, r.dataset, r.images) for r in replay.history] == [
        (r.stage, r.dataset, r.images) for r in adaptive.history
    ]
    assert torch.equal(weights(replay), weights(adaptive))


# --------------------------------------------------------------------------------------------- configuration


def test_config_builds_the_policy_and_names_bad_fields():
    config = apply_overrides(
        RunConfig(),
        [
            "schedule=adaptive",
            "data.datasets=[utkface, morph2]",
            "trainer.image_budget=5000",
            "adaptive.start_bins=[2, 3]",
        ],
    )
    check_config(config)
    policy = build_curriculum(config, 8, sizes={"utkface": {2: 10}})
    assert isinstance(policy, AdaptiveCurriculum) and policy.budget == 5000 and policy.datasets == ("utkface", "morph2")
    assert policy.next_stage().bins == {2, 3}
    with pytest.raises(ValueError, match=r"^adaptive\.start_bins: "):
        build_curriculum(apply_overrides(RunConfig(), ["schedule=adaptive", "adaptive.start_bins=[0, 9]"]), 8)
    with pytest.raises(ValueError, match=r"^adaptive\.min_improvement: must be >= 0, < 1"):
        check_config(apply_overrides(RunConfig(), ["adaptive.min_improvement=2"]))
    with pytest.raises(ValueError, match=r"^trainer\.image_budget: must be >= 1"):
        check_config(apply_overrides(RunConfig(), ["trainer.image_budget=0"]))
    with pytest.raises(ValueError, match=r"^schedule: expected a preset .* got 'adaptiv'"):
        build_curriculum(apply_overrides(RunConfig(), ["schedule=adaptiv"]), 8)
    with pytest.raises(ValueError, match=r"^schedule: .*missing\.json"):
        build_schedule(apply_overrides(RunConfig(), ["schedule=missing.json"]), 8)


def test_dry_run_describes_the_adaptive_curriculum():
    config = apply_overrides(
        RunConfig(),
        [
            "schedule=adaptive",
            "bins=paper",
            "data.datasets=[utkface, morph2]",
            "trainer.image_budget=20000",
            "adaptive.revisit=false",
        ],
    )
    text = "\n".join(describe_run(config))
    assert "curriculum: adaptive" in text and "stage 0: utkface; bins 3-5 (ages 15-23, 24-34, 35-45)" in text
    assert "no revisits" in text and "image budget (20000)" in text and "image budget: 20000" in text
    assert "time budget: none" in text
    timed = describe_run(apply_overrides(config, ["trainer.time_budget=75"]))
    assert "time budget: 75 min of training steps, then the run ends" in timed


def test_the_worked_example_of_the_docs_prints_what_the_page_says(capsys):
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "adaptive.rst").read_text(encoding="utf-8")
    code = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", page).group(1)
    printed = re.search(r"It prints[^:]*::\n\n((?:    .*\n)+)", page).group(1)
    exec(compile("\n".join(line[4:] for line in code.splitlines()), "docs/adaptive.rst", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [line[4:] for line in printed.splitlines()]
