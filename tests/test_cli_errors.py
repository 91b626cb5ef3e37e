"""Every command fails cleanly: one line on stderr, exit status 2, no traceback, and nothing already done is lost.

The faults are real where the machine can make them: a path under a regular file, a folder where a file goes, a
small tmpfs that fills up, a read-only tmpfs (see fs_faults), a pipe whose reader goes away.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fs_faults import remount, tmpfs
from generated_data import AGES, shifted_face
from inference_helpers import astronaut, make_release
from PIL import Image

from agecurriculum import config as config_module
from agecurriculum.cli import describe_error
from agecurriculum.cli.main import EXIT_BROKEN_PIPE, main
from agecurriculum.config import RunConfig, check_config
from agecurriculum.devices import device_kind
from agecurriculum.train import run as run_module
from agecurriculum.train.run_logs import read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = """
bins: paper
schedule:
  - {datasets: [utkface], bins: [0, 1, 2, 3, 4, 5, 6, 7], epochs: 2}
data:
  datasets: [utkface]
  image_size: 32
  split: [0.6, 0.2, 0.2]
  preprocess_workers: 0
model:
  backbone: efficientnet-lite0
  pretrained: false
  bottleneck_dim: 16
trainer:
  batch_size: 8
  max_steps_per_epoch: 1
"""


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """astronaut.png (one face, 512 px), a.png and b.png (small crops), broken.jpg (not an image)."""
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut()).save(folder / "astronaut.png")
    shifted_face(1, 64).save(folder / "a.png")
    shifted_face(2, 64).save(folder / "b.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    utk = root / "utkface" / "UTKFace"
    utk.mkdir(parents=True)
    for i in range(16):
        shifted_face(i, 64).save(utk / f"{AGES[i % len(AGES)]}_{i % 2}_0_2017011{i:05d}.jpg.chip.jpg", quality=60 + i)
    return root


def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def one_error_line(err: str, command: str) -> str:
    """The single line a failed command printed on stderr."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"agecurriculum {command}: error: "), err
    return lines[0]


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


# --- the one-line message -----------------------------------------------------------------------------------------


def test_describe_error_names_the_file_and_is_never_empty():
    assert (
        describe_error(OSError(30, "Read-only file system", "out/model.onnx"))
        == "out/model.onnx: Read-only file system"
    )
    assert describe_error(MemoryError()) == "out of memory"
    assert describe_error(ValueError()) == "ValueError"
    assert describe_error(RuntimeError("first line\nsecond line")) == "first line"


# --- devices --------------------------------------------------------------------------------------------------------


def test_an_unknown_or_missing_device_lists_the_available_ones(capsys, release_dir, photos):
    devices = ["bogus", "cuda:7"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:
        assert main(["predict", str(photos / "a.png"), "--model", str(release_dir), "--device", device]) == 2
        line = one_error_line(capsys.readouterr().err, "predict")
        assert f"device {device!r}" in line and "cpu" in line


def test_device_kind_reads_plain_names_as_torch_does():
    # ONNX Runtime's backend asks device_kind, which reads cpu / cuda[:N] without torch: the same answer as torch's.
    for name in ("cpu", "cuda", "cuda:0", "cuda:3"):
        device = torch.device(name)
        assert device_kind(name) == (device.type, device.index)
    assert device_kind(torch.device("cuda", 2)) == ("cuda", 2)
    assert device_kind("mps") == ("mps", None)
    with pytest.raises(ValueError, match="device 'bogus': not a device name; this machine has: cpu"):
        device_kind("bogus")


def test_a_training_device_that_is_not_there_fails_before_the_data_is_prepared(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "prepare_data", _must_not_run)
    assert (
        main(
            [
                "train",
                "--config",
                str(tiny_config(tmp_path)),
                "--set",
                "trainer.device=bogus",
                "--set",
                f"out_dir={tmp_path / 'run'}",
                "--set",
                "data.root=nowhere",
            ]
        )
        == 2
    )
    assert "device 'bogus'" in one_error_line(capsys.readouterr().err, "train")


# --- numeric settings -----------------------------------------------------------------------------------------------


def _must_not_run(*args, **kwargs):
    raise AssertionError("the data was prepared before the bad setting was refused")


def _bad_values(rule: str) -> list[float]:
    # A value just outside each bound of the rule, e.g. ">= 1" -> 0; "> 0, < 1" -> 0 and 1.
    values = []
    for bound in rule.split(", "):
        op, limit = bound.split(" ")
        step = 1 if "." not in limit else 0.5
        values.append(float(limit) if op in (">", "<") else float(limit) - step if op == ">=" else float(limit) + step)
    return values


RANGE_CASES = [
    (cls, name, value)
    for cls, rules in config_module._RANGES.items()
    for name, rule in rules.items()
    for value in _bad_values(rule)
]


@pytest.mark.parametrize(
    ("section", "name", "value"), RANGE_CASES, ids=[f"{c.__name__}.{n}={v}" for c, n, v in RANGE_CASES]
)
def test_every_numeric_setting_out_of_range_is_refused(section, name, value):
    config = RunConfig()
    target = next(
        (getattr(config, f.name) for f in dataclasses.fields(config) if isinstance(getattr(config, f.name), section)),
        config,
    )
    current = getattr(target, name)
    setattr(target, name, int(value) if isinstance(current, int) and value == int(value) else value)
    with pytest.raises(ValueError, match=rf"(^|\.){name}: must be "):
        check_config(config)


def test_non_finite_numbers_and_bad_choices_are_refused():
    for bad, message in [
        (("trainer", "lr", float("nan")), "trainer.lr: must be a finite number"),
        (("model", "dropout", float("inf")), "model.dropout: must be a finite number"),
        (("trainer", "sampling", "random"), "trainer.sampling: expected one of shuffle, balanced"),
        (("data", "balance", "cut"), "data.balance: expected one of paper, sampler, none"),
        (("data", "split", [0.5, 0.5]), "data.split: fractions must be three numbers"),
        ((None, "loss", "focal"), "loss: expected one of uncertainty, sum, fixed, got 'focal'"),
    ]:
        config = RunConfig()
        section, name, value = bad
        setattr(config if section is None else getattr(config, section), name, value)
        with pytest.raises(ValueError, match=message):
            check_config(config)
    check_config(RunConfig())  # the defaults are valid


@pytest.mark.parametrize(
    ("section", "name", "value"),
    [("trainer", "batch_size", 2.5), ("trainer", "image_budget", 1000.5), ("model", "freeze_blocks", 3.0)],
)
def test_counts_set_from_python_must_be_whole_numbers(section, name, value):
    # The file and --set readers convert and refuse these themselves; a config built in Python meets check_config.
    config = RunConfig()
    setattr(getattr(config, section), name, value)
    with pytest.raises(ValueError, match=rf"^{section}\.{name}: expected a whole number, got {value!r}$"):
        check_config(config)


def test_a_zero_batch_size_fails_at_once(capsys, tmp_path, data_root, monkeypatch):
    monkeypatch.setattr(run_module, "prepare_data", _must_not_run)
    assert (
        main(
            [
                "train",
                "--config",
                str(tiny_config(tmp_path)),
                "--set",
                "trainer.batch_size=0",
                "--set",
                f"data.root={data_root}",
                "--set",
                f"out_dir={tmp_path / 'run'}",
            ]
        )
        == 2
    )
    assert one_error_line(capsys.readouterr().err, "train").endswith("trainer.batch_size: must be >= 1, got 0")


# --- stdout closed early --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("json_mode", [True, False])
def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path, release_dir, json_mode):
    crops = tmp_path / "crops"
    crops.mkdir()
    for i in range(300):  # far more output than a pipe holds, so the writer meets the closed pipe
        Image.new("RGB", (20, 20), (i % 256, 80, 160)).save(crops / f"{i:03d}.png")
    command = [sys.executable, "-m", "agecurriculum", "predict", "--aligned", "--model", str(release_dir), str(crops)]
    command += ["--json"] if json_mode else []
    script = f'"$@" 2>{tmp_path / "err.txt"} | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}'
    done = subprocess.run(["bash", "-c", script, "bash", *command], timeout=300)
    assert done.returncode == EXIT_BROKEN_PIPE
    assert (tmp_path / "err.txt").read_text() == ""


# --- predict --draw -------------------------------------------------------------------------------------------------


def test_a_drawing_that_cannot_be_written_is_that_inputs_error(capsys, tmp_path, release_dir, photos):
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file where --draw wants a folder")
    inputs = [photos / "a.png", photos / "broken.jpg", photos / "b.png"]
    assert (
        main(
            [
                "predict",
                "--json",
                "--aligned",
                "--model",
                str(release_dir),
                "--draw",
                str(blocker / "drawn"),
                *map(str, inputs),
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "3 error(s)" in err
    results = json_lines(out)
    assert [r["path"] for r in results] == list(map(str, inputs))  # every input printed, in order
    for result in (results[0], results[2]):
        assert len(result["faces"]) == 1  # the prediction itself is kept
        assert result["error"].startswith("--draw: cannot write the annotated photo: ")
        assert "a-file is a file, not a folder" in result["error"]
    assert "not an image" in results[1]["error"]


def test_drawings_on_a_full_disk_fail_one_by_one_and_every_input_is_predicted(capsys, tmp_path, release_dir, photos):
    with tmpfs(tmp_path / "small", size="32k") as small:
        inputs = [photos / "astronaut.png", photos / "a.png", photos / "b.png"]
        assert (
            main(
                ["predict", "--json", "--aligned", "--model", str(release_dir), "--draw", str(small), *map(str, inputs)]
            )
            == 0
        )
        results = json_lines(capsys.readouterr().out)
        assert [len(r["faces"]) for r in results] == [1, 1, 1]
        # The 512-px astronaut does not fit in 32 KiB; the small crops do.
        assert "No space left on device" in results[0]["error"]
        assert results[1]["error"] is None and results[2]["error"] is None
        assert sorted(p.name for p in small.iterdir()) == ["a.png", "b.png"]  # no temporary file left behind


def test_a_folder_that_holds_no_image_gets_its_json_line(capsys, tmp_path, release_dir, photos):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", "--json", "--aligned", "--model", str(release_dir), str(empty), str(photos / "a.png")]) == 0
    results = json_lines(capsys.readouterr().out)
    assert results[0] == {"path": str(empty), "faces": [], "error": "matches no image file"}
    assert results[1]["path"] == str(photos / "a.png") and len(results[1]["faces"]) == 1


# --- export, ensemble -----------------------------------------------------------------------------------------------


def test_export_to_a_folder_or_a_read_only_place_fails_in_one_line(capsys, tmp_path, release_dir):
    folder = tmp_path / "existing"
    folder.mkdir()
    assert main(["export", "--model", str(release_dir), "--out", str(folder)]) == 2
    assert one_error_line(capsys.readouterr().err, "export").endswith(f"{folder}: is a folder")
    assert folder.is_dir() and not any(folder.iterdir())
    with tmpfs(tmp_path / "ro") as ro:
        remount(ro, "ro")
        assert main(["export", "--model", str(release_dir), "--out", str(ro / "model.onnx")]) == 2
        assert "Read-only file system" in one_error_line(capsys.readouterr().err, "export")


def test_ensemble_into_a_read_only_folder_fails_in_one_line(capsys, tmp_path, release_dir):
    other = make_release(tmp_path / "other", seed=1)
    with tmpfs(tmp_path / "ro") as ro:
        remount(ro, "ro")
        assert main(["ensemble", str(release_dir), str(other), "--out", str(ro / "ens")]) == 2
        line = one_error_line(capsys.readouterr().err, "ensemble")
        assert str(ro / "ens") in line and "Read-only file system" in line


# --- train ----------------------------------------------------------------------------------------------------------


def test_train_into_a_read_only_out_dir_fails_before_any_data_work(capsys, tmp_path, data_root, monkeypatch):
    monkeypatch.setattr(run_module, "prepare_data", _must_not_run)
    with tmpfs(tmp_path / "ro") as ro:
        remount(ro, "ro")
        assert (
            main(
                [
                    "train",
                    "--config",
                    str(tiny_config(tmp_path)),
                    "--set",
                    f"data.root={data_root}",
                    "--set",
                    f"out_dir={ro / 'run'}",
                ]
            )
            == 2
        )
        line = one_error_line(capsys.readouterr().err, "train")
        assert f"{ro / 'run'}: Read-only file system" in line


@pytest.mark.parametrize("fmt", ["onnx", "ort"])
def test_export_to_a_path_it_cannot_write_fails_before_the_export(capsys, tmp_path, release_dir, monkeypatch, fmt):
    from agecurriculum.cli.runners import export as export_runner

    def exported(*args, **kwargs):
        raise AssertionError("the model was exported before the output path was refused")

    for name in ("export_onnx", "convert_to_ort", "cached_onnx"):
        monkeypatch.setattr(export_runner, name, exported)
    (tmp_path / "afile").write_bytes(b"x")
    out = tmp_path / "afile" / f"m.{fmt}"
    assert main(["export", "--model", str(release_dir), "--format", fmt, "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err, "export")
    assert line.endswith(f"{out}: {tmp_path / 'afile'} is a file, not a folder"), line
    with tmpfs(tmp_path / "ro") as ro:
        remount(ro, "ro")
        assert main(["export", "--model", str(release_dir), "--format", fmt, "--out", str(ro / f"m.{fmt}")]) == 2
        assert f"{ro / f'm.{fmt}'}: Read-only file system" in one_error_line(capsys.readouterr().err, "export")


def test_train_with_a_read_only_crop_cache_names_it(capsys, tmp_path, data_root):
    with tmpfs(tmp_path / "ro") as ro:
        (ro / "cache").mkdir()
        remount(ro, "ro")
        assert (
            main(
                [
                    "train",
                    "--config",
                    str(tiny_config(tmp_path)),
                    "--set",
                    f"data.root={data_root}",
                    "--set",
                    f"data.cache={ro / 'cache'}",
                    "--set",
                    f"out_dir={tmp_path / 'run'}",
                ]
            )
            == 2
        )
        line = one_error_line(capsys.readouterr().err, "train")
        assert str(ro / "cache") in line and "Read-only file system" in line


def test_resume_from_a_file_that_is_not_a_checkpoint_says_so_in_one_line(capsys, tmp_path, data_root):
    # Issue 30.6: `head -c 1000000 /dev/urandom > RUN/checkpoint.pt; train --resume` printed torch's six lines,
    # ending in the advice to load with weights_only=False, which runs any code the file holds.
    run = tmp_path / "run"
    run.mkdir()
    garbage = os.urandom(1_000_000)
    (run / "checkpoint.pt").write_bytes(garbage)
    sets = ["--set", f"data.root={data_root}", "--set", f"data.cache={tmp_path / 'cache'}", "--set", f"out_dir={run}"]
    assert main(["train", "--config", str(tiny_config(tmp_path)), *sets, "--resume"]) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert line.endswith(f"{run / 'checkpoint.pt'}: not a checkpoint (truncated, corrupt, or another kind of file)")
    assert "weights_only" not in line
    assert (run / "checkpoint.pt").read_bytes() == garbage  # nothing overwritten


@pytest.mark.slow
def test_train_on_a_full_disk_keeps_the_last_checkpoint_and_resumes(capsys, tmp_path, data_root):
    # Each checkpoint of the tiny model is about 41 MB, and best.pt as much: 100 MB hold the first epoch's two
    # files but not the temporary file of the second epoch's checkpoint.
    sets = ["--set", f"data.root={data_root}", "--set", f"data.cache={tmp_path / 'cache'}"]
    with tmpfs(tmp_path / "disk", size="100m") as disk:
        run = disk / "run"
        args = ["train", "--config", str(tiny_config(tmp_path)), *sets, "--set", f"out_dir={run}"]
        assert main(args) == 2
        line = one_error_line(capsys.readouterr().err, "train")
        assert "No space left on device" in line and "--resume" in line
        assert [row["global_epoch"] for row in read_metrics(run / "metrics.csv")] == [0]
        assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
        remount(disk, "size=256m")
        assert main([*args, "--resume"]) == 0
        assert [row["global_epoch"] for row in read_metrics(run / "metrics.csv")] == [0, 1]
        assert (run / "release" / "model.safetensors").is_file()


# --- the ONNX cache -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_cache_falls_back_to_a_temporary_folder_and_rebuilds_a_damaged_file(tmp_path, release_dir, photos):
    # In a child process, as a user runs it: warnings reach stderr as the command prints them.
    (tmp_path / "tmp").mkdir()
    with tmpfs(tmp_path / "home") as home:
        remount(home, "ro")
        env = {key: value for key, value in os.environ.items() if key != "AGECURRICULUM_CACHE"}
        env.update(XDG_CACHE_HOME=str(home / ".cache"), TMPDIR=str(tmp_path / "tmp"))
        command = [
            sys.executable,
            "-m",
            "agecurriculum",
            "predict",
            "--json",
            "--aligned",
            "--backend",
            "onnx",
            "--model",
            str(release_dir),
            str(photos / "a.png"),
        ]

        def predict() -> str:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
            assert len(json_lines(done.stdout)[0]["faces"]) == 1
            return done.stderr

        err = predict()
        assert "agecurriculum predict: warning: cannot write the ONNX cache" in err and "AGECURRICULUM_CACHE" in err
        [cached] = (tmp_path / "tmp").glob("agecurriculum-*/onnx/*.onnx")
        cached.write_bytes(cached.read_bytes()[:1000])  # cut short, as by a full disk or a killed copy
        assert f"warning: {cached}: cached ONNX export is damaged" in predict()
        assert cached.stat().st_size > 1000


def test_paths_in_messages_are_the_users_not_temporary_files(tmp_path):
    from agecurriculum.fileio import atomic_write

    with tmpfs(tmp_path / "disk", size="16k") as disk, pytest.raises(OSError) as caught:
        atomic_write(disk / "big.bin", os.urandom(64 * 1024))
    assert caught.value.filename == str(disk / "big.bin") and caught.value.strerror == "No space left on device"
