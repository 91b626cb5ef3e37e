import collections
import json
import pickle
import random
import signal
import subprocess
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from test_trainer import TinyDual, learnable_dataset, two_stage_schedule
from torch import nn

from agecurriculum.bins import PAPER_BINS, AgeBins
from agecurriculum.losses import SumLoss
from agecurriculum.model import DualClassifier
from agecurriculum.schedule import MultiDatasetSample, TrainingSchedule
from agecurriculum.train import (
    CheckpointError,
    CurriculumTrainer,
    TrainerConfig,
    load_checkpoint,
    load_release,
    save_release,
)

TESTS_DIR = Path(__file__).resolve().parent


class TinyDropoutDual(TinyDual):
    """TinyDual with dropout: every training step draws from torch's RNG, so a resume must restore it."""

    def __init__(self):
        super().__init__()
        self.features.append(nn.Dropout(0.3))


def build_trainer(run_dir, callbacks=(), epochs=2, **config):
    """The run the kill tests interrupt; also imported by the subprocess they kill."""
    torch.manual_seed(0)
    sets = {"a": learnable_dataset(96, 1), "b": learnable_dataset(96, 2)}
    vals = {"a": learnable_dataset(48, 3), "b": learnable_dataset(48, 4)}
    cfg = TrainerConfig(**{"batch_size": 16, "lr": 1e-2, "seed": 0, **config})
    return CurriculumTrainer(
        TinyDropoutDual(),
        two_stage_schedule(epochs),
        sets,
        vals,
        config=cfg,
        callbacks=list(callbacks),
        run_dir=run_dir,
    )


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests_dir!r})
from test_checkpoint import build_trainer

def kill_after(record):
    if record.global_epoch == {kill_after}:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: as hard as a crash or an OOM kill gets

build_trainer({run_dir!r}, callbacks=[kill_after]).fit(resume=True)
raise SystemExit("the run was not killed")
"""


def weights(trainer):
    return {**trainer.model.state_dict(), **{f"loss.{k}": v for k, v in trainer.loss_fn.state_dict().items()}}


def without_seconds(history):
    return [{k: v for k, v in asdict(r).items() if k != "seconds"} for r in history]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_run_killed_mid_way_resumes_bit_identical(tmp_path):
    reference = build_trainer(tmp_path / "reference")
    reference.fit()
    assert len(reference.history) == 6

    run_dir = tmp_path / "run"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN.format(tests_dir=str(TESTS_DIR), run_dir=str(run_dir), kill_after=2))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    saved = load_checkpoint(run_dir / "checkpoint.pt")
    # Killed after global epoch 2 = stage 1, dataset a, epoch 0: the next one is its epoch 1.
    assert saved["position"] == {"stage": 1, "dataset_index": 0, "epoch": 1, "global_epoch": 3}

    resumed = build_trainer(run_dir)  # a fresh trainer, as in a new process
    history = resumed.fit(resume=True)
    assert without_seconds(history) == without_seconds(reference.history)
    expected = weights(reference)
    got = weights(resumed)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert torch.equal(torch.get_rng_state(), reference_rng_after(tmp_path))
    assert (run_dir / "best.pt").is_file()
    assert not [p for p in run_dir.iterdir() if p.suffix == ".tmp"]


def reference_rng_after(tmp_path):
    # The RNG state the uninterrupted run ended with, from its final checkpoint.
    return load_checkpoint(tmp_path / "reference" / "checkpoint.pt")["rng"][0]["torch"]


def test_resume_keeps_early_stopping_and_plateau_state(tmp_path):
    def run(run_dir, callbacks=()):
        torch.manual_seed(0)
        sets = {"a": learnable_dataset(32, 1)}
        schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=20)])
        # lr 0 never improves the validation loss: early stopping after 1 + 2 epochs, plateau after 1 + 1.
        cfg = TrainerConfig(batch_size=8, lr=0.0, early_stopping_patience=2, plateau_patience=1)
        return CurriculumTrainer(
            TinyDual(),
            schedule,
            sets,
            {"a": learnable_dataset(32, 9)},
            loss=SumLoss(),
            config=cfg,
            callbacks=callbacks,
            run_dir=run_dir,
        )

    class Interrupt(Exception):
        pass

    def interrupt_after_second_epoch(record):
        if record.global_epoch == 1:
            raise Interrupt

    whole = run(tmp_path / "whole")
    uninterrupted = whole.fit()
    with pytest.raises(Interrupt):
        run(tmp_path / "cut", [interrupt_after_second_epoch]).fit()
    resumed = run(tmp_path / "cut")
    history = resumed.fit(resume=True)
    # Without the saved early-stopping count the resumed run would start counting again: 2 + 3 epochs.
    assert len(uninterrupted) == len(history) == 3
    assert without_seconds(history) == without_seconds(uninterrupted)
    assert resumed.lr_scheduler.state_dict() == whole.lr_scheduler.state_dict()


def test_resume_after_the_end_trains_nothing(tmp_path):
    build_trainer(tmp_path, epochs=1).fit()
    again = build_trainer(tmp_path, epochs=1)
    calls = []
    again.callbacks.append(calls.append)
    assert len(again.fit(resume=True)) == 3 and calls == []


def test_resume_without_checkpoint_starts_fresh_and_needs_run_dir(tmp_path):
    trainer = build_trainer(tmp_path / "new", epochs=1)
    assert len(trainer.fit(resume=True)) == 3
    with pytest.raises(ValueError, match="run_dir"):
        build_trainer(None, epochs=1).fit(resume=True)


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    trainer = build_trainer(tmp_path, max_steps_per_epoch=1)
    trainer.callbacks.append(lambda record: record.global_epoch == 1 and monkeypatch.setattr(torch, "save", half_save))

    def half_save(obj, f):  # what a kill or a full disk mid-write leaves: the start of a zip file
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        trainer.fit()
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["position"]["global_epoch"] == 2 and len(saved["history"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "checkpoint.pt"]  # no temporary file left


def test_resume_with_another_config_or_schedule_is_refused(tmp_path):
    build_trainer(tmp_path, epochs=1, max_steps_per_epoch=1).fit()
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt belongs to a different run: config\.batch_size is 16"):
        build_trainer(tmp_path, epochs=1, max_steps_per_epoch=1, batch_size=8).fit(resume=True)
    with pytest.raises(CheckpointError, match="schedule is"):
        build_trainer(tmp_path, epochs=2, max_steps_per_epoch=1).fit(resume=True)
    # Where the run executes may change: device, workers, progress bar.
    assert (
        len(build_trainer(tmp_path, epochs=1, max_steps_per_epoch=1, num_workers=0, progress=False).fit(resume=True))
        == 3
    )


def test_check_same_run_names_every_difference_and_reads_old_checkpoints_as_they_ran():
    from agecurriculum.train.checkpoint import check_same_run

    schedule = {"stages": two_stage_schedule(1).to_dicts(), "num_bins": 8, "datasets": ["a", "b"]}
    saved = {"config": asdict(TrainerConfig()), "schedule": schedule, "dataset_sizes": {"a": 96}}
    check_same_run(saved, TrainerConfig(device="cpu", num_workers=3, progress=True), schedule, {"a": 96})
    with pytest.raises(
        CheckpointError,
        match=r"^old\.pt belongs to a different run: config\.batch_size is 32 there, 8 here; schedule is .*; "
        r"training-set sizes are \{'a': 96\} there, \{'a': 95\} here$",
    ):
        check_same_run(saved, TrainerConfig(batch_size=8), {**schedule, "num_bins": 7}, {"a": 95}, "old.pt")
    # A checkpoint from before the scopes ran them at "pair"; one from before the sizes were kept is not checked.
    old = {"config": {k: v for k, v in saved["config"].items() if not k.endswith("_scope")}, "schedule": schedule}
    check_same_run(old, TrainerConfig(plateau_scope="pair", early_stopping_scope="pair"), schedule, {"a": 1})
    with pytest.raises(CheckpointError, match="config.early_stopping_scope is 'pair' there, 'stage' here"):
        check_same_run(old, TrainerConfig(), schedule, {"a": 1})


def test_missing_or_corrupt_checkpoint_errors_name_the_file(tmp_path):
    trainer = build_trainer(tmp_path, epochs=1, max_steps_per_epoch=1)
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        trainer.load_checkpoint(missing)
    trainer.fit()
    good = (tmp_path / "checkpoint.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        trainer.load_checkpoint(truncated)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="other.pt: not an agecurriculum training checkpoint"):
        trainer.load_checkpoint(other)


# Files the safe loader refuses: random bytes (one starting as a protocol-4 pickle, which also drew torch's
# "Detected pickle protocol" warning) and a pickle of a class that is not plain data.
NOT_CHECKPOINTS = {
    "random.pt": random.Random(0).randbytes(100_000),
    "protocol4.pt": b"\x80\x04" + random.Random(1).randbytes(100_000),
    "counter.pt": pickle.dumps(collections.Counter(a=1)),
    "empty.pt": b"",
    "text.pt": b"hello\n",
}


@pytest.mark.parametrize("name", NOT_CHECKPOINTS)
def test_a_file_that_is_not_a_checkpoint_is_one_line_without_unsafe_advice(tmp_path, name):
    # Issue 30.6: torch's text was six lines ending in the advice to load with weights_only=False (arbitrary code).
    path = tmp_path / name
    path.write_bytes(NOT_CHECKPOINTS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning besides the error: it would be a second line
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
    assert str(caught.value) == f"{path}: not a checkpoint (truncated, corrupt, or another kind of file)"
    assert path.read_bytes() == NOT_CHECKPOINTS[name]  # left as it was


def test_checkpoint_is_a_plain_dict_with_the_documented_keys(tmp_path):
    trainer = build_trainer(tmp_path, epochs=1, max_steps_per_epoch=1)
    trainer.fit()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {
        "model",
        "optimizer",
        "lr_scheduler",
        "scaler",
        "loss_fn",
        "position",
        "early_stopping",
        "history",
        "rng",
        "config",
        "schedule",
        "dataset_sizes",
        "world_size",
    } <= set(saved)
    assert set(saved["loss_fn"]) == {"log_var_age", "log_var_gender"}
    assert set(saved["rng"][0]) == {"torch", "cuda", "numpy", "python"}
    assert saved["config"] == asdict(trainer.config)
    assert saved["schedule"]["stages"] == two_stage_schedule(1).to_dicts()
    assert [row["global_epoch"] for row in saved["history"]] == [0, 1, 2]


def test_best_checkpoint_holds_the_lowest_selection_score_of_the_run(tmp_path):
    # The selection score (every validation set, every bin) compares across stages and datasets, unlike each
    # pair's own validation loss; tests/test_paper_setup.py has a run whose best epoch is not the last.
    trainer = build_trainer(tmp_path, epochs=3)
    history = trainer.fit()
    best = load_checkpoint(tmp_path / "best.pt")
    best_record = min(history, key=lambda r: r.selection_loss)
    assert trainer.best_epoch == best_record.global_epoch
    assert best["position"]["global_epoch"] == best_record.global_epoch + 1
    assert best["history"][-1]["selection_loss"] == best_record.selection_loss
    assert best_record.selection_loss < history[0].selection_loss  # the run did improve


def test_release_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = DualClassifier(backbone="efficientnet-lite0", bottleneck_dim=16).eval()
    preprocessing = {"image_size": 64, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "alignment": {"eyes": 0.35}}
    save_release(model, tmp_path / "release", PAPER_BINS, preprocessing, extra={"trained_on": ["utkface"]})
    loaded, info = load_release(tmp_path / "release")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for expected, got in zip(model(images), loaded(images)):
            assert torch.equal(expected, got)
    assert not loaded.training
    config = info.config
    assert info.bins == AgeBins.from_dict(config["age_bins"]) == PAPER_BINS
    assert config["preprocessing"] == preprocessing and config["extra"] == {"trained_on": ["utkface"]}
    assert config["model"]["backbone"] == "efficientnet-lite0" and "library_version" in config
    on_disk = json.loads((tmp_path / "release" / "config.json").read_text())
    assert on_disk == config


def test_release_errors(tmp_path):
    model = DualClassifier(age_classes=3, backbone="efficientnet-lite0", bottleneck_dim=8)
    with pytest.raises(ValueError, match="3 age classes but bins has 8"):
        save_release(model, tmp_path / "r", PAPER_BINS, {})
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_release(tmp_path / "nothing")
    save_release(model, tmp_path / "r", AgeBins((10, 20)), {"image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3})
    (tmp_path / "r" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_release(tmp_path / "r")


def test_preprocessing_mismatch_compares_the_framing_of_photos_not_of_training_sets():
    from agecurriculum.data.sources import alignment_record
    from agecurriculum.release import preprocessing_mismatch

    base = {"image_size": 160, "mean": [0.5] * 3, "std": [0.5] * 3, "padding": 0.25}
    old = {**base, "alignment": {"utkface": "aligned", "other": "detect"}}
    new = {**base, "alignment": alignment_record()}
    assert new["alignment"] == {"utkface": "aligned", "fairface": "aligned", "other": "detect"}
    assert preprocessing_mismatch(old, new) is None  # a release trained on FairFace as crops can teach the old one
    assert preprocessing_mismatch(old, {**base, "alignment": {"other": "aligned"}}) == "alignment"
    assert preprocessing_mismatch(old, {**old, "padding": 0.3}) == "padding"
