"""End to end: ``agecurriculum train`` / ``evaluate`` on a tiny generated UTKFace + MORPH-II data root."""

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
from generated_data import AGES, shifted_face

from agecurriculum.cli.main import main
from agecurriculum.config import load_config
from agecurriculum.inference import ensemble_releases
from agecurriculum.train.run import prepare_data
from agecurriculum.train.run_logs import read_metrics

CONFIG = """
out_dir: unused
bins: paper
schedule:
  - {datasets: [utkface], bins: [2, 3, 4, 5], epochs: 1}
  - {datasets: [utkface, morph2], bins: [0, 1, 2, 3, 4, 5, 6, 7], epochs: 1}
data:
  datasets: [utkface, morph2]
  image_size: 32
  split: [0.6, 0.2, 0.2]
  preprocess_workers: 0
model:
  backbone: efficientnet-lite0
  pretrained: false
  bottleneck_dim: 32
trainer:
  batch_size: 8
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    utk, morph = root / "utkface" / "UTKFace", root / "morph2" / "images"
    utk.mkdir(parents=True)
    morph.mkdir(parents=True)
    for i in range(24):
        age, gender = AGES[i % len(AGES)], i % 2
        shifted_face(i, 64).save(utk / f"{age}_{gender}_0_2017011{i:05d}.jpg.chip.jpg", quality=60 + i)
    for i in range(16):
        age, sex = AGES[(i * 5) % len(AGES)] + 16, "MF"[i % 2]
        shifted_face(i, 150).save(morph / f"{i + 1:06d}_0{sex}{min(age, 77)}.JPG", quality=60 + i)
    return root


def _tiny_config(folder: Path, data_root: Path) -> tuple[Path, list[str]]:
    # The tiny config written to folder, and the overrides that point it at the generated data and a fresh cache.
    config = folder / "tiny.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    return config, ["--set", f"data.root={data_root}", "--set", f"data.cache={folder / 'cache'}"]


@pytest.fixture(scope="module")
def tiny_release(data_root, tmp_path_factory) -> Path:
    """A release trained once with CONFIG on the tiny data: the parent or teacher of the tests that start from one."""
    root = tmp_path_factory.mktemp("tiny-release")
    config, common = _tiny_config(root, data_root)
    assert main(["train", "--config", str(config), *common, "--set", f"out_dir={root / 'run'}"]) == 0
    return root / "run" / "release"


def _metrics(run: Path) -> list[dict]:
    return read_metrics(run / "metrics.csv")


def test_train_evaluate_resume(tmp_path, data_root, capsys):
    config, common = _tiny_config(tmp_path, data_root)
    run = tmp_path / "run"
    sets = [*common, "--set", f"out_dir={run}"]
    assert main(["train", "--config", str(config), *sets]) == 0

    for name in (
        "checkpoint.pt",
        "metrics.csv",
        "run_config.yaml",
        "resolved_config.json",
        "release/config.json",
        "release/model.safetensors",
        "report/report.md",
        "report/report.json",
    ):
        assert (run / name).is_file(), name
    rows = _metrics(run)
    assert [(r["stage"], r["dataset"]) for r in rows] == [(0, "utkface"), (1, "utkface"), (1, "morph2")]
    markdown = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Results (Table III form)" in markdown and "(the mean training age in each bin;" in markdown
    assert "## Comparison protocols" in markdown and "UTKFace, 7 groups" in markdown
    assert "| Dataset | Gender accuracy (%) | Age accuracy (%) (8 bins) | 1-off (%) | MAE (years) | n |" in markdown
    trained = json.loads((run / "report" / "report.json").read_text(encoding="utf-8"))
    assert {d["name"] for d in trained["datasets"]} == {"utkface", "morph2"}
    assert load_config(run / "run_config.yaml").data.root == str(data_root)

    # The release, reloaded, gives the same numbers on the same test splits.
    assert main(["evaluate", "--run", str(run), "--out", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "report.json").read_text(encoding="utf-8"))
    for a, b in zip(trained["datasets"], evaluated["datasets"], strict=True):
        assert a["name"] == b["name"]
        for key, value in a["metrics"].items():
            assert b["metrics"][key] == pytest.approx(value, abs=1e-9, nan_ok=True), (a["name"], key)
        assert a["age_confusion"] == b["age_confusion"] and a["gender_confusion"] == b["gender_confusion"]

    # The validation parts, with and without flip averaging: other images than test, in the same report form (of
    # the last epoch's weights: the released best epoch of this tiny run may be too early for a mirror to matter).
    last = ["--release", str(run / "release-last")]
    assert main(["evaluate", "--run", str(run), *last, "--part", "val"]) == 0
    assert main(["evaluate", "--run", str(run), *last, "--part", "val", "--flip"]) == 0
    on_val = json.loads((run / "evaluation-release-last-val" / "report.json").read_text(encoding="utf-8"))
    flipped = json.loads((run / "evaluation-release-last-val-flip" / "report.json").read_text(encoding="utf-8"))
    splits = prepare_data(load_config(run / "run_config.yaml")).splits
    sizes = {name: split.sizes() for name, split in splits.items()}
    for a, b in zip(on_val["datasets"], flipped["datasets"], strict=True):
        assert a["metrics"]["n"] == b["metrics"]["n"] == sizes[a["name"]]["val"]
    assert any(
        a["metrics"]["age_accuracy"] != b["metrics"]["age_accuracy"] or a["metrics"]["mae"] != b["metrics"]["mae"]
        for a, b in zip(on_val["datasets"], flipped["datasets"])
    )

    # The release is the best epoch by the selection score, best.pt; release-last the last one, checkpoint.pt.
    for release_dir, checkpoint in (("release", "best.pt"), ("release-last", "checkpoint.pt")):
        released = safetensors.torch.load_file(run / release_dir / "model.safetensors")
        saved = torch.load(run / checkpoint, weights_only=True)
        assert released.keys() == saved["model"].keys()
        assert all(torch.equal(released[k], saved["model"][k]) for k in released), release_dir
    best_epoch = torch.load(run / "best.pt", weights_only=True)["early_stopping"]["best_epoch"]
    assert min(rows, key=lambda r: r["selection_loss"])["global_epoch"] == best_epoch
    release_config = json.loads((run / "release" / "config.json").read_text(encoding="utf-8"))
    assert release_config["extra"]["weights"] == {"epoch": best_epoch, "chosen": "best"}
    last_config = json.loads((run / "release-last" / "config.json").read_text(encoding="utf-8"))
    assert last_config["extra"]["weights"] == {"epoch": len(rows) - 1, "chosen": "last"}
    # best.pt holds the release's weights: evaluating it reproduces the report too.
    assert (
        main(
            ["evaluate", "--run", str(run), "--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "eval_ckpt")]
        )
        == 0
    )
    from_checkpoint = json.loads((tmp_path / "eval_ckpt" / "report.json").read_text(encoding="utf-8"))
    for a, b in zip(trained["datasets"], from_checkpoint["datasets"], strict=True):
        for key, value in a["metrics"].items():
            assert b["metrics"][key] == pytest.approx(value, abs=1e-9, nan_ok=True), (a["name"], key)
    # Another release on the run's test splits: an ensemble of the release with itself predicts what it predicts.
    twice = ensemble_releases([run / "release", run / "release"], tmp_path / "twice", weights_dtype=torch.float32)
    assert main(["evaluate", "--run", str(run), "--release", str(twice)]) == 0
    from_ensemble = json.loads((run / "evaluation-twice" / "report.json").read_text(encoding="utf-8"))
    for a, b in zip(trained["datasets"], from_ensemble["datasets"], strict=True):
        for key, value in a["metrics"].items():
            assert b["metrics"][key] == pytest.approx(value, abs=1e-4, nan_ok=True), (a["name"], key)
    assert main(["evaluate", "--run", str(run), "--release", str(twice), "--checkpoint", str(run / "best.pt")]) == 2
    assert "not both" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", "--run", str(run), "--checkpoint", str(tmp_path / "bad.pt")]) == 2
    assert "bad.pt" in capsys.readouterr().err

    # Resuming a finished run trains nothing more.
    capsys.readouterr()
    assert main(["train", "--config", str(config), *sets, "--resume"]) == 0
    assert "trained 0 epoch(s)" in capsys.readouterr().out
    assert len(_metrics(run)) == len(rows)

    # ... and can refit the release's representative ages on the validation parts without training.
    mean_ages = json.loads((run / "release" / "config.json").read_text())["extra"]["rep_ages"]
    assert main(["train", "--config", str(config), *sets, "--resume", "--set", "rep_ages=fit_val"]) == 0
    assert "trained 0 epoch(s)" in capsys.readouterr().out
    release = json.loads((run / "release" / "config.json").read_text())
    fitted = release["extra"]["rep_ages"]
    assert fitted != mean_ages and len(fitted) == 8
    groups = [(0, 2), (3, 6), (7, 14), (15, 23), (24, 34), (35, 45), (46, 59), (60, 100)]  # bins: paper
    assert all(lo - 1e-9 <= m <= hi + 1e-9 for m, (lo, hi) in zip(fitted, groups))
    assert release["extra"]["rep_ages_method"] == "fit_val"
    assert "fitted to the validation parts" in (run / "report" / "report.md").read_text(encoding="utf-8")
    assert main(["evaluate", "--run", str(run), "--out", str(tmp_path / "eval_fitted")]) == 0
    assert "fitted to the validation parts" in (tmp_path / "eval_fitted" / "report.md").read_text(encoding="utf-8")
    assert len(_metrics(run)) == len(rows)


def test_clear_errors(tmp_path, data_root, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    base = [
        "train",
        "--config",
        str(config),
        "--set",
        f"data.cache={tmp_path / 'cache'}",
        "--set",
        f"out_dir={tmp_path / 'run'}",
    ]
    assert main([*base, "--set", f"data.root={data_root}", "--set", "age_label_sigma=-1"]) == 2
    assert "age_label_sigma: must be >= 0, got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # refused before any face was detected
    assert main([*base, "--set", f"data.root={data_root}", "--set", "data.balance=weighted"]) == 2
    assert "data.balance: expected one of paper, sampler, none" in capsys.readouterr().err
    assert main([*base, "--set", f"data.root={data_root}", "--set", "data.datasets=[utkface]"]) == 2
    assert "['morph2']" in capsys.readouterr().err
    assert main([*base, "--set", f"data.root={data_root}", "--set", "rep_ages=median"]) == 2
    assert "rep_ages: 'median' is not one of train_mean, fit_val" in capsys.readouterr().err
    assert main([*base]) == 2
    assert "data.root" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_train_under_torchrun_two_gloo_processes(tmp_path, data_root):
    # The CLI itself under torchrun: rank 0 prepares the crops and writes; the run ends with one release and report.
    import os
    import subprocess
    import sys

    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "agecurriculum",
        "train",
        "--config",
        str(config),
        "--set",
        f"data.root={data_root}",
        "--set",
        f"data.cache={tmp_path / 'cache'}",
        "--set",
        f"out_dir={run}",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("trained 3 epoch(s)") == 1  # rank 0 reports, rank 1 stays quiet
    assert (run / "release" / "model.safetensors").is_file() and (run / "report" / "report.json").is_file()
    assert [(r["stage"], r["dataset"]) for r in _metrics(run)] == [(0, "utkface"), (1, "utkface"), (1, "morph2")]


def test_fine_tune_from_a_release(tmp_path, data_root, tiny_release, capsys):
    import safetensors.torch

    config, common = _tiny_config(tmp_path, data_root)
    first = tiny_release.parent

    # With a learning rate of 0 only BatchNorm statistics move: every trained parameter comes from the release.
    tuned = tmp_path / "tuned"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                *common,
                "--set",
                f"out_dir={tuned}",
                "--set",
                f"model.init_from={first / 'release'}",
                "--set",
                "trainer.lr=0",
                "--set",
                "trainer.weight_decay=0",
            ]
        )
        == 0
    )
    before = safetensors.torch.load_file(first / "release" / "model.safetensors")
    after = safetensors.torch.load_file(tuned / "release" / "model.safetensors")
    moved = [k for k in before if "running_" not in k and "num_batches" not in k and not (before[k] == after[k]).all()]
    assert not moved, moved
    assert load_config(tuned / "run_config.yaml").model.init_from == str(first / "release")

    capsys.readouterr()
    other_bins = [
        "--set",
        f"out_dir={tmp_path / 'x'}",
        "--set",
        f"model.init_from={first / 'release'}",
        "--set",
        "bins=[3, 7, 14, 24, 33, 43, 53]",
    ]
    assert main(["train", "--config", str(config), *common, *other_bins]) == 2
    assert "predicts the age bins" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                *common,
                "--set",
                f"out_dir={tmp_path / 'y'}",
                "--set",
                f"model.init_from={tmp_path / 'junk.pt'}",
            ]
        )
        == 2
    )
    assert "junk.pt" in capsys.readouterr().err
    ensemble = ensemble_releases([first / "release", tuned / "release"], tmp_path / "ensemble")
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                *common,
                "--set",
                f"out_dir={tmp_path / 'z'}",
                "--set",
                f"model.init_from={ensemble}",
            ]
        )
        == 2
    )
    assert "is an ensemble release" in capsys.readouterr().err


def test_fine_tune_with_frozen_blocks_keeps_them_as_the_parent_has_them(tmp_path, data_root, tiny_release, capsys):
    from agecurriculum.release import load_release

    config, common = _tiny_config(tmp_path, data_root)
    first = tiny_release.parent
    tuned = tmp_path / "tuned"
    frozen = ["--set", f"model.init_from={first / 'release'}", "--set", "model.freeze_blocks=8"]
    assert main(["train", "--config", str(config), *common, *frozen, "--set", f"out_dir={tuned}"]) == 0

    # The stem and the first 8 blocks come out exactly as the parent has them, BatchNorm statistics included (frozen
    # BatchNorm stays in eval mode); the blocks after them trained.
    model, _ = load_release(first / "release")
    model.freeze_backbone(8)
    modules = dict(model.named_modules())
    frozen_modules = [n for n, m in modules.items() if not any(p.requires_grad for p in m.parameters())]
    frozen_names = {n for n, p in model.named_parameters() if not p.requires_grad} | {
        f"{n}.{b}" for n in frozen_modules for b, _ in modules[n].named_buffers(recurse=False)
    }
    before = safetensors.torch.load_file(first / "release" / "model.safetensors")
    after = safetensors.torch.load_file(tuned / "release" / "model.safetensors")
    assert frozen_names and frozen_names <= set(before)
    assert all(torch.equal(before[k], after[k]) for k in frozen_names)
    trained = [
        k for k in before if k not in frozen_names and k.endswith("weight") and not torch.equal(before[k], after[k])
    ]
    assert any(k.startswith("backbone") for k in trained) and any(not k.startswith("backbone") for k in trained)
    assert load_config(tuned / "run_config.yaml").model.freeze_blocks == 8

    capsys.readouterr()
    too_many = ["--set", "model.freeze_blocks=17", "--set", f"out_dir={tmp_path / 'x'}"]
    assert main(["train", "--config", str(config), *common, *too_many]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("model.freeze_blocks: num_blocks must be in 0..16 for efficientnet-lite0, got 17")
    )


def test_a_gender_branch_grown_from_the_parent_trains_alone(tmp_path, data_root, tiny_release, capsys):
    """``model.gender_branch`` with ``model.train_only_gender``: the run grows the branch from a parent without
    one and trains it alone; everything the age path holds comes out exactly as the parent has it."""
    from agecurriculum.release import load_release

    config, common = _tiny_config(tmp_path, data_root)
    first = tiny_release.parent
    tuned = tmp_path / "tuned"
    branch = ["--set", f"model.init_from={first / 'release'}", "--set", "model.gender_branch=14"]
    only = ["--set", "model.train_only_gender=true"]
    assert main(["train", "--config", str(config), *common, *branch, *only, "--set", f"out_dir={tuned}"]) == 0
    before = safetensors.torch.load_file(first / "release" / "model.safetensors")
    after = safetensors.torch.load_file(tuned / "release" / "model.safetensors")
    assert set(before) < set(after)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("head.gender."))
    grown = [k for k in after if k not in before]
    assert grown and all(k.startswith(("gender_backbone.", "head.gender_bottleneck.")) for k in grown)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head.gender."))
    model, _ = load_release(tuned / "release")
    assert model.gender_branch == 14

    capsys.readouterr()
    assert main(["train", "--config", str(config), *common, *only, "--set", f"out_dir={tmp_path / 'x'}"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("model.train_only_gender: needs a gender branch to train (set model.gender_branch)")
    )


def test_distil_from_a_release(tmp_path, data_root, tiny_release, capsys):
    config, sets = _tiny_config(tmp_path, data_root)
    common = ["--config", str(config), *sets]
    teacher = tiny_release.parent

    student = tmp_path / "student"
    assert (
        main(
            [
                "train",
                *common,
                "--set",
                f"out_dir={student}",
                "--set",
                f"teacher={teacher / 'release'}",
                "--set",
                "distill_weight=0.8",
                "--set",
                "distill_tasks=[age]",
            ]
        )
        == 0
    )
    saved = load_config(student / "run_config.yaml")
    assert (saved.teacher, saved.distill_weight, saved.distill_tasks) == (str(teacher / "release"), 0.8, ["age"])
    assert (student / "release" / "model.safetensors").is_file()

    # A teacher trained at another image size reads the student's batches resized to its own.
    bigger = tmp_path / "bigger"
    assert (
        main(
            [
                "train",
                *common,
                "--set",
                f"out_dir={bigger}",
                "--set",
                f"teacher={teacher / 'release'}",
                "--set",
                "data.image_size=48",
            ]
        )
        == 0
    )
    assert json.loads((bigger / "release" / "config.json").read_text())["preprocessing"]["image_size"] == 48

    capsys.readouterr()
    for setting, message in (
        (["--set", "bins=[3, 7, 14, 24, 33, 43, 53]"], "predicts the age bins"),
        (["--set", "data.padding=0.5"], "preprocessing.padding is 0.25, this run"),
        (["--set", "distill_weight=2"], "distill_weight: must be >= 0, <= 1, got 2.0"),
        (["--set", "distill_tasks=[race]"], "distill_tasks must name some of ['age', 'gender'], got ['race']"),
    ):
        out = tmp_path / f"bad{len(message)}"
        assert (
            main(["train", *common, "--set", f"out_dir={out}", "--set", f"teacher={teacher / 'release'}", *setting])
            == 2
        )
        err = capsys.readouterr().err
        assert message in err and (message.startswith("distill") or str(teacher / "release") in err), err
    assert (
        main(["train", *common, "--set", f"out_dir={tmp_path / 'none'}", "--set", f"teacher={tmp_path / 'missing'}"])
        == 2
    )
    assert "missing" in capsys.readouterr().err


def test_release_recipe_mixed_sampling_calibration_and_the_gate(tmp_path, data_root, capsys, monkeypatch):
    from agecurriculum.inference import Predictor

    config, sets = _tiny_config(tmp_path, data_root)
    common = ["--config", str(config), *sets]
    parent = tmp_path / "parent"
    assert main(["train", *common, "--set", f"out_dir={parent}"]) == 0
    # The recipe's shape (examples/configs/release.yaml): warm start, every dataset mixed, draws over (age group,
    # gender) with children weighted up, temperatures fitted and shipped.
    run = tmp_path / "candidate"
    assert (
        main(
            [
                "train",
                *common,
                "--set",
                f"out_dir={run}",
                "--set",
                f"model.init_from={parent / 'release'}",
                "--set",
                "schedule=[{datasets: [mixed], bins: [0, 1, 2, 3, 4, 5, 6, 7], epochs: 2}]",
                "--set",
                "trainer.sampling=age_gender",
                "--set",
                "trainer.child_weight=2",
                "--set",
                "trainer.sampling_power=0.5",
                "--set",
                "calibrate=true",
            ]
        )
        == 0
    )
    rows = _metrics(run)
    data = prepare_data(load_config(run / "run_config.yaml"))
    assert [r["dataset"] for r in rows] == ["mixed", "mixed"]
    assert int(rows[0]["images"]) == sum(len(s) for s in data.train_sets.values())  # one draw per training face
    extra = json.loads((run / "release" / "config.json").read_text())["extra"]
    assert set(extra["temperature"]) == {"gender", "age"} and all(t > 0 for t in extra["temperature"].values())
    assert extra["calibration"]["gender"]["n"] == sum(
        int((torch.tensor(s.genders) >= 0).sum()) for s in data.val_sets.values()
    )
    assert Predictor.from_release(run / "release").release.temperature == extra["temperature"]
    # The run's report reads the release as predict does: after its temperatures (the MAE predict gives).
    assert json.loads((run / "report" / "report.json").read_text())["temperature"] == extra["temperature"]

    # The gate: a release against itself passes (every row the same), with the run's config found beside it.
    capsys.readouterr()
    assert main(["evaluate", "--compare", str(run / "release"), "--baseline", str(run / "release")]) == 0
    out = capsys.readouterr().out
    assert "**Gate: PASSED.**" in out and "| gender |" in out
    assert json.loads((run / "gate-test" / "gate.json").read_text())["passed"] is True
    assert (run / "gate-test" / "gate.md").read_text().startswith("# Release gate:")
    # ... and the command fails (status 1) when a metric fell.
    from test_gate import model

    from agecurriculum.evaluation.gate import gate_rows

    monkeypatch.setattr(
        "agecurriculum.cli.runners.train.compare_releases",
        lambda *a, **k: gate_rows(model(0.9, 0.7, seed=1), model(0.7, 0.7, seed=2)),
    )
    assert main(["evaluate", "--compare", str(run / "release"), "--out", str(tmp_path / "g")]) == 1
    assert "FAILED" in capsys.readouterr().out
    # Clear errors: not a release; no config to find the data with.
    assert main(["evaluate", "--compare", str(tmp_path)]) == 2
    assert "not a release folder" in capsys.readouterr().err
    assert main(["evaluate", "--compare", str(parent / "release" / "..")]) == 2
    assert "not a release folder" in capsys.readouterr().err


def test_interpolate_command_writes_a_refitted_release_between_two(tmp_path, data_root, capsys):
    config, sets = _tiny_config(tmp_path, data_root)
    common = ["--config", str(config), *sets]
    parent, child = tmp_path / "parent", tmp_path / "child"
    assert main(["train", *common, "--set", f"out_dir={parent}"]) == 0
    assert (
        main(
            [
                "train",
                *common,
                "--set",
                f"out_dir={child}",
                "--set",
                f"model.init_from={parent / 'release'}",
                "--set",
                "trainer.lr=0.01",
            ]
        )
        == 0
    )
    capsys.readouterr()

    def interpolate(weight: str, out: Path) -> int:
        return main(
            [
                "interpolate",
                str(parent / "release"),
                str(child / "release"),
                "--weight",
                weight,
                "--out",
                str(out),
                *common,
            ]
        )

    out = tmp_path / "half"
    assert interpolate("0.5", out) == 0
    assert "bin ages and temperatures fitted on the validation parts" in capsys.readouterr().out
    extra = json.loads((out / "config.json").read_text())["extra"]
    assert extra["interpolated"]["weight"] == 0.5 and extra["rep_ages_method"] == "fit_val"
    assert len(extra["rep_ages"]) == 8 and set(extra["temperature"]) == {"gender", "age"}
    a, b, mid = (
        safetensors.torch.load_file(p / "model.safetensors") for p in (parent / "release", child / "release", out)
    )
    key = "head.gender.weight"
    torch.testing.assert_close(mid[key], (a[key] + b[key]) / 2, rtol=0, atol=1e-6)
    assert interpolate("2", tmp_path / "bad") == 2
    assert "weight must be in [0, 1]" in capsys.readouterr().err


def test_logit_adjust_ships_both_releases_with_the_samplers_age_prior_undone_once(tmp_path, data_root, capsys):
    from agecurriculum.data.balance import age_gender_weights, age_prior_shift
    from agecurriculum.data.datasets import age_bins_of
    from agecurriculum.train.checkpoint import load_checkpoint
    from agecurriculum.train.run import add_mixed

    config, sets = _tiny_config(tmp_path, data_root)
    # A sampler with nothing to undo fails before any training, in one line.
    shuffled = tmp_path / "shuffled"
    assert (
        main(["train", "--config", str(config), *sets, "--set", "logit_adjust=1", "--set", f"out_dir={shuffled}"]) == 2
    )
    assert not (shuffled / "checkpoint.pt").exists()
    assert "there is no sampler's prior to undo" in capsys.readouterr().err
    run = tmp_path / "run"
    settings = ["schedule=[{datasets: [mixed], bins: [0, 1, 2, 3, 4, 5, 6, 7], epochs: 2}]"]
    settings += ["trainer.sampling=age_gender", "trainer.sampling_power=0.5", "trainer.child_weight=2"]
    settings += ["logit_adjust=1", f"out_dir={run}"]
    assert main(["train", "--config", str(config), *sets, *[a for s in settings for a in ("--set", s)]]) == 0
    # The offsets undo the drawn age proportions of the mixed training set: -log(drawn share / data's share).
    data = prepare_data(load_config(run / "run_config.yaml"))
    add_mixed(data)
    mixed = data.train_sets["mixed"]
    drawn = age_gender_weights(mixed.records, data.bins, power=0.5, child_weight=2)
    expected = -age_prior_shift(age_bins_of(mixed), drawn, len(data.bins))
    assert abs(expected).max() > 0.05  # the sampler did move the prior: there is something to undo
    for name, checkpoint in (("release", "best.pt"), ("release-last", "checkpoint.pt")):
        extra = json.loads((run / name / "config.json").read_text())["extra"]
        adjustment = extra["age_logit_offsets"]
        assert adjustment["offsets"] == pytest.approx(expected.tolist())
        assert adjustment["strength"] == 1.0 and adjustment["dataset"] == "mixed"
        assert adjustment["sampling"] == "age_gender (power 0.5, children x2)"
        # Each release is its own epoch's weights shifted once (not the other's shift on top).
        bias = safetensors.torch.load_file(run / name / "model.safetensors")["head.age.bias"]
        trained = load_checkpoint(run / checkpoint)["model"]["head.age.bias"]
        torch.testing.assert_close(bias, trained + torch.tensor(expected, dtype=bias.dtype))


def test_adjust_prior_command_shifts_a_release_once_and_names_what_it_cannot_undo(
    tmp_path, data_root, tiny_release, capsys
):
    from agecurriculum.config import apply_overrides
    from agecurriculum.data.datasets import age_bins_of

    config, sets = _tiny_config(tmp_path, data_root)
    common = ["--config", str(config), *sets]
    out = tmp_path / "adjusted"
    capsys.readouterr()
    # The tiny release's last training set is MORPH-II's; undo balanced draws (every present bin 1/k of them).
    assert (
        main(["adjust-prior", str(tiny_release), "--out", str(out), *common, "--set", "trainer.sampling=balanced"]) == 0
    )
    printed = capsys.readouterr().out
    assert "age-logit offsets" in printed and "undoing the draws of morph2: balanced" in printed
    extra = json.loads((out / "config.json").read_text())["extra"]
    assert extra["rep_ages_method"] == "fit_val" and set(extra["temperature"]) == {"gender", "age"}
    data = prepare_data(apply_overrides(load_config(config), [s for s in sets if s != "--set"]))
    bins = torch.tensor(age_bins_of(data.train_sets["morph2"]))
    counts = torch.bincount(bins[bins >= 0], minlength=8).double()
    present = counts > 0
    expected = torch.zeros(8, dtype=torch.double)
    expected[present] = torch.log(counts[present] / counts.sum() * int(present.sum()))  # log(p_b / (1/k))
    assert extra["age_logit_offsets"]["offsets"] == pytest.approx(expected.tolist())
    before, after = (safetensors.torch.load_file(p / "model.safetensors") for p in (tiny_release, out))
    torch.testing.assert_close(after["head.age.bias"], before["head.age.bias"] + expected.float())
    torch.testing.assert_close(after["head.gender.bias"], before["head.gender.bias"])
    # Clear one-line errors: adjusted twice; a shuffled run (nothing to undo); over the release itself.
    assert (
        main(
            ["adjust-prior", str(out), "--out", str(tmp_path / "twice"), *common, "--set", "trainer.sampling=balanced"]
        )
        == 2
    )
    assert "adjusted already (extra.age_logit_offsets)" in capsys.readouterr().err
    assert main(["adjust-prior", str(tiny_release), "--out", str(tmp_path / "shuffled"), *common]) == 2
    assert "there is no sampler's prior to undo" in capsys.readouterr().err
    assert main(["adjust-prior", str(out), "--out", str(out), *common]) == 2
    assert "a folder of its own" in capsys.readouterr().err
