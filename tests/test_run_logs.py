import csv
import json
import math
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from PIL import Image

import agecurriculum
from agecurriculum.data import TensorFaceDataset
from agecurriculum.schedule import MultiDatasetSample, TrainingSchedule
from agecurriculum.train import (
    CurriculumTrainer,
    EpochRecord,
    EvalResult,
    TrainerConfig,
)
from agecurriculum.train.run_logs import (
    METRICS_COLUMNS,
    CSVLogger,
    PlotCallback,
    TensorBoardLogger,
    default_loggers,
    load_resolved_config,
    plot_task_weights,
    plot_training_curves,
    read_metrics,
    save_resolved_config,
)

# A three-stage curriculum: (stage, dataset, epochs); the first dataset has no validation set.
CURRICULUM = [
    (0, "utkface", 3),
    (1, "utkface", 2),
    (1, "adience", 3),
    (2, "utkface", 2),
    (2, "adience", 2),
    (2, "morph2", 3),
]


def records(start=0, stop=None):
    """Synthetic epochs of CURRICULUM with plausible, changing numbers."""
    out, g = [], 0
    for stage, dataset, epochs in CURRICULUM:
        for epoch in range(epochs):
            val = (
                None
                if dataset == "utkface" and stage == 0
                else EvalResult(
                    loss=2.5 - 0.1 * g, age_accuracy=0.3 + 0.02 * g, gender_accuracy=0.7 + 0.01 * g, images=200
                )
            )
            out.append(
                EpochRecord(
                    stage=stage,
                    dataset=dataset,
                    epoch=epoch,
                    global_epoch=g,
                    train_loss=3.0 - 0.12 * g,
                    train_age_loss=2.0 - 0.08 * g,
                    train_gender_loss=0.7 - 0.02 * g,
                    images=1000 + g,
                    seconds=1.5,
                    lr=1e-3 if g < 8 else 1e-4,
                    task_weights={"age": math.exp(-0.05 * g), "gender": math.exp(0.04 * g)},
                    val=val,
                )
            )
            g += 1
    return out[start:stop]


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_writes_header_once_and_a_row_per_epoch(tmp_path):
    path = tmp_path / "run" / "metrics.csv"
    logger = CSVLogger(path)
    assert csv_rows(path) == [list(METRICS_COLUMNS)]  # the header is there before the first epoch ends
    for r in records(0, 4):
        logger(r)
        # flushed per row: the file is complete after every call, as a killed run would leave it
        assert len(csv_rows(path)) == r.global_epoch + 2
    lines = csv_rows(path)
    assert lines[0] == list(METRICS_COLUMNS) and lines[0].count("global_epoch") == 1
    assert {"weight_age", "weight_gender", "val_loss", "val_age_accuracy", "val_gender_accuracy"} <= set(lines[0])
    first = dict(zip(lines[0], lines[1]))
    assert first["dataset"] == "utkface" and first["val_loss"] == ""  # no validation set: empty cells
    rows = read_metrics(path)
    assert [r["global_epoch"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["val_loss"] is None and rows[3]["val_images"] == 200
    assert rows[3]["train_loss"] == records()[3].train_loss  # floats survive exactly
    assert rows[2]["weight_gender"] == pytest.approx(math.exp(0.08))


def test_csv_logger_appends_after_resume_and_reader_keeps_the_newest_timeline(tmp_path):
    path = tmp_path / "metrics.csv"
    first_run = CSVLogger(path)
    for r in records(0, 6):
        first_run(r)
    # Killed after epoch 5; the last checkpoint was after epoch 3, so the resumed run repeats epochs 4 and 5.
    resumed = CSVLogger(path)
    for r in records(4, 9):
        resumed(r)
    lines = csv_rows(path)
    assert lines.count(list(METRICS_COLUMNS)) == 1 and len(lines) == 1 + 6 + 5  # append-only, one header
    assert [r["global_epoch"] for r in read_metrics(path)] == list(range(9))


def test_csv_logger_rejects_a_file_with_another_header(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\n0,1.5\n")
    with pytest.raises(ValueError, match="metrics.csv.*header"):
        CSVLogger(path)
    assert path.read_text() == "epoch,loss\n0,1.5\n"  # the other log is left alone


def test_csv_logger_writes_the_header_into_an_empty_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.touch()  # a run killed between creating the file and writing the header
    CSVLogger(path)(records(0, 1)[0])
    assert len(read_metrics(path)) == 1


def test_csv_logger_names_unknown_task_weights(tmp_path):
    record = records(0, 1)[0]
    record.task_weights = {"age": 1.0, "gender": 1.0, "race": 1.0}
    with pytest.raises(ValueError, match="weight_race"):
        CSVLogger(tmp_path / "metrics.csv")(record)


def test_read_metrics_names_a_file_that_is_not_a_metrics_log(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv.*global_epoch"):
        read_metrics(path)


def test_metrics_logs_with_a_huge_field_are_named_with_their_line(tmp_path):
    # Issue 30.3: a field over csv.field_size_limit() raised _csv.Error, which the command line showed as a traceback.
    path = tmp_path / "metrics.csv"
    path.write_text(",".join(METRICS_COLUMNS) + "\n" + "x" * 200_000 + "\n")
    with pytest.raises(ValueError, match=r"metrics.csv, line 2: field larger than field limit"):
        read_metrics(path)
    path.write_text("x" * 200_000 + "\n")
    with pytest.raises(ValueError, match=r"metrics.csv, line 1: not a metrics log: field larger than field limit"):
        CSVLogger(path)
    assert path.read_text() == "x" * 200_000 + "\n"  # left alone


@dataclass
class DataConfig:
    root: Path = Path("/data/utkface")  # a Path inside a dataclass
    size: int = 224
    datasets: tuple = ("utkface", "adience")
    extra: dict = field(default_factory=lambda: {"cache": Path("/tmp/cache"), "bins": {3, 1, 2}})


def test_resolved_config_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["agecurriculum", "train", "--seed", "7"])
    schedule = TrainingSchedule([MultiDatasetSample(["a"], {0, 1, 2, 3, 4, 5, 6, 7}, epochs=2)], num_bins=8)
    trainer = TrainerConfig(seed=7, lr=3e-4, early_stopping_patience=None)
    path = save_resolved_config(
        {"trainer": trainer, "data": DataConfig(), "schedule": schedule, "out": tmp_path / "run"},
        tmp_path / "run" / "config.json",
    )
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temporary file left behind
    doc = load_resolved_config(path)
    assert doc["config"]["trainer"] == {
        **TrainerConfig().__dict__,
        "seed": 7,
        "lr": 3e-4,
        "early_stopping_patience": None,
    }
    assert TrainerConfig(**doc["config"]["trainer"]) == trainer  # the dataclass can be rebuilt from the file
    assert doc["config"]["data"] == {
        "root": "/data/utkface",
        "size": 224,
        "datasets": ["utkface", "adience"],
        "extra": {"cache": "/tmp/cache", "bins": [1, 2, 3]},
    }
    assert TrainingSchedule.from_dicts(doc["config"]["schedule"], num_bins=8) == schedule
    assert doc["config"]["out"] == str(tmp_path / "run")
    assert doc["seed"] == 7  # taken from the TrainerConfig
    assert doc["command"] == ["agecurriculum", "train", "--seed", "7"]
    assert doc["agecurriculum_version"] == agecurriculum.__version__
    assert doc["torch_version"] and doc["created"].endswith("+00:00")
    assert (
        save_resolved_config({"x": 1}, tmp_path / "c.json", seed=3)
        and load_resolved_config(tmp_path / "c.json")["seed"] == 3
    )


def test_resolved_config_names_a_field_without_json_form(tmp_path):
    with pytest.raises(TypeError, match="data.extra.handle"):
        save_resolved_config({"data": {"extra": {"handle": object()}}}, tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


def test_load_resolved_config_names_a_bad_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="config.json.*invalid JSON"):
        load_resolved_config(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="config.json"):
        load_resolved_config(bad)


def opens_as_png(path, min_width, min_height):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width and image.height >= min_height
        colours = image.convert("L").getextrema()
    assert colours[0] < 100 < colours[1]  # something is drawn, not a blank canvas


def logged_run(tmp_path, stop=None):
    path = tmp_path / "metrics.csv"
    logger = CSVLogger(path)
    for r in records(0, stop):
        logger(r)
    return path


def test_training_curves_and_task_weights_are_pngs(tmp_path):
    csv_path = logged_run(tmp_path)
    curves = plot_training_curves(csv_path, tmp_path / "plots" / "curves.png")
    weights = plot_task_weights(csv_path, tmp_path / "plots" / "weights.png")
    opens_as_png(curves, 800, 800)
    opens_as_png(weights, 800, 350)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["curves.png", "weights.png"]


def test_plots_refuse_an_empty_log(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    CSVLogger(csv_path)
    with pytest.raises(ValueError, match="no epochs"):
        plot_training_curves(csv_path, tmp_path / "curves.png")


def test_plot_callback_refreshes_both_pngs_each_epoch(tmp_path):
    logger, plots = CSVLogger(tmp_path / "metrics.csv"), PlotCallback(tmp_path, min_interval=0)
    for r in records(0, 2):
        logger(r)
        plots(r)
        for name in ("training_curves.png", "task_weights.png"):
            opens_as_png(tmp_path / name, 400, 300)
    before = (tmp_path / "training_curves.png").read_bytes()
    logger(records(2, 3)[0])
    plots(records(2, 3)[0])
    assert (tmp_path / "training_curves.png").read_bytes() != before


def test_plot_callback_spaces_out_short_epochs_and_draws_the_rest_when_the_fit_ends(tmp_path):
    now = [0.0]
    logger, plots = CSVLogger(tmp_path / "metrics.csv"), PlotCallback(tmp_path, min_interval=30, clock=lambda: now[0])
    curves = tmp_path / "training_curves.png"
    first, second, third = records(0, 3)
    logger(first)
    plots(first)  # the first epoch is always drawn
    drawn = curves.read_bytes()
    now[0] = 10.0
    logger(second)
    plots(second)  # 10 s after the last drawing: left for later
    assert curves.read_bytes() == drawn
    plots.on_fit_end()  # the fit ends: the skipped epoch is drawn
    assert curves.read_bytes() != drawn
    drawn = curves.read_bytes()
    plots.on_fit_end()  # nothing new: nothing redrawn
    assert curves.read_bytes() == drawn
    now[0] = 45.0
    logger(third)
    plots(third)  # 35 s after the last drawing: drawn at once
    assert curves.read_bytes() != drawn


def test_plot_callback_without_csv_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="CSVLogger"):
        PlotCallback(tmp_path)(records(0, 1)[0])


@pytest.fixture
def no_tensorboard(monkeypatch):
    # None in sys.modules makes the import raise ImportError, as when the package is not installed.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)


@pytest.fixture
def fake_tensorboard(monkeypatch):
    class FakeWriter:
        instances = []

        def __init__(self, log_dir):
            self.log_dir, self.scalars, self.flushes, self.closed = log_dir, [], 0, False
            FakeWriter.instances.append(self)

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

        def flush(self):
            self.flushes += 1

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    return FakeWriter


def test_tensorboard_logger_without_the_package_says_how_to_install(tmp_path, no_tensorboard):
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorBoardLogger(tmp_path / "tb")


def test_default_loggers_use_tensorboard_only_when_installed(tmp_path, no_tensorboard):
    loggers = default_loggers(tmp_path)
    assert [type(x) for x in loggers] == [CSVLogger] and loggers[0].path == tmp_path / "metrics.csv"
    with pytest.raises(ImportError, match="pip install tensorboard"):
        default_loggers(tmp_path, tensorboard=True)
    with pytest.raises(ValueError, match="tensorboard"):
        default_loggers(tmp_path, tensorboard="yes")


def test_tensorboard_logger_writes_grouped_scalars_per_epoch(tmp_path, fake_tensorboard):
    loggers = default_loggers(tmp_path)
    assert [type(x) for x in loggers] == [CSVLogger, TensorBoardLogger]
    assert [type(x) for x in default_loggers(tmp_path / "b", tensorboard=False)] == [CSVLogger]
    tb = loggers[1]
    writer = tb.writer
    assert writer.log_dir == str(tmp_path / "tensorboard")
    no_val, with_val = records(0, 1)[0], records(5, 6)[0]
    tb(no_val)
    tb(with_val)
    assert writer.flushes == 2  # every epoch reaches the event file
    first = {tag: value for tag, value, step in writer.scalars if step == 0}
    assert first["train/loss"] == no_val.train_loss and first["epoch/lr"] == 1e-3
    assert first["task_weight/age"] == 1.0 and "val/loss" not in first  # no validation: no point
    later = {tag: value for tag, value, step in writer.scalars if step == 5}
    assert later["val/age_accuracy"] == with_val.val.age_accuracy and later["epoch/stage"] == 1
    assert not any("dataset" in tag or "global_epoch" in tag for tag, _, _ in writer.scalars)
    tb.close()
    assert writer.closed


class TinyDual(torch.nn.Module):
    """Two heads on one linear layer: a real model for the trainer, trained in milliseconds."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 8))
        self.age, self.gender = torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)

    def forward(self, x):
        h = self.features(x)
        return self.age(h), self.gender(h)


def random_faces(n, seed):
    g = torch.Generator().manual_seed(seed)
    return TensorFaceDataset(
        torch.randn(n, 3, 4, 4, generator=g),
        torch.randint(0, 8, (n,), generator=g),
        torch.randint(0, 2, (n,), generator=g),
    )


def test_loggers_as_trainer_callbacks(tmp_path, no_tensorboard):
    torch.manual_seed(0)
    schedule = TrainingSchedule(
        [MultiDatasetSample(["a"], {2, 3, 4}, epochs=1), MultiDatasetSample(["a", "b"], range(8), epochs=2)], num_bins=8
    )
    trainer = CurriculumTrainer(
        TinyDual(),
        schedule,
        {"a": random_faces(32, 1), "b": random_faces(32, 2)},
        {"b": random_faces(16, 3)},
        config=TrainerConfig(batch_size=16, early_stopping_patience=None),
        callbacks=[*default_loggers(tmp_path), PlotCallback(tmp_path)],
    )
    history = trainer.fit()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert (
        [(r["stage"], r["dataset"], r["epoch"]) for r in rows]
        == [(r.stage, r.dataset, r.epoch) for r in history]
        == [(0, "a", 0), (1, "a", 0), (1, "a", 1), (1, "b", 0), (1, "b", 1)]
    )
    assert rows[0]["val_loss"] is None and rows[-1]["val_loss"] == history[-1].val.loss
    assert rows[-1]["weight_age"] == history[-1].task_weights["age"] != 1.0  # the learned weight moved
    opens_as_png(tmp_path / "training_curves.png", 400, 300)
    opens_as_png(tmp_path / "task_weights.png", 400, 300)
    # Epochs this short are not all drawn as they end, but the fit's end draws every epoch the CSV holds.
    again = plot_training_curves(tmp_path / "metrics.csv", tmp_path / "again.png")
    assert (tmp_path / "training_curves.png").read_bytes() == again.read_bytes()
