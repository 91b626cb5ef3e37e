"""``agecurriculum data report``, ``data preprocess`` and ``bins --data`` on a generated data root and on the real
one."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from test_bins import brute_force

from agecurriculum.bins import ADIENCE_GROUPS
from agecurriculum.cli.main import main
from agecurriculum.data.sources import label_records
from agecurriculum.data.summary import age_distribution

UTK_NAMES = [
    "1_0_2_20170109150557335.jpg.chip.jpg",
    "5_1_0_20170109194005140.jpg.chip.jpg",
    "26_0_1_20170116184028385.jpg.chip.jpg",
    "26_1_3_20170117175555471.jpg.chip.jpg",
    "40_1_0_20170117134417715.jpg.chip.jpg",
    "61_0_0_20170111200226568.jpg.chip.jpg",
    "110_1_0_20170120134701015.jpg.chip.jpg",
    "39_1_20170116174525125.jpg.chip.jpg",  # missing race field: cleaned, kept
    "notes.txt",  # not an image: dropped
]
FOLD_HEADER = (
    "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle\tfiducial_score\n"
)


def adience_row(user, image, face, age, gender):
    return f"{user}\t{image}\t{face}\t{age}\t{gender}\t0\t0\t100\t100\t0\t0\t50\n"


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A tiny root laid out like ../shared/data: UTKFace names, Adience folds with noise, MORPH-II names."""
    astronaut = Image.fromarray(skdata.astronaut()).resize((200, 200))
    qualities = iter(range(95, 10, -1))

    def save_face(path):  # every file gets different bytes: the crop cache is keyed by content
        astronaut.save(path, format="JPEG", quality=next(qualities))

    utk = tmp_path / "utkface" / "UTKFace"
    utk.mkdir(parents=True)
    for name in UTK_NAMES:
        save_face(utk / name) if name.endswith(".jpg") else (utk / name).write_text("hello")
    adience = tmp_path / "adience"
    (adience / "faces" / "u1").mkdir(parents=True)
    save_face(adience / "faces" / "u1" / "coarse_tilt_aligned_face.1.a.jpg")
    Image.new("RGB", (64, 64), "gray").save(adience / "faces" / "u1" / "coarse_tilt_aligned_face.2.b.jpg")  # no face
    rows = [
        adience_row("u1", "a.jpg", 1, "(25, 32)", "f"),
        adience_row("u1", "b.jpg", 2, "(8, 12)", "m"),  # the 8-13 group, written the Adience way
        adience_row("u2", "c.jpg", 3, "(60, 100)", "m"),  # no image: label view only
        adience_row("u2", "d.jpg", 4, "None", "m"),  # no age: dropped everywhere
    ]
    (adience / "fold_0_data.txt").write_text(FOLD_HEADER + "".join(rows))
    morph = tmp_path / "morph2" / "images"
    morph.mkdir(parents=True)
    for name in ["000001_0M35.JPG", "000001_1M37.JPG", "000002_0F48.JPG"]:
        save_face(morph / name)
    return tmp_path


def run_json(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    return json.loads(out)


def test_bins_from_data_root_agrees_with_brute_force(data_root, capsys):
    result = run_json(["bins", "--data", str(data_root), "--json"], capsys)
    # Exact ages from UTKFace (110 counts at 100) and MORPH-II, Adience group labels from its fold rows.
    histogram = np.zeros(101, dtype=int)
    for age in [1, 5, 26, 26, 40, 61, 100, 39, 35, 37, 48]:
        histogram[age] += 1
    extra = [0] * 8
    extra[ADIENCE_GROUPS.index((25, 32))] += 1
    extra[ADIENCE_GROUPS.index((8, 13))] += 1
    extra[ADIENCE_GROUPS.index((60, 100))] += 1
    boundaries, sizes, variance = brute_force(list(ADIENCE_GROUPS), 100, histogram, extra)
    assert result["boundaries"] == list(boundaries)
    assert result["sizes"] == list(sizes)
    assert result["objective"] == pytest.approx(variance)


def test_bins_with_one_dataset_flag_and_errors(data_root, capsys):
    result = run_json(["bins", "--morph2", str(data_root / "morph2"), "--json"], capsys)
    assert sum(result["sizes"]) == 3
    assert main(["bins"]) == 2
    assert "give --ages FILE, --csv FILE, or --data ROOT" in capsys.readouterr().err
    assert main(["bins", "--adience", str(data_root / "utkface")]) == 2
    assert "not a adience folder" in capsys.readouterr().err


def test_data_report_counts_cleaning_bins_and_plots(data_root, tmp_path, capsys):
    out_dir = tmp_path / "report"
    report = run_json(["data", "report", "--data", str(data_root), "--out", str(out_dir), "--json"], capsys)
    assert report["bins_fitted_on"] == ["utkface", "adience", "morph2"]
    utk = report["datasets"]["utkface"]
    assert utk["cleaning"]["total"] == 9 and utk["cleaning"]["kept"] == 8
    assert utk["cleaning"]["cleaned"] == {"missing race field": 1}
    labels = [f"{lo}-{hi}" for lo, hi in report["bins"]["groups"]]
    counts = utk["counts"]
    assert sum(row["male"] + row["female"] for row in counts.values()) == 8
    assert counts[labels[-1]]["female"] >= 1  # the 110-year-old lands in the last bin
    adience = report["datasets"]["adience"]
    assert adience["cleaning"]["kept"] == 2  # rows with an image and an age
    assert sum(row["male"] + row["female"] for row in adience["counts"].values()) == 2
    for png in report["plots"]:
        assert Image.open(png).size[0] > 100


def test_data_report_text(data_root, tmp_path, capsys):
    assert main(["data", "report", "--data", str(data_root), "--out", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert "unified age bins over utkface, adience, morph2:" in text
    assert "cleaned 1: missing race field" in text
    assert "balanced (median rule)" in text


def test_preprocess_fills_the_cache_reports_failures_and_resumes(data_root, tmp_path, capsys):
    cache, failures = tmp_path / "cache", tmp_path / "failed.csv"
    argv = [
        "data",
        "preprocess",
        "--data",
        str(data_root),
        "--cache",
        str(cache),
        "--size",
        "64",
        "--workers",
        "0",
        "--failures",
        str(failures),
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "utkface: 8 crops (0 already cached)" in first
    assert "adience: 1 crops (0 already cached), failed: 1 no face detected" in first
    assert "morph2: 3 crops (0 already cached)" in first
    assert "coarse_tilt_aligned_face.2.b.jpg,no face detected" in failures.read_text()
    assert main(argv) == 0  # a rerun finds everything in the cache, the "no face" answer included
    second = capsys.readouterr().out
    assert "utkface: 8 crops (8 already cached)" in second
    assert "adience: 1 crops (2 already cached)" in second


def test_report_and_bins_on_the_real_data(shared_data, tmp_path, capsys):
    result = run_json(["bins", "--data", str(shared_data), "--json"], capsys)
    distribution = age_distribution(r for res in label_records(shared_data).values() for r in res.records)
    extra = [distribution.group_counts.get(group, 0) for group in ADIENCE_GROUPS]
    boundaries, sizes, _ = brute_force(list(ADIENCE_GROUPS), 100, distribution.histogram, extra)
    assert result["boundaries"] == list(boundaries)
    assert result["sizes"] == list(sizes)
    # UTKFace's names, all 19,370 Adience fold rows less the unusable ones, and the MORPH-II tables.
    assert sum(result["sizes"]) > 90_000

    report = run_json(["data", "report", "--data", str(shared_data), "--out", str(tmp_path), "--json"], capsys)
    assert set(report["datasets"]) == {"utkface", "adience", "morph2", "fairface"}
    assert report["datasets"]["utkface"]["cleaning"]["total"] == 20_199
    assert report["datasets"]["morph2"]["cleaning"]["kept"] == 2_500
