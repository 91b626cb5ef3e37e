"""End to end: ``agecurriculum ablate`` on a tiny generated UTKFace + Adience + MORPH-II data root."""

import argparse
import json
import math
from pathlib import Path

import pytest
from generated_data import ADIENCE_AGES, ADIENCE_HEADER, AGES, shifted_face

from agecurriculum.cli.main import build_parser, main
from agecurriculum.config import load_config
from agecurriculum.evaluation.metrics import format_number
from agecurriculum.train.run_logs import read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny batches: see conftest

# One short stage keeps the three loss runs to a few seconds; the data section names all three datasets, so every
# run is evaluated on all three test splits.
CONFIG = """
out_dir: unused
bins: paper
schedule:
  - {datasets: [utkface], bins: [0, 1, 2, 3, 4, 5, 6, 7], epochs: 1}
data:
  datasets: [utkface, adience, morph2]
  image_size: 32
  split: [0.6, 0.2, 0.2]
  preprocess_workers: 0
model:
  backbone: efficientnet-lite0
  pretrained: false
  bottleneck_dim: 16
trainer:
  batch_size: 8
  max_steps_per_epoch: 2
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    utk, morph, adience = root / "utkface" / "UTKFace", root / "morph2" / "images", root / "adience"
    for folder in (utk, morph, adience):
        folder.mkdir(parents=True)
    for i in range(20):
        age, gender = AGES[i % len(AGES)], i % 2
        shifted_face(i, 64).save(utk / f"{age}_{gender}_0_2017011{i:05d}.jpg.chip.jpg", quality=60 + i)
    for i in range(12):
        age, sex = AGES[(i * 5) % len(AGES)] + 16, "MF"[i % 2]
        shifted_face(i, 150).save(morph / f"{i + 1:06d}_0{sex}{min(age, 77)}.JPG", quality=60 + i)
    # Adience: fold files naming each face, images under faces/<user_id>/coarse_tilt_aligned_face.<face>.<image>.
    for fold in range(2):
        lines = [ADIENCE_HEADER]
        for i in range(fold * 6, fold * 6 + 6):
            user, image = f"{1000 + i}@N0{i % 3}", f"{9000 + i}_abc_o.jpg"
            lines.append(f"{user}\t{image}\t{i + 1}\t{ADIENCE_AGES[i % 8]}\t{'mf'[i % 2]}\t0\t0\t150\t150\t0\t0\t50")
            (adience / "faces" / user).mkdir(parents=True)
            shifted_face(i + 3, 150).save(
                adience / "faces" / user / f"coarse_tilt_aligned_face.{i + 1}.{image}", quality=60 + i
            )
        (adience / f"fold_{fold}_data.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ablate")
    (folder / "tiny.yaml").write_text(CONFIG, encoding="utf-8")
    return folder


def _args(workdir: Path, data_root: Path, out: Path, *more: str) -> list[str]:
    return [
        "ablate",
        "--config",
        str(workdir / "tiny.yaml"),
        "--set",
        f"data.root={data_root}",
        "--set",
        f"data.cache={workdir / 'cache'}",
        "--set",
        f"out_dir={out}",
        *more,
    ]


@pytest.fixture(scope="module")
def loss_study(workdir, data_root) -> Path:
    out = workdir / "loss"
    assert main(_args(workdir, data_root, out, "--study", "loss")) == 0
    return out


def _cells(markdown: str, label: str) -> list[str]:
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_loss_study_tables_match_each_runs_report(loss_study):
    table = json.loads((loss_study / "ablation.json").read_text(encoding="utf-8"))
    markdown = (loss_study / "ablation.md").read_text(encoding="utf-8")
    assert list(table["studies"]) == ["loss"]
    rows = table["studies"]["loss"]["rows"]
    assert [row["variant"] for row in rows] == ["uncertainty", "sum", "fixed"]
    assert table["datasets"] == ["utkface", "adience", "morph2"]
    assert "## Loss (Table VII form)" in markdown and "Curriculum" not in markdown
    header = (
        "| Loss | utkface gender (%) | utkface age (%) | adience gender (%) | adience age (%) "
        "| morph2 gender (%) | morph2 age (%) | mean gender (%) | mean age (%) | run |"
    )
    assert header in markdown
    labels = {"uncertainty": "uncertainty (learned weights)", "sum": "plain sum", "fixed": "fixed 0.6 / 0.4"}
    for row in rows:
        run = loss_study / f"loss-{row['variant']}"
        assert Path(row["run_dir"]) == run
        report = json.loads((run / "report" / "report.json").read_text(encoding="utf-8"))
        assert [d["name"] for d in report["datasets"]] == table["datasets"]
        cells = _cells(markdown, labels[row["variant"]])
        assert cells[-1] == f"loss-{row['variant']}"
        expected_cells = []
        for d in report["datasets"]:
            for key in ("gender_accuracy", "age_accuracy"):
                value = d["metrics"][key]
                assert row["results"][d["name"]][key] == value, (row["variant"], d["name"], key)
                expected_cells.append(format_number(math.nan if value is None else value, True))
        for key in ("gender_accuracy", "age_accuracy"):
            values = [d["metrics"][key] for d in report["datasets"] if d["metrics"][key] is not None]
            assert row["mean"][key] == pytest.approx(sum(values) / len(values))
            expected_cells.append(format_number(row["mean"][key], True))
        assert cells[1:-1] == expected_cells
        # Every run is the base configuration with only its loss (and folder) changed.
        config = load_config(run / "run_config.yaml").to_dict()
        assert config["loss"] == row["variant"]
        assert {**config, "loss": None, "out_dir": None} == {**table["config"], "loss": None, "out_dir": None}


def test_a_variant_equals_a_standalone_training_run_of_its_config(loss_study, tmp_path):
    # The runs share one prepared data set; replaying the last one's run_config.yaml with `agecurriculum train`
    # (which prepares its own) must give the same epochs and the same test numbers.
    run = loss_study / "loss-fixed"
    alone = tmp_path / "alone"
    assert main(["train", "--config", str(run / "run_config.yaml"), "--set", f"out_dir={alone}"]) == 0
    rows, replayed = (read_metrics(folder / "metrics.csv") for folder in (run, alone))
    assert [(r["stage"], r["dataset"], r["images"]) for r in rows] == [
        (r["stage"], r["dataset"], r["images"]) for r in replayed
    ]
    for a, b in zip(rows, replayed, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    reports = [json.loads((folder / "report" / "report.json").read_text(encoding="utf-8")) for folder in (run, alone)]
    for a, b in zip(reports[0]["datasets"], reports[1]["datasets"], strict=True):
        assert a["name"] == b["name"] and a["age_confusion"] == b["age_confusion"]
        assert a["gender_confusion"] == b["gender_confusion"]


def test_resume_after_a_finished_ablation_trains_nothing(loss_study, workdir, data_root, capsys):
    before = {
        v: (loss_study / f"loss-{v}" / "metrics.csv").read_text(encoding="utf-8")
        for v in ("uncertainty", "sum", "fixed")
    }
    table = json.loads((loss_study / "ablation.json").read_text(encoding="utf-8"))
    capsys.readouterr()
    assert main(_args(workdir, data_root, loss_study, "--study", "loss", "--resume")) == 0
    out = capsys.readouterr().out
    for variant, text in before.items():
        assert f"loss-{variant}: trained 0 epoch(s)" in out
        assert (loss_study / f"loss-{variant}" / "metrics.csv").read_text(encoding="utf-8") == text
    assert "## Loss (Table VII form)" in out
    resumed = json.loads((loss_study / "ablation.json").read_text(encoding="utf-8"))
    for a, b in zip(table["studies"]["loss"]["rows"], resumed["studies"]["loss"]["rows"], strict=True):
        assert a["results"] == b["results"]  # the same weights re-evaluated on the same test splits


def test_curriculum_study_needs_the_presets_datasets(workdir, data_root, tmp_path, capsys):
    # Left out of data.datasets: fails on the configuration alone, before any data is prepared or run trained.
    out = tmp_path / "configured"
    assert (
        main(_args(workdir, data_root, out, "--study", "curriculum", "--set", "data.datasets=[utkface, morph2]")) == 2
    )
    err = capsys.readouterr().err
    assert "curriculum-original needs ['adience']" in err and "curriculum-list2 needs ['adience']" in err
    assert "--study loss" in err
    assert not out.exists()
    # Configured but absent from the data root: fails after the data is found, still before any training.
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("utkface", "morph2"):
        (partial / name).symlink_to(data_root / name, target_is_directory=True)
    out = tmp_path / "found"
    assert main(_args(workdir, partial, out, "--study", "curriculum")) == 2
    err = capsys.readouterr().err
    assert "curriculum-list1 needs ['adience']" in err and "['utkface', 'morph2']" in err
    assert not out.exists()
    # --study all checks the presets too, before it trains the loss study (which needs only UTKFace here).
    assert main(_args(workdir, partial, out)) == 2
    assert "needs ['adience']" in capsys.readouterr().err
    assert not out.exists()


def test_every_option_has_help(capsys):
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for action in subparsers.choices["ablate"]._actions:
        assert action.help, f"ablate {action.option_strings or action.dest} has no help text"
    with pytest.raises(SystemExit):
        main(["ablate", "--help"])
    out = capsys.readouterr().out
    assert "out_dir/loss-NAME" in out and "out_dir/curriculum-NAME" in out and "  trainer.max_steps_per_epoch" in out
    assert "out_dir/conditioning-NAME" in out and "  model.conditioning" in out


def test_conditioning_study_trains_hard_and_soft_with_everything_else_fixed(workdir, data_root, tmp_path):
    out = tmp_path / "conditioning"
    assert main(_args(workdir, data_root, out, "--study", "conditioning")) == 0
    table = json.loads((out / "ablation.json").read_text(encoding="utf-8"))
    markdown = (out / "ablation.md").read_text(encoding="utf-8")
    assert list(table["studies"]) == ["conditioning"]
    study = table["studies"]["conditioning"]
    assert [row["variant"] for row in study["rows"]] == ["hard", "soft"]
    assert study["fixed"]["loss"] == "uncertainty" and "schedule" in study["fixed"]
    assert "## Conditioning (Table VII form)" in markdown and "Loss (" not in markdown
    for label in ("hard (one-hot predicted gender)", "soft (gender softmax)"):
        assert _cells(markdown, label)[-1] == f"conditioning-{label.split()[0]}"
    for row in study["rows"]:
        run = out / f"conditioning-{row['variant']}"
        config = load_config(run / "run_config.yaml")
        assert config.model.conditioning == row["variant"] and row["epochs_trained"] == 1
        release = json.loads((run / "release" / "config.json").read_text(encoding="utf-8"))
        assert release["model"]["conditioning"] == row["variant"]


def test_adaptive_study_puts_every_variant_on_the_original_curriculums_image_budget(workdir, data_root, tmp_path):
    from agecurriculum.config import apply_overrides
    from agecurriculum.schedule import TrainingSchedule
    from agecurriculum.train.ablation import run_ablation

    out = tmp_path / "adaptive"
    config = apply_overrides(
        load_config(workdir / "tiny.yaml"),
        [f"data.root={data_root}", f"data.cache={workdir / 'cache'}", f"out_dir={out}", "adaptive.max_stages=6"],
    )
    variants = ["original", "list2", "mixed", "adaptive"]
    result = run_ablation(config, study="adaptive", adaptive_variants=variants)
    rows = {row.variant: row for row in result.study("adaptive")}
    assert list(rows) == variants
    budget = rows["original"].images  # the original curriculum trains all of it: the budget is what it plans
    for name, row in rows.items():
        run = load_config(out / f"adaptive-{name}" / "run_config.yaml")
        assert run.trainer.image_budget == budget and run.trainer.early_stopping_patience is None
        assert budget <= row.images < budget + 8, name  # cut at the batch that reaches the budget
        history = read_metrics(out / f"adaptive-{name}" / "metrics.csv")
        assert sum(r["images"] for r in history) == row.images
        assert row.val_results and set(row.val_results) <= {"utkface", "adience", "morph2"}
        assert row.val_results != row.results  # the validation split's numbers, not the test split's again
    # list 2 plans fewer images than the original: it trains 2 epochs per stage and is cut at the budget.
    assert load_config(out / "adaptive-list2" / "run_config.yaml").epochs_per_stage == 2
    assert rows["original"].schedule.endswith("(all of it: it sets the budget)")
    assert rows["list2"].schedule.endswith("cut at the budget")
    mixed = load_config(out / "adaptive-mixed" / "run_config.yaml").schedule
    assert all(
        stage == {"datasets": ["utkface", "adience", "morph2"], "bins": list(range(8)), "epochs": 1} for stage in mixed
    )
    learned = TrainingSchedule.load(out / "adaptive-adaptive" / "learned_schedule.json", strict=False)
    assert learned[-1].bins == set(range(8)) and "learned stages" in rows["adaptive"].schedule
    markdown = (out / "ablation.md").read_text(encoding="utf-8")
    assert "## Curriculum on one image budget (Table VIII form)" in markdown
    assert "Test split:" in markdown and "Validation split:" in markdown and "images seen" in markdown
    assert _cells(markdown, "adaptive (learned from the losses)")[-2] == f"{rows['adaptive'].images:,}"
    table = json.loads((out / "ablation.json").read_text(encoding="utf-8"))["studies"]["adaptive"]
    assert [r["images"] for r in table["rows"]] == [rows[v].images for v in variants]
    # An interrupted study resumes: finished runs train nothing and keep their numbers.
    again = run_ablation(config, study="adaptive", adaptive_variants=variants, resume=True)
    for row in again.study("adaptive"):
        assert row.epochs_trained == 0 and row.results == rows[row.variant].results
        assert row.images == rows[row.variant].images
