"""FairFace without UTKFace, Adience or MORPH-II: ``data report`` counts it in the paper's bins, ``bins`` says why its
decade labels cannot fit bins, and :func:`age_distribution` places the decades that lie inside one group."""

import json
from pathlib import Path

import pytest
from generated_data import shifted_face

from agecurriculum.bins import ADIENCE_GROUPS, PAPER_BINS
from agecurriculum.cli.main import main
from agecurriculum.data.records import FaceRecord
from agecurriculum.data.sources import DATASETS, discover, load_fairface
from agecurriculum.data.splits import split_records
from agecurriculum.data.summary import age_distribution

# Every FairFace age group once, alternating genders, plus a second 0-2 and a second "more than 70".
FAIRFACE_ROWS = [
    ("0-2", "Male"),
    ("3-9", "Female"),
    ("10-19", "Male"),
    ("20-29", "Female"),
    ("30-39", "Male"),
    ("40-49", "Female"),
    ("50-59", "Male"),
    ("60-69", "Female"),
    ("more than 70", "Male"),
    ("0-2", "Female"),
    ("more than 70", "Female"),
]
WHY = "fairface: its age labels are decades, not exact ages, so they cannot fix bin boundaries"
ASK = "give at least one of --utkface, --adience, --morph2, or --ages FILE"


@pytest.fixture
def fairface_only_root(tmp_path: Path) -> Path:
    """A data root holding only ``fairface/``: its validation table and one generated JPEG per row."""
    folder = tmp_path / "root" / "fairface"
    (folder / "val").mkdir(parents=True)
    lines = ["file,age,gender,race,service_test"]
    for i, (age, gender) in enumerate(FAIRFACE_ROWS):
        shifted_face(i, 32).save(folder / "val" / f"{i}.jpg")
        lines.append(f"val/{i}.jpg,{age},{gender},East Asian,True")
    (folder / "fairface_label_val.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder.parent


def one_line_error(captured) -> str:
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    return captured.err


def test_data_report_with_the_fairface_flag_counts_in_the_paper_bins(fairface_only_root, tmp_path, capsys):
    folder = fairface_only_root / "fairface"
    assert main(["data", "report", "--fairface", str(folder), "--out", str(tmp_path / "r"), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["bins_source"] == "paper" and report["bins_fitted_on"] == []
    assert report["bins"]["boundaries"] == list(PAPER_BINS.boundaries)
    assert report["bins"]["sizes"] is None
    fairface = report["datasets"]["fairface"]
    assert fairface["cleaning"]["kept"] == len(FAIRFACE_ROWS)
    totals = {label: row["male"] + row["female"] for label, row in fairface["counts"].items()}
    # 0-2 fits the bin 0-2, 50-59 the bin 46-59, 60-69 and 70+ the bin 60-100; the other decades straddle two bins.
    assert totals == {"0-2": 2, "3-6": 0, "7-14": 0, "15-23": 0, "24-34": 0, "35-45": 0, "46-59": 1, "60-100": 3}
    assert fairface["counts"]["60-100"] == {"male": 1, "female": 2, "unknown": 0}
    assert fairface["straddling_bins"] == 5
    # One line on stderr says why the bins are the paper's, and does not ask for the flag that was given.
    assert captured.err.count("\n") == 1
    assert "note: the counts are in the paper's bins, since none of utkface, adience, morph2" in captured.err
    assert WHY in captured.err and "--fairface" not in captured.err
    assert all(Path(png).is_file() for png in report["plots"])


def test_data_report_with_a_root_holding_only_fairface(fairface_only_root, tmp_path, capsys):
    assert main(["data", "report", "--data", str(fairface_only_root), "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    paper = ", ".join(PAPER_BINS.labels())
    assert captured.out.startswith(f"unified age bins: the paper's (no labels to fit them on): {paper}\n")
    assert f"fairface: {len(FAIRFACE_ROWS)} items, {len(FAIRFACE_ROWS)} kept" in captured.out
    assert "5 images have an age range that straddles bins" in captured.out
    assert "no dataset found" not in captured.err and "paper's bins" in captured.err


@pytest.mark.parametrize(
    "sources",
    [["--data", "{root}"], ["--fairface", "{root}/fairface"], ["--data", "{root}", "--fairface", "{root}/fairface"]],
)
def test_bins_with_only_fairface_says_why(fairface_only_root, capsys, sources):
    argv = ["bins", *(s.format(root=fairface_only_root) for s in sources)]
    assert main(argv) == 2
    err = one_line_error(capsys.readouterr())
    assert err.startswith(f"agecurriculum bins: error: {WHY}: a decade that straddles the constraint groups")
    assert err.rstrip().endswith(ASK)
    assert "no dataset found" not in err and "--fairface" not in err


def test_bins_notes_a_fairface_flag_beside_a_histogram_dataset(fairface_only_root, capsys):
    morph = fairface_only_root / "morph2" / "images"
    morph.mkdir(parents=True)
    for i, name in enumerate(["000001_0M35.JPG", "000001_1M37.JPG", "000002_0F48.JPG"]):
        shifted_face(i, 32).save(morph / name, format="JPEG")
    assert (
        main(["bins", "--data", str(fairface_only_root), "--fairface", str(fairface_only_root / "fairface"), "--json"])
        == 0
    )
    captured = capsys.readouterr()
    assert sum(json.loads(captured.out)["sizes"]) == 3  # MORPH-II's three ages; no FairFace image is counted
    assert captured.err.startswith("agecurriculum bins: note: --fairface is not used: its age labels are decades")
    assert main(["bins", "--data", str(fairface_only_root), "--json"]) == 0  # found, not asked for: no note
    captured = capsys.readouterr()
    assert sum(json.loads(captured.out)["sizes"]) == 3 and captured.err == ""


def test_bins_checks_the_fairface_folder_it_is_given(tmp_path, capsys):
    assert main(["bins", "--fairface", str(tmp_path)]) == 2
    assert f"not a fairface folder; expected {DATASETS['fairface'].layout}" in one_line_error(capsys.readouterr())


@pytest.mark.parametrize(
    "argv", [["bins", "--data", "{root}"], ["data", "report", "--data", "{root}", "--out", "{root}/r"]]
)
def test_an_empty_root_still_lists_every_layout(tmp_path, capsys, argv):
    assert main([arg.format(root=tmp_path) for arg in argv]) == 2
    err = capsys.readouterr().err  # the layouts take one line each
    assert f"{tmp_path}: no dataset found; expected at least one of:" in err
    for layout in ["utkface/: UTKFace/", "adience/: fold_", "morph2/: images/", "fairface/: fairface_label_val.csv"]:
        assert layout in err


def test_age_distribution_counts_decades_inside_one_group(fairface_only_root):
    records = load_fairface(fairface_only_root / "fairface").records
    distribution = age_distribution(records, ADIENCE_GROUPS)
    # 0-2 is the group 0-2; 60-69 and 70-100 lie inside 60-100; 3-9 ... 50-59 straddle or fill gaps.
    assert distribution.group_counts == {(0, 2): 2, (60, 100): 3}
    assert distribution.unplaced == 6
    assert distribution.histogram.sum() == 0


@pytest.mark.parametrize(
    ("age_range", "group"),
    [
        ((6, 9), (5, 10)),  # inside the first group
        ((0, 3), (5, 10)),  # below the first group: the first unified group starts at 0
        ((21, 25), (20, 30)),
        ((40, 120), (20, 30)),  # above the last group: the last unified group holds every older age
        ((12, 15), None),  # in the gap: bin 1 or 2, depending on the boundary
        ((8, 22), None),  # straddles both groups
        ((3, 12), None),  # reaches into the gap
    ],
)
def test_age_distribution_places_a_range_only_when_every_boundary_agrees(age_range, group):
    record = FaceRecord(Path("x.jpg"), "mine", *age_range)
    distribution = age_distribution([record], [(5, 10), (20, 30)], max_age=50)
    assert distribution.group_counts == ({} if group is None else {group: 1})
    assert distribution.unplaced == (1 if group is None else 0)


def test_fairface_only_commands_on_the_real_data(shared_data, tmp_path, capsys):
    fairface = shared_data / "fairface"
    report_argv = ["data", "report", "--fairface", str(fairface), "--out", str(tmp_path / "r"), "--json"]
    assert main(report_argv) == 0
    report = json.loads(capsys.readouterr().out)
    summary = report["datasets"]["fairface"]
    counted = sum(row["male"] + row["female"] for row in summary["counts"].values())
    assert counted > 0 and counted + summary["straddling_bins"] == summary["cleaning"]["kept"]
    assert report["bins_source"] == "paper"
    root = tmp_path / "root"
    root.mkdir()
    (root / "fairface").symlink_to(fairface, target_is_directory=True)
    assert main(["data", "report", "--data", str(root), "--out", str(tmp_path / "r2"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"]["fairface"]["counts"] == summary["counts"]
    assert main(["bins", "--data", str(root)]) == 2
    assert WHY in one_line_error(capsys.readouterr())


def test_both_fairface_tables_load_and_adding_one_moves_no_image_between_parts(fairface_only_root):
    folder = fairface_only_root / "fairface"
    val_only = discover(fairface_only_root, datasets=["fairface"])["fairface"].records
    (folder / "train").mkdir()
    lines = ["file,age,gender,race,service_test"]
    for i in range(6):
        shifted_face(100 + i, 32).save(folder / "train" / f"{i}.jpg")
        lines.append(f"train/{i}.jpg,30-39,{'Male' if i % 2 else 'Female'},Indian,False")
    (folder / "fairface_label_train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = discover(fairface_only_root, datasets=["fairface"])["fairface"]
    assert loaded.report.total == len(FAIRFACE_ROWS) + 6 and len(loaded.records) == len(FAIRFACE_ROWS) + 6
    assert loaded.records[: len(val_only)] == val_only  # the validation table first, as before
    assert {r.path.parent.name for r in loaded.records} == {"val", "train"}
    before, after = split_records(val_only), split_records(loaded.records)
    for part in ("train", "val", "test"):
        assert set(getattr(before, part)) <= set(getattr(after, part))


def test_fairface_images_are_taken_as_aligned_crops():
    # They are dlib face chips at padding 0.25: the detector would only lose some of them.
    assert DATASETS["fairface"].framing == "aligned" and DATASETS["utkface"].framing == "aligned"
    assert DATASETS["adience"].framing == DATASETS["morph2"].framing == "detect"
