"""End to end: ``agecurriculum protocol adience`` on a tiny generated UTKFace + Adience data root with levi_folds."""

import argparse
import json
import statistics
from pathlib import Path

import pytest
from generated_data import ADIENCE_AGES, ADIENCE_HEADER, AGES, shifted_face

from agecurriculum.cli.main import build_parser, main
from agecurriculum.config import apply_overrides, load_config
from agecurriculum.data.splits import Split
from agecurriculum.evaluation.metrics import format_number
from agecurriculum.train.run import prepare_data
from agecurriculum.train.run_logs import read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny batches: see conftest

# One short stage over both datasets: the protocol needs a schedule that trains Adience.
CONFIG = """
out_dir: unused
bins: paper
schedule:
  - {datasets: [utkface, adience], bins: [0, 1, 2, 3, 4, 5, 6, 7], epochs: 1}
data:
  datasets: [utkface, adience]
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
# Six Flickr users of two faces each (fold files 0-2 hold two users each); face 1 has gender "u", so the gender
# lists leave it out; user 1's files use the landmark_aligned_face naming, the others coarse_tilt_aligned_face.
USERS = [f"{1000 + u}@N0{u % 3}" for u in range(6)]
ABSENT = "4242@N04"  # named by fold 2's test lists, with no images in the data


def _faces(user: int) -> list[int]:
    return [2 * user, 2 * user + 1]


def _entry(face: int, task: str, user: str | None = None) -> str:
    user = user or USERS[face // 2]
    label = face % 8 if task == "age" else face % 2  # age: the group of ADIENCE_AGES[face % 8]; gender: "mf"
    return f"{user}/landmark_aligned_face.{face + 1}.{9000 + face}_abc_o.jpg {label}"


def _lists(test: list[int], val: list[int], train: list[int], task: str) -> dict[str, list[str]]:
    faces = {"test": test, "val": val, "train": train}
    return {part: [_entry(f, task) for f in fs if task == "age" or f != 1] for part, fs in faces.items()}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    utk, adience = root / "utkface" / "UTKFace", root / "adience"
    utk.mkdir(parents=True)
    for i in range(20):
        age, gender = AGES[i % len(AGES)], i % 2
        shifted_face(i, 64).save(utk / f"{age}_{gender}_0_2017011{i:05d}.jpg.chip.jpg", quality=60 + i)
    for fold in range(3):
        lines = [ADIENCE_HEADER]
        for user in (2 * fold, 2 * fold + 1):
            (adience / "faces" / USERS[user]).mkdir(parents=True)
            prefix = "landmark_aligned_face" if user == 1 else "coarse_tilt_aligned_face"
            for face in _faces(user):
                image, sex = f"{9000 + face}_abc_o.jpg", "u" if face == 1 else "mf"[face % 2]
                lines.append(
                    f"{USERS[user]}\t{image}\t{face + 1}\t{ADIENCE_AGES[face % 8]}\t{sex}\t0\t0\t150\t150\t0\t0\t50"
                )
                shifted_face(face + 3, 150).save(
                    adience / "faces" / USERS[user] / f"{prefix}.{face + 1}.{image}", quality=60 + face
                )
        (adience / f"fold_{fold}_data.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Fold 0: test users 0-1 (plus one absent face), val user 2, train users 3-5 (one line twice, as in the real
    # lists). Fold 1: test users 2-3, the same faces in both test lists. Fold 2: only absent test faces.
    rounds = {
        0: {
            task: _lists(_faces(0) + _faces(1), _faces(2), _faces(3) + _faces(4) + _faces(5) + [6], task)
            for task in ("age", "gender")
        },
        1: {
            task: _lists(_faces(2) + _faces(3), _faces(4), _faces(0) + _faces(1) + _faces(5), task)
            for task in ("age", "gender")
        },
        2: {
            task: {
                **_lists([], _faces(0), _faces(1) + _faces(2) + _faces(3), task),
                "test": [_entry(20, task, ABSENT), _entry(21, task, ABSENT)],
            }
            for task in ("age", "gender")
        },
    }
    for task in ("age", "gender"):
        rounds[0][task]["test"].append(_entry(22, task, ABSENT))
    for k, lists in rounds.items():
        folder = adience / "levi_folds" / f"test_fold_is_{k}"
        folder.mkdir(parents=True)
        for task, parts in lists.items():
            for part, entries in parts.items():
                (folder / f"{task}_{part}.txt").write_text("".join(f"{e}\n" for e in entries), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("protocol")
    (folder / "tiny.yaml").write_text(CONFIG, encoding="utf-8")
    return folder


def _args(workdir: Path, data_root: Path, out: Path, *more: str) -> list[str]:
    return [
        "protocol",
        "adience",
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
def protocol_run(workdir, data_root) -> tuple[Path, str]:
    out = workdir / "folds"
    capture = pytest.MonkeyPatch()  # module scope has no capsys: read what the command printed from a file
    printed = workdir / "printed.txt"
    with printed.open("w", encoding="utf-8") as stream:
        capture.setattr("sys.stdout", stream)
        try:
            assert main(_args(workdir, data_root, out, "--folds", "0", "1", "2")) == 0
        finally:
            capture.undo()
    return out, printed.read_text(encoding="utf-8")


def _row(markdown: str, label: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {label} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_one_run_per_fold_with_the_folds_lists(protocol_run):
    out, printed = protocol_run
    table = json.loads((out / "adience_5fold.json").read_text(encoding="utf-8"))
    folds = {f["fold"]: f for f in table["folds"]}
    assert list(folds) == [0, 1, 2] and table["scored_folds"] == [0, 1]
    for k in (0, 1):
        run = out / f"fold-{k}"
        assert (run / "release" / "model.safetensors").is_file() and read_metrics(run / "metrics.csv")
        assert json.loads((run / "adience_fold.json").read_text(encoding="utf-8"))["metrics"] == folds[k]["metrics"]
        assert f"fold {k}: " in printed and "trained 2 epoch(s)" in printed
    # Fold 0: the absent test face is counted, not scored; the gender-unknown face is only in the age lists; the
    # duplicated train line stays in the list.
    coverage = folds[0]["coverage"]
    assert coverage["age_test"] == {"entries": 5, "found": 4, "used": 4}
    assert coverage["gender_test"] == {"entries": 4, "found": 3, "used": 3}
    assert coverage["age_train"] == {"entries": 7, "found": 7, "used": 7}
    assert (folds[0]["metrics"]["n_age"], folds[0]["metrics"]["n_gender"]) == (4, 3)
    assert "age_test 4 of 5" in folds[0]["note"] and folds[1]["note"] == ""
    # The run trained and tested Adience on the fold's lists, not on the hash split: its test split is the four
    # faces of users 0-1, and with the same faces in both test lists (fold 1) the fold's score is the run's own
    # native-group protocol on its test split.
    report = json.loads((out / "fold-0" / "report" / "report.json").read_text(encoding="utf-8"))
    assert next(d for d in report["datasets"] if d["name"] == "adience")["metrics"]["n"] == 4
    report = json.loads((out / "fold-1" / "report" / "report.json").read_text(encoding="utf-8"))
    own = report["protocols"]["Adience, native 8 groups (test split)"]
    ours = folds[1]["metrics"]
    assert (ours["age_accuracy"], ours["one_off"], ours["n_age"]) == (own["accuracy"], own["one_off"], own["n"])
    assert ours["gender_accuracy"] == own["gender_accuracy"]


def test_table_rows_and_mean_std_equal_the_per_fold_json(protocol_run):
    out, printed = protocol_run
    table = json.loads((out / "adience_5fold.json").read_text(encoding="utf-8"))
    markdown = (out / "adience_5fold.md").read_text(encoding="utf-8")
    assert markdown in printed
    assert "| Fold | age accuracy (%) | 1-off (%) | gender accuracy (%) | n (age) | n (gender) | run |" in markdown
    scored = [f for f in table["folds"] if f["scored"]]
    keys = ("age_accuracy", "one_off", "gender_accuracy")
    for fold in scored:
        m = fold["metrics"]
        assert _row(markdown, str(fold["fold"])) == [
            str(fold["fold"]),
            *(format_number(m[k], True) for k in keys),
            str(m["n_age"]),
            str(m["n_gender"]),
            f"fold-{fold['fold']}",
        ]
    mean_row = _row(markdown, "mean ± std (2 folds)")
    for key, cell in zip(keys, mean_row[1:4], strict=True):
        values = [f["metrics"][key] for f in scored]
        mean, std = statistics.mean(values), statistics.stdev(values)
        assert table["summary"][key]["mean"] == pytest.approx(mean)
        assert table["summary"][key]["std"] == pytest.approx(std)
        assert cell == f"{format_number(mean, True)} ± {format_number(std, True)}"
    assert mean_row[4:6] == [
        str(sum(f["metrics"]["n_age"] for f in scored)),
        str(sum(f["metrics"]["n_gender"] for f in scored)),
    ]


def test_fold_without_test_images_gets_a_note_and_no_training(protocol_run):
    out, printed = protocol_run
    fold = json.loads((out / "adience_5fold.json").read_text(encoding="utf-8"))["folds"][2]
    assert not fold["scored"] and fold["metrics"] == {}
    assert fold["coverage"]["age_test"] == {"entries": 2, "found": 0, "used": 0}
    assert "none of the 2 age_test and 2 gender_test entries" in fold["note"] and "not trained" in fold["note"]
    assert not (out / "fold-2").exists()
    markdown = (out / "adience_5fold.md").read_text(encoding="utf-8")
    assert _row(markdown, "2") == ["2", "–", "–", "–", "0", "0", "not scored (see notes)"]
    assert f"- fold 2: {fold['note']}" in markdown
    found, entries = (sum(c[key] for c in fold["coverage"].values()) for key in ("found", "entries"))
    assert (found, entries) == (15, 19)  # its train and val faces are there
    assert f"fold 2: {found} of {entries} list entries found in the data; not scored: none of the" in printed


def test_resume_trains_nothing(protocol_run, workdir, data_root, capsys):
    out, _ = protocol_run
    runs = [out / f"fold-{k}" for k in (0, 1)]
    before = {run: ((run / "metrics.csv").read_bytes(), (run / "checkpoint.pt").stat().st_mtime_ns) for run in runs}
    table = json.loads((out / "adience_5fold.json").read_text(encoding="utf-8"))
    assert main(_args(workdir, data_root, out, "--folds", "0", "1", "2", "--resume")) == 0
    printed = capsys.readouterr().out
    assert printed.count("scored before (adience_fold.json), not trained again") == 2
    for run, (metrics, mtime) in before.items():
        assert (run / "metrics.csv").read_bytes() == metrics and (run / "checkpoint.pt").stat().st_mtime_ns == mtime
    resumed = json.loads((out / "adience_5fold.json").read_text(encoding="utf-8"))
    assert resumed["summary"] == table["summary"]
    for a, b in zip(table["folds"], resumed["folds"], strict=True):
        assert (a["metrics"], a["coverage"], a["note"]) == (b["metrics"], b["coverage"], b["note"])
    # Another configuration does not pass for the finished folds.
    assert main(_args(workdir, data_root, out, "--folds", "0", "--resume", "--set", "trainer.lr=0.5")) == 2
    assert "differs in: trainer.lr" in capsys.readouterr().err


def test_the_configuration_must_train_adience(workdir, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(workdir, data_root, out, "--set", "data.datasets=[utkface]")) == 2
    assert "data.datasets: the Adience protocol trains and scores on adience" in capsys.readouterr().err
    one_stage = "schedule=[{datasets: [utkface], bins: [0, 1, 2, 3, 4, 5, 6, 7], epochs: 1}]"
    assert main(_args(workdir, data_root, out, "--set", one_stage)) == 2
    assert "a stage must use adience" in capsys.readouterr().err
    assert main(_args(workdir, data_root, out, "--folds", "3")) == 2  # the fixture has no test_fold_is_3
    assert "test_fold_is_3: missing" in capsys.readouterr().err
    assert not out.exists()


def test_every_option_has_help(capsys):
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    protocol = subparsers.choices["protocol"]
    adience = next(a for a in protocol._actions if isinstance(a, argparse._SubParsersAction)).choices["adience"]
    for parser in (protocol, adience):
        for action in parser._actions:
            assert action.help, f"protocol {action.option_strings or action.dest} has no help text"
    with pytest.raises(SystemExit):
        main(["protocol", "adience", "--help"])
    out = capsys.readouterr().out
    assert "out_dir/fold-K" in out and "--folds" in out and "  trainer.max_steps_per_epoch" in out


def test_splits_override_must_name_a_prepared_dataset(workdir, data_root):
    config = apply_overrides(load_config(workdir / "tiny.yaml"), [f"data.root={data_root}"])
    with pytest.raises(ValueError, match=r"splits_override: dataset\(s\) \['morph2'\] not found under"):
        prepare_data(config, splits_override={"morph2": Split([], [], [])})
