"""Issue 19, the paper's run: LR plateau and early stopping that act, the best epoch released, the paper's plan.

The trainer tests use test_trainer's tiny model and data: every scope of the LR plateau and of early stopping is
shown firing on its own loss (``pair`` also shown unable to with few epochs per pair), and ``best.pt`` is shown to
be the epoch with the lowest selection score even when later epochs are worse.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from test_trainer import TinyDual, learnable_dataset

from agecurriculum.cli.main import main
from agecurriculum.config import load_config
from agecurriculum.data import TensorFaceDataset
from agecurriculum.losses import SumLoss
from agecurriculum.schedule import MultiDatasetSample, ScheduleWarning, TrainingSchedule
from agecurriculum.train import CheckpointError, CurriculumTrainer, TrainerConfig, load_checkpoint

CONFIGS = Path(__file__).resolve().parent.parent / "examples" / "configs"


def paired_schedule(stages=2, epochs=2):
    """``stages`` stages over datasets a then b, every bin, ``epochs`` epochs per (stage, dataset)."""
    return TrainingSchedule([MultiDatasetSample(["a", "b"], range(8), epochs=epochs) for _ in range(stages)])


def stalled_trainer(**config):
    # SumLoss has no parameters and the tiny model no dropout: at lr 0 every validation loss stays exactly as it
    # was (a stall for early stopping); at lr 1e-6 it moves by less than the plateau's threshold (1e-4 relative).
    torch.manual_seed(0)
    sets = {"a": learnable_dataset(32, 1), "b": learnable_dataset(32, 2)}
    vals = {"a": learnable_dataset(32, 3), "b": learnable_dataset(32, 4)}
    cfg = TrainerConfig(batch_size=8, **config)
    return CurriculumTrainer(TinyDual(), paired_schedule(), sets, vals, loss=SumLoss(), config=cfg)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        # Run: never reset, so it drops after every 2 bad epochs, whatever the pairs and stages.
        ("run", [1e-6, 1e-6, 1e-6, 5e-7, 5e-7, 2.5e-7, 2.5e-7, 1.25e-7]),
        # Stage: reset when a stage begins; each stage's 4 epochs leave room for one drop.
        ("stage", [1e-6, 1e-6, 1e-6, 5e-7, 5e-7, 5e-7, 5e-7, 2.5e-7]),
        # Pair: reset every 2 epochs, never 2 bad epochs in a row: the LR never moves (the behaviour issue 19 found).
        ("pair", [1e-6] * 8),
    ],
)
def test_the_lr_plateau_fires_in_its_scope(scope, expected):
    trainer = stalled_trainer(
        lr=1e-6, plateau_patience=1, plateau_factor=0.5, plateau_scope=scope, early_stopping_patience=None
    )
    history = trainer.fit()
    assert [r.lr for r in history] == pytest.approx(expected, rel=1e-9)
    assert [(r.stage, r.dataset) for r in history] == [(s, d) for s in (0, 1) for d in "ab" for _ in range(2)]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        # Run: the first epoch sets the best, two stale epochs end the whole run.
        ("run", [(0, "a", 0), (0, "a", 1), (0, "b", 0)]),
        # Stage: the same three epochs end each stage (b's second epoch is skipped), and the next stage starts afresh.
        ("stage", [(0, "a", 0), (0, "a", 1), (0, "b", 0), (1, "a", 0), (1, "a", 1), (1, "b", 0)]),
        # Pair: 2 epochs per pair never reach 2 stale epochs: everything runs.
        ("pair", [(s, d, e) for s in (0, 1) for d in "ab" for e in (0, 1)]),
    ],
)
def test_early_stopping_fires_in_its_scope(scope, expected):
    trainer = stalled_trainer(lr=0.0, early_stopping_patience=2, early_stopping_scope=scope)
    history = trainer.fit()
    assert [(r.stage, r.dataset, r.epoch) for r in history] == expected
    assert trainer.position.stage == len(trainer.schedule)  # the run is over


class BlindToMarked(TinyDual):
    """TinyDual that answers uniformly (zero logits) on images marked by a large pixel: their loss never moves."""

    def forward(self, x):
        age_logits, gender_logits = super().forward(x)
        marked = (x[:, 2, 3, 3] > 100).unsqueeze(1)
        return age_logits.masked_fill(marked, 0.0), gender_logits.masked_fill(marked, 0.0)


def pair_stalls_trainer(**config):
    # Dataset a's validation images are marked: the pair (stage, a) validates at exactly log 8 + log 2 every epoch,
    # while training lowers b's validation loss, and so the stage's and the run's (which pool a's and b's), every
    # epoch. Only the pair scope sees a stall, and only in a's pairs.
    torch.manual_seed(0)
    sets = {"a": learnable_dataset(32, 1), "b": learnable_dataset(32, 2)}
    vals = {"a": learnable_dataset(32, 3), "b": learnable_dataset(32, 4)}
    vals["a"].images[:, 2, 3, 3] = 1000.0
    cfg = TrainerConfig(batch_size=8, lr=1e-2, **config)
    return CurriculumTrainer(BlindToMarked(), paired_schedule(epochs=4), sets, vals, loss=SumLoss(), config=cfg)


@pytest.mark.parametrize("scope", ["pair", "stage", "run"])
def test_the_pair_scope_acts_on_the_pairs_own_loss_and_starts_afresh_at_the_next_pair(scope):
    history = pair_stalls_trainer(early_stopping_patience=2, early_stopping_scope=scope).fit()
    (a_loss,) = {r.val.loss for r in history if r.dataset == "a"}  # exactly the same at every epoch
    assert a_loss == pytest.approx(math.log(16), rel=1e-6)
    scores = [r.selection_loss for r in history]
    assert all(later < earlier for earlier, later in zip(scores, scores[1:]))  # the run's loss always falls
    epochs = [(r.stage, r.dataset, r.epoch) for r in history]
    lrs = [r.lr for r in pair_stalls_trainer(plateau_patience=1, plateau_factor=0.5, plateau_scope=scope).fit()]
    if scope == "pair":
        # Early stopping ends each a-pair after 1 + 2 stale epochs; the pair after it starts afresh (with the best
        # kept from the pair before, stage 1's a-pair would stop after 2). b's pairs improve and run in full.
        assert epochs == [(s, d, e) for s in (0, 1) for d, n in (("a", 3), ("b", 4)) for e in range(n)]
        # The plateau cuts the learning rate after each a-pair's third epoch, never in b's.
        assert lrs == pytest.approx([1e-2] * 3 + [5e-3] * 8 + [2.5e-3] * 5, rel=1e-9)
    else:
        # The stage's and the run's losses fall every epoch: neither acts.
        assert epochs == [(s, d, e) for s in (0, 1) for d in "ab" for e in range(4)]
        assert lrs == [1e-2] * 16


def test_with_one_epoch_per_pair_only_the_run_scope_acts():
    # The paper's case: the original curriculum trains each (stage, dataset) for a few epochs only.
    def lrs(scope):
        torch.manual_seed(0)
        sets = {"a": learnable_dataset(32, 1), "b": learnable_dataset(32, 2)}
        cfg = TrainerConfig(
            batch_size=8,
            lr=1e-6,
            plateau_patience=1,
            plateau_factor=0.1,
            plateau_scope=scope,
            early_stopping_patience=None,
        )
        trainer = CurriculumTrainer(
            TinyDual(), paired_schedule(stages=3, epochs=1), sets, sets, loss=SumLoss(), config=cfg
        )
        return [r.lr for r in trainer.fit()]

    assert lrs("pair") == [1e-6] * 6 and lrs("stage") == [1e-6] * 6
    assert lrs("run") == pytest.approx([1e-6, 1e-6, 1e-6, 1e-7, 1e-7, 1e-8], rel=1e-9)


def test_best_checkpoint_is_the_epoch_with_the_lowest_selection_score_not_the_last(tmp_path):
    # Stage 1 ends on dataset b, a's images with shuffled labels: training on it makes the model worse on a's
    # validation set, which the selection score watches. best.pt must keep the epoch before the damage.
    torch.manual_seed(0)
    clean = learnable_dataset(96, 1)
    noisy = TensorFaceDataset(clean.images, clean.age_bins[torch.randperm(96)], clean.genders[torch.randperm(96)])
    schedule = TrainingSchedule(
        [MultiDatasetSample(["a"], range(8), epochs=3), MultiDatasetSample(["a", "b"], range(8), epochs=3)]
    )
    cfg = TrainerConfig(batch_size=16, lr=1e-2, early_stopping_patience=None)
    trainer = CurriculumTrainer(
        TinyDual(),
        schedule,
        {"a": clean, "b": noisy},
        {"a": learnable_dataset(48, 3)},
        loss=SumLoss(),
        config=cfg,
        run_dir=tmp_path,
    )
    history = trainer.fit()
    scores = [r.selection_loss for r in history]
    best = min(range(len(history)), key=scores.__getitem__)
    assert trainer.best_epoch == best < len(history) - 1 and scores[-1] > scores[best]
    saved = load_checkpoint(tmp_path / "best.pt")
    assert saved["position"]["global_epoch"] == best + 1
    assert saved["history"][-1]["selection_loss"] == scores[best]
    assert saved["early_stopping"]["best_epoch"] == best
    # The selection score is every validation image with every bin: here a's whole validation set, every epoch.
    assert all(r.selection_loss == r.val.loss for r in history if r.dataset == "a")
    last = load_checkpoint(tmp_path / "checkpoint.pt")
    assert not torch.equal(last["model"]["age.weight"], saved["model"]["age.weight"])


def test_a_checkpoint_from_before_the_scopes_resumes_only_with_pair_scopes(tmp_path):
    trainer = stalled_trainer(lr=1e-3)
    trainer.run_dir = tmp_path
    trainer.save_checkpoint()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    for key in ("plateau_scope", "early_stopping_scope"):
        del state["config"][key]  # as written by a version that reset both at every (stage, dataset)
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(
        CheckpointError,
        match="config.early_stopping_scope is 'pair' there, 'stage' here; "
        "config.plateau_scope is 'pair' there, 'stage' here",
    ):
        stalled_trainer(lr=1e-3).load_checkpoint(tmp_path / "old.pt")
    stalled_trainer(lr=1e-3, plateau_scope="pair", early_stopping_scope="pair").load_checkpoint(tmp_path / "old.pt")


def test_paper_config_is_the_papers_run():
    config = load_config(CONFIGS / "paper.yaml")
    assert config.bins == "paper" and config.schedule == "original" and config.epochs_per_stage == 3
    assert (config.model.backbone, config.data.image_size, config.model.conditioning) == (
        "efficientnet-b4",
        380,
        "hard",
    )
    assert config.loss == "uncertainty" and config.data.balance == "paper"
    assert (config.trainer.plateau_scope, config.trainer.early_stopping_scope) == ("stage", "stage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScheduleWarning)
        from agecurriculum.train.run import build_schedule

        assert build_schedule(config, 8).total_epochs == 45


def test_dry_run_prints_the_papers_plan_without_training(capsys, monkeypatch, tmp_path):
    import agecurriculum.cli.runners.train as cli_train
    import agecurriculum.train.run as run_module

    def must_not_run(*args, **kwargs):
        raise AssertionError("a dry run prepares no data and trains nothing")

    monkeypatch.setattr(run_module, "prepare_data", must_not_run)
    monkeypatch.setattr(cli_train, "train", must_not_run)
    out_dir = tmp_path / "never"
    assert main(["train", "--config", str(CONFIGS / "paper.yaml"), "--dry-run", "--set", f"out_dir={out_dir}"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "efficientnet-b4",
        "380 x 380",
        "hard conditioning",
        "0-2, 3-6, 7-14, 15-23, 24-34, 35-45, 46-59, 60-100",
        "original curriculum",
        "45 epochs",
        "uncertainty",
        "ReduceLROnPlateau",
        "early stopping",
        "the stage's validation loss",
        "balance: paper",
        "best.pt",
        "release-last",
    ):
        assert expected in out, expected
    assert "stage 3" in out and "nested-bins" in out  # the rule the paper's curriculum breaks is named
    assert not out_dir.exists()


@pytest.mark.parametrize(
    ("section", "name", "value", "message"),
    [
        ("trainer", "plateau_scope", "epoch", "trainer.plateau_scope: expected one of run, stage, pair, got 'epoch'"),
        ("trainer", "early_stopping_scope", "all", "trainer.early_stopping_scope: expected one of run, stage, pair"),
        ("model", "conditioning", "argmax", "model.conditioning: expected one of hard, soft, got 'argmax'"),
        ("data", "balance", "median", "data.balance: expected one of paper, sampler, none, ratio, got 'median'"),
    ],
)
def test_new_settings_are_checked_choices(section, name, value, message):
    from agecurriculum.config import RunConfig, check_config

    config = RunConfig()
    setattr(getattr(config, section), name, value)
    with pytest.raises(ValueError, match=message):
        check_config(config)


def test_config_choices_match_the_code_that_reads_them():
    from agecurriculum.config import BALANCE_MODES, CONDITIONING_MODES, RunConfig
    from agecurriculum.data.balance import BALANCE_RULES
    from agecurriculum.model.heads import CONDITIONINGS

    assert CONDITIONING_MODES == CONDITIONINGS and set(BALANCE_RULES) <= set(BALANCE_MODES)
    defaults = RunConfig()
    # Soft is the default so that releases and configs that do not name a conditioning mean what they meant.
    assert defaults.model.conditioning == "soft"
    assert (defaults.trainer.plateau_scope, defaults.trainer.early_stopping_scope) == ("stage", "stage")
