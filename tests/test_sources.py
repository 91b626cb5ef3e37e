"""Tests of the dataset loaders in agecurriculum.data.sources.

Fixtures are built in tmp_path with each dataset's naming scheme, including the malformed names and noisy labels
found in the real releases. The tests marked with ``shared_data`` read the real folders (names and tables only, no
image decoding) and skip when they are absent.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from generated_data import ADIENCE_HEADER
from PIL import Image

from agecurriculum.bins import ADIENCE_GROUPS
from agecurriculum.data.cache import MODES
from agecurriculum.data.sources import (
    DATASETS,
    HISTOGRAM_DATASETS,
    WHY_NOT_HISTOGRAM,
    AdienceKey,
    adience_age,
    adience_folds,
    adience_key,
    discover,
    histogram_datasets,
    label_records,
    load_adience,
    load_adience_protocol,
    load_csv,
    load_fairface,
    load_morph2,
    load_morph2_csv,
    load_utkface,
    resolve_split,
    why_not_histogram,
)
from agecurriculum.data.sources.generic import parse_gender
from agecurriculum.evaluation.protocols import PROTOCOLS


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (120, 90, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg_bytes()


def write_images(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(JPEG)


def by_name(result) -> dict:
    return {r.path.name: r for r in result.records}


# ---------------------------------------------------------------------------------------------------------- UTKFace

UTK_GOOD = ["26_0_2_20170104023102422.jpg.chip.jpg", "116_1_0_20170120134921760.jpg.chip.jpg"]
UTK_FIXABLE = {  # name -> the cleaning reason(s) the lenient parser reports
    "39_1_20170116174525125.jpg.chip.jpg": ["missing race field"],
    "24_0_1_20170116220224657 .jpg.chip.jpg": ["stray space before .jpg"],
    "55_0_0_20170116232725357jpg.chip.jpg": ["missing dot before jpg"],
    "28_1_2_201701161846515488.jpg.chip.jpg": ["odd datetime field"],
    "30_1_3_20170119153914323.jpg": ["no .chip.jpg suffix"],
    "41_0_7_20170119153914323.jpg.chip.jpg": ["unknown race code"],
    "61_1_20170109150557335 .jpg.chip.jpg": ["stray space before .jpg", "missing race field"],
}
UTK_BAD = {
    "notes.txt": "not an image file",
    ".DS_Store": "not an image file",
    "35_2_0_20170116174525125.jpg.chip.jpg": "gender not 0/1",
    "130_0_0_20170116174525125.jpg.chip.jpg": "age out of 0..120",
    "x_0_0_20170116174525125.jpg.chip.jpg": "age not a number",
    "portrait.jpg": "name not AGE_GENDER_RACE_DATETIME",
    "35_0.jpg.chip.jpg": "name not AGE_GENDER_RACE_DATETIME",
}


@pytest.fixture
def utk_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "utkface" / "UTKFace"
    write_images(folder, *UTK_GOOD, *UTK_FIXABLE, *UTK_BAD)
    (folder / "subfolder").mkdir()  # folders are not files: ignored, not counted
    return folder


def test_utkface_lenient(utk_folder: Path) -> None:
    result = load_utkface(utk_folder)
    report = result.report
    assert report.total == len(UTK_GOOD) + len(UTK_FIXABLE) + len(UTK_BAD)
    assert sorted(report.dropped) == sorted(UTK_BAD.items())
    assert sorted(report.cleaned) == sorted((name, r) for name, rs in UTK_FIXABLE.items() for r in rs)
    assert set(by_name(result)) == set(UTK_GOOD) | set(UTK_FIXABLE)
    records = by_name(result)
    first = records["26_0_2_20170104023102422.jpg.chip.jpg"]
    assert (first.age_min, first.age_max, first.gender, first.race, first.subject) == (26, 26, 0, "Asian", None)
    assert first.path == utk_folder / "26_0_2_20170104023102422.jpg.chip.jpg"
    assert records["116_1_0_20170120134921760.jpg.chip.jpg"].exact_age == 116  # above 100 stays as it is
    assert records["116_1_0_20170120134921760.jpg.chip.jpg"].race == "White"
    no_race = records["39_1_20170116174525125.jpg.chip.jpg"]
    assert (no_race.race, no_race.gender, no_race.exact_age) == (None, 1, 39)
    assert records["55_0_0_20170116232725357jpg.chip.jpg"].race == "White"
    assert records["24_0_1_20170116220224657 .jpg.chip.jpg"].race == "Black"
    assert records["41_0_7_20170119153914323.jpg.chip.jpg"].race is None
    assert records["30_1_3_20170119153914323.jpg"].race == "Indian"


def test_utkface_strict_drops_every_fixable_name_under_its_reason(utk_folder: Path) -> None:
    result = load_utkface(utk_folder, strict=True)
    assert set(by_name(result)) == set(UTK_GOOD)
    assert result.report.cleaned == []
    expected = dict(UTK_BAD) | {name: reasons[0] for name, reasons in UTK_FIXABLE.items()}
    assert dict(result.report.dropped) == expected
    assert result.report.kept == len(UTK_GOOD)


def test_utkface_rejects_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        load_utkface(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------------------- Adience


def adience_row(user: str, image: str, face: int, age: str, gender: str, box: str = "10\t20\t30\t40") -> str:
    return f"{user}\t{image}\t{face}\t{age}\t{gender}\t{box}\t0\t0\t50"


# (user, image, face, age, gender, has image file: "coarse"/"landmark"/None)
ADIENCE_ROWS_0 = [
    ("u1@N01", "100_a_o.jpg", 1, "(25, 32)", "f", "coarse"),
    ("u1@N01", "101_b_o.jpg", 2, "(8, 12)", "m", "landmark"),
    ("u1@N01", "102_c_o.jpg", 3, "35", "m", "coarse"),
    ("u1@N01", "103_d_o.jpg", 4, "(38, 42)", "u", "coarse"),
    ("u1@N01", "104_e_o.jpg", 5, "(27, 32)", "", "landmark"),
    ("u1@N01", "105_f_o.jpg", 6, "None", "f", "coarse"),
    ("u2@N02", "200_g_o.jpg", 7, "", "m", None),
    ("u2@N02", "201_h_o.jpg", 8, "(8, 23)", "f", None),
]
ADIENCE_ROWS_1 = [
    ("u2@N02", "202_i_o.jpg", 9, "13", "f", None),
    ("u2@N02", "203_j_o.jpg", 10, "(35)", "m", None),
    ("u2@N02", "204_k_o.jpg", 11, "(38, 48)", "m", None),
    ("u2@N02", "205_l_o.jpg", 12, "(60, 100)", "x", None),
]


@pytest.fixture
def adience_root(tmp_path: Path) -> Path:
    root = tmp_path / "adience"
    for k, rows in ((0, ADIENCE_ROWS_0), (1, ADIENCE_ROWS_1)):
        lines = [ADIENCE_HEADER] + [adience_row(u, i, f, a, g) for u, i, f, a, g, _ in rows]
        if k == 1:
            lines.insert(2, "u2@N02\ttoo_few_fields.jpg\t99")
        (root / f"fold_{k}_data.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"fold_{k}_data.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for user, image, face, *_, naming in rows:
            if naming:
                prefix = "coarse_tilt_aligned_face" if naming == "coarse" else "landmark_aligned_face"
                write_images(root / "faces" / user, f"{prefix}.{face}.{image}")
    (root / "faces" / "u1@N01" / "landmarks.1.100_a_o.txt").write_text("1 2 3\n")  # real folders hold these too
    return root


@pytest.mark.parametrize(
    ("text", "ages", "reason"),
    [
        ("(0, 2)", (0, 2), None),
        ("(60, 100)", (60, 100), None),
        ("(8, 12)", (8, 13), "(8, 12) read as 8-13"),
        ("35", (35, 35), "exact age kept"),
        ("(35)", (35, 35), "exact age kept"),
        ("13", (8, 13), "exact age mapped to its group"),
        ("29", (25, 32), "exact age mapped to its group"),
        ("101", (101, 101), "exact age kept"),
        ("(38, 42)", (38, 43), "range mapped to the most-overlapping group"),
        ("(27, 32)", (25, 32), "range mapped to the most-overlapping group"),
        ("(38, 48)", (38, 43), "range mapped to the most-overlapping group"),
        ("(8, 23)", None, "range between groups"),
        ("(21, 24)", None, "range between groups"),
        ("None", None, "age missing"),
        ("", None, "age missing"),
        ("  ", None, "age missing"),
        ("(32, 25)", None, "age unreadable"),
        ("adult", None, "age unreadable"),
    ],
)
def test_adience_age_rule(text: str, ages, reason) -> None:
    assert adience_age(text) == (ages, reason)


@pytest.mark.parametrize("age", [3, 7, 14, 21, 22, 23, 24, 33, 34, 35, 36, 37, 44, 45, 46, 47, 54, 55, 56, 57, 58, 59])
def test_adience_exact_ages_in_gaps_are_kept(age: int) -> None:
    assert adience_age(str(age)) == ((age, age), "exact age kept")


def test_adience_exact_ages_in_groups_map_to_their_group() -> None:
    for lo, hi in ADIENCE_GROUPS:
        for age in range(lo, hi + 1):
            assert adience_age(str(age)) == ((lo, hi), "exact age mapped to its group")


def test_adience_label_view(adience_root: Path) -> None:
    result = load_adience(adience_root, require_images=False)
    report = result.report
    assert report.total == len(ADIENCE_ROWS_0) + len(ADIENCE_ROWS_1) + 1
    assert report.counts() == {
        "cleaned": {
            "(8, 12) read as 8-13": 1,
            "exact age kept": 2,
            "exact age mapped to its group": 1,
            "range mapped to the most-overlapping group": 3,
            "gender unknown": 2,
        },
        "dropped": {"age missing": 2, "range between groups": 1, "wrong number of fields": 1, "gender unreadable": 1},
    }
    assert ("fold_1_data.txt:3", "wrong number of fields") in report.dropped
    labels = {(r.subject, r.path.name): (r.age_min, r.age_max, r.gender) for r in result.records}
    assert labels == {
        ("u1@N01", "coarse_tilt_aligned_face.1.100_a_o.jpg"): (25, 32, 1),
        ("u1@N01", "landmark_aligned_face.2.101_b_o.jpg"): (8, 13, 0),
        ("u1@N01", "coarse_tilt_aligned_face.3.102_c_o.jpg"): (35, 35, 0),
        ("u1@N01", "coarse_tilt_aligned_face.4.103_d_o.jpg"): (38, 43, None),
        ("u1@N01", "landmark_aligned_face.5.104_e_o.jpg"): (25, 32, None),
        ("u2@N02", "coarse_tilt_aligned_face.9.202_i_o.jpg"): (8, 13, 1),  # no image: path where it would be
        ("u2@N02", "coarse_tilt_aligned_face.10.203_j_o.jpg"): (35, 35, 0),
        ("u2@N02", "coarse_tilt_aligned_face.11.204_k_o.jpg"): (38, 43, 0),
    }
    first = result.records[0]
    assert first.box == (10, 20, 40, 60) and first.dataset == "adience" and first.race is None
    assert first.path == adience_root / "faces" / "u1@N01" / "coarse_tilt_aligned_face.1.100_a_o.jpg"


def test_adience_with_images(adience_root: Path) -> None:
    result = load_adience(adience_root)
    assert [r.path.name for r in result.records] == [
        "coarse_tilt_aligned_face.1.100_a_o.jpg",
        "landmark_aligned_face.2.101_b_o.jpg",
        "coarse_tilt_aligned_face.3.102_c_o.jpg",
        "coarse_tilt_aligned_face.4.103_d_o.jpg",
        "landmark_aligned_face.5.104_e_o.jpg",
    ]
    assert all(r.path.is_file() for r in result.records)
    counts = result.report.counts()
    assert counts["dropped"] == {
        "age missing": 2,
        "range between groups": 1,
        "wrong number of fields": 1,
        "gender unreadable": 1,
        "image file missing": 3,
    }
    assert sum(counts["cleaned"].values()) == 6  # only kept rows are counted as cleaned
    assert result.report.kept == 5


def test_adience_folds_and_keys(adience_root: Path) -> None:
    folds = adience_folds(adience_root)
    assert len(folds) == len(ADIENCE_ROWS_0) + len(ADIENCE_ROWS_1)
    assert folds[AdienceKey("u1@N01", "1", "100_a_o.jpg")] == 0
    assert folds[AdienceKey("u2@N02", "12", "205_l_o.jpg")] == 1
    for record in load_adience(adience_root).records:
        assert folds[adience_key(record.path)] == 0
    assert str(AdienceKey("u1@N01", "1", "100_a_o.jpg")) == "u1@N01/1.100_a_o.jpg"
    with pytest.raises(ValueError, match="not an Adience face name"):
        adience_key("faces/u1/landmarks.1.100_a_o.txt")


def test_adience_unreadable_box_keeps_the_label(tmp_path: Path) -> None:
    row = adience_row("u1@N01", "100_a_o.jpg", 1, "(4, 6)", "m", box="10\t?\t30\t40")
    (tmp_path / "fold_3_data.txt").write_text(f"{ADIENCE_HEADER}\n{row}\n")
    result = load_adience(tmp_path, require_images=False)
    assert [(r.age_min, r.age_max, r.gender, r.box) for r in result.records] == [(4, 6, 0, None)]
    assert result.report.cleaned == [("fold_3_data.txt:2 u1@N01/1.100_a_o.jpg", "face box unreadable")]
    assert adience_folds(tmp_path) == {AdienceKey("u1@N01", "1", "100_a_o.jpg"): 3}


def test_adience_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no Adience fold files"):
        load_adience(tmp_path)
    (tmp_path / "fold_0_data.txt").write_bytes(ADIENCE_HEADER.encode() + b"\nu\t\xff\xfe\n")
    with pytest.raises(ValueError, match=r"fold_0_data\.txt: not UTF-8"):
        load_adience(tmp_path)
    (tmp_path / "fold_0_data.txt").write_text("user_id\toriginal_image\tface_id\tage\tsex\n")
    with pytest.raises(ValueError, match=r"fold_0_data\.txt: missing column 'gender'"):
        load_adience(tmp_path)


def write_levi(root: Path, entries: dict[tuple[int, str, str], list[str]]) -> None:
    for k in range(5):
        folder = root / "levi_folds" / f"test_fold_is_{k}"
        folder.mkdir(parents=True)
        for task in ("age", "gender"):
            for part in ("train", "val", "test"):
                lines = entries.get((k, task, part), [])
                (folder / f"{task}_{part}.txt").write_text("".join(f"{line}\n" for line in lines))


def test_adience_protocol(adience_root: Path) -> None:
    def line(user: str, face: int, image: str, label: int) -> str:
        return f"{user}/landmark_aligned_face.{face}.{image} {label}"

    write_levi(
        adience_root,
        {
            (0, "age", "test"): [
                line("u1@N01", 1, "100_a_o.jpg", 4),
                line("u1@N01", 2, "101_b_o.jpg", 2),
                line("u1@N01", 2, "101_b_o.jpg", 2),
                line("u9@N09", 5, "900_z_o.jpg", 1),
            ],
            (0, "gender", "test"): [line("u1@N01", 1, "100_a_o.jpg", 1), line("u1@N01", 6, "105_f_o.jpg", 1)],
            (3, "age", "train"): [line("u2@N02", 9, "202_i_o.jpg", 2)],
        },
    )
    splits = load_adience_protocol(adience_root)
    assert [s.test_fold for s in splits] == [0, 1, 2, 3, 4]
    test_ages = splits[0].age["test"]
    assert len(test_ages) == 4  # the duplicate line is kept, as in the published lists
    assert test_ages[0] == (AdienceKey("u1@N01", "1", "100_a_o.jpg"), 4)
    assert splits[1].age == {"train": [], "val": [], "test": []}

    records = load_adience(adience_root).records
    resolved = resolve_split(records, test_ages)
    assert resolved.resolved == 3
    assert [r.path.name for r in resolved.records] == [
        "coarse_tilt_aligned_face.1.100_a_o.jpg",
        "landmark_aligned_face.2.101_b_o.jpg",
        "landmark_aligned_face.2.101_b_o.jpg",
    ]
    assert resolved.labels == [4, 2, 2]
    assert resolved.missing == [AdienceKey("u9@N09", "5", "900_z_o.jpg")]
    for record, label in zip(resolved.records, resolved.labels):
        assert ADIENCE_GROUPS[label] == (record.age_min, record.age_max)
    gender = resolve_split(records, splits[0].gender["test"])
    assert (gender.resolved, gender.missing) == (1, [AdienceKey("u1@N01", "6", "105_f_o.jpg")])  # age None: dropped
    assert resolve_split(records, splits[3].age["train"]).resolved == 0  # its image is absent
    assert resolve_split(load_adience(adience_root, False).records, splits[3].age["train"]).resolved == 1


@pytest.mark.parametrize(
    "bad",
    [
        "u1@N01/landmark_aligned_face.1.100_a_o.jpg 8",
        "u1/landmark_aligned_face.1.x.jpg",
        "landmark_aligned_face.1.100_a_o.jpg 1",
        "u1/face_1.jpg 2",
    ],
)
def test_adience_protocol_bad_line(tmp_path: Path, bad: str) -> None:
    write_levi(tmp_path, {(2, "age", "val"): ["u1@N01/landmark_aligned_face.1.100_a_o.jpg 3", bad]})
    with pytest.raises(ValueError, match=r"test_fold_is_2/age_val\.txt:2: expected"):
        load_adience_protocol(tmp_path)


def test_adience_protocol_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test_fold_is_0: missing"):
        load_adience_protocol(tmp_path)


# -------------------------------------------------------------------------------------------------------- MORPH-II

MORPH_HEADER = ",id_num,picture_num,race,Male,facial_hair,age,glasses,quality"


@pytest.fixture
def morph_root(tmp_path: Path) -> Path:
    root = tmp_path / "morph2"
    write_images(
        root / "images",
        "009055_0M54.JPG",
        "009055_1M54.JPG",
        "321798_03M36.JPG",
        "285760_00F18.jpg",
        "notes.txt",
        "face.JPG",
        "500000_1M130.JPG",
    )
    rows = [
        "321798_03M36.jpg,321798,3,B,1,,20,,GOOD",  # 36 = 20 + 16
        "285760_00F18.jpg,285760,0,W,-1,,2,,GOOD",
        "009055_0M54.jpg,9055,0,H,1,,38,,GOOD",
        "777777_01F40.jpg,777777,1,A,0,,24,,GOOD",  # no image file
        "111111_02M30.jpg,111111,2,B,1,,30,,GOOD",  # table age + 16 = 46 != 30
        "222222_02F30.jpg,222222,2,B,1,,14,,GOOD",  # Male says male, name says F
        "badname.jpg,1,1,B,1,,14,,GOOD",
        "333333_02M30.jpg,333333,2,B,1,,n/a,,GOOD",
        "444444_02M30.jpg,444444,2,B",
    ]
    (root / "morph2_train.csv").write_text(MORPH_HEADER + "\n" + "\n".join(rows[:5]) + "\n")
    (root / "morph2_test.csv").write_text(MORPH_HEADER + "\n" + "\n".join(rows[5:]))  # no trailing newline
    return root


def test_morph2_from_names(morph_root: Path) -> None:
    result = load_morph2(morph_root / "images")
    assert result.report.total == 7
    assert dict(result.report.dropped) == {
        "notes.txt": "not an image file",
        "face.JPG": "name not ID_PICNUM{M,F}AGE",
        "500000_1M130.JPG": "age out of 0..120",
    }
    records = by_name(result)
    assert set(records) == {"009055_0M54.JPG", "009055_1M54.JPG", "321798_03M36.JPG", "285760_00F18.jpg"}
    r = records["009055_0M54.JPG"]
    assert (r.subject, r.gender, r.age_min, r.age_max, r.race, r.dataset) == ("009055", 0, 54, 54, None, "morph2")
    assert records["285760_00F18.jpg"].gender == 1


def test_morph2_tables(morph_root: Path) -> None:
    tables = [morph_root / "morph2_train.csv", morph_root / "morph2_test.csv"]
    labels_only = load_morph2_csv(tables)
    assert labels_only.report.total == 9
    assert labels_only.report.counts() == {
        "cleaned": {},
        "dropped": {
            "name age != table age + 16": 1,
            "name gender != Male column": 1,
            "name not ID_PICNUM{M,F}AGE": 1,
            "age not a number": 1,
            "wrong number of fields": 1,
        },
    }
    assert ("morph2_train.csv:6 111111_02M30.jpg", "name age != table age + 16") in labels_only.report.dropped
    records = {r.path: r for r in labels_only.records}
    assert set(records) == {
        Path("321798_03M36.jpg"),
        Path("285760_00F18.jpg"),
        Path("009055_0M54.jpg"),
        Path("777777_01F40.jpg"),
    }
    r = records[Path("321798_03M36.jpg")]
    assert (r.age_min, r.gender, r.race, r.subject) == (36, 0, "B", "321798")
    assert records[Path("009055_0M54.jpg")].subject == "009055"  # the name's id, as load_morph2 gives it
    assert records[Path("777777_01F40.jpg")].gender == 1

    with_images = load_morph2_csv(tables, morph_root / "images")
    assert [r.path for r in with_images.records] == [
        morph_root / "images" / "321798_03M36.JPG",
        morph_root / "images" / "285760_00F18.jpg",
        morph_root / "images" / "009055_0M54.JPG",
    ]  # the tables' .jpg names find the .JPG files
    assert with_images.report.counts()["dropped"]["image file missing"] == 1
    kept = load_morph2_csv(morph_root / "morph2_train.csv", morph_root / "images", require_images=False)
    assert morph_root / "images" / "777777_01F40.jpg" in [r.path for r in kept.records]


def test_morph2_table_errors(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(",id_num,picture_num,race,Male,facial_hair,years\n")
    with pytest.raises(ValueError, match=r"t\.csv: missing column 'age'"):
        load_morph2_csv(tmp_path / "t.csv")
    (tmp_path / "u.csv").write_bytes(MORPH_HEADER.encode("utf-16"))
    with pytest.raises(ValueError, match=r"u\.csv: not UTF-8"):
        load_morph2_csv([tmp_path / "u.csv"])


# -------------------------------------------------------------------------------------------------------- FairFace

FAIRFACE_ROWS = [
    ("val/1.jpg", "0-2", "Male", "East Asian"),
    ("val/2.jpg", "3-9", "Female", "White"),
    ("val/3.jpg", "10-19", "Male", "Black"),
    ("val/4.jpg", "20-29", "Female", "Indian"),
    ("val/5.jpg", "30-39", "Male", "Latino_Hispanic"),
    ("val/6.jpg", "40-49", "Female", "Middle Eastern"),
    ("val/7.jpg", "50-59", "Male", "Southeast Asian"),
    ("val/8.jpg", "60-69", "Female", "White"),
    ("val/9.jpg", "more than 70", "Male", "White"),
    ("val/10.jpg", "70-79", "Male", "White"),  # unknown age group
    ("val/11.jpg", "20-29", "Unknown", "White"),  # unknown gender
    ("val/12.jpg", "20-29", "Female", "White"),  # no image file
]


@pytest.fixture
def fairface_root(tmp_path: Path) -> Path:
    root = tmp_path / "fairface"
    write_images(root / "val", *(f"{i}.jpg" for i in range(1, 12)))
    lines = ["file,age,gender,race,service_test"] + [f"{f},{a},{g},{r},TRUE" for f, a, g, r in FAIRFACE_ROWS]
    lines.insert(4, "val/x.jpg,20-29")
    (root / "fairface_label_val.csv").write_text("\n".join(lines) + "\n")
    return root


def test_fairface(fairface_root: Path) -> None:
    result = load_fairface(fairface_root)
    assert result.report.total == len(FAIRFACE_ROWS) + 1
    assert result.report.counts()["dropped"] == {
        "unknown age group": 1,
        "unknown gender": 1,
        "image file missing": 1,
        "wrong number of fields": 1,
    }
    ages = [(r.age_min, r.age_max) for r in result.records]
    assert ages == [(0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 100)]
    assert [r.gender for r in result.records] == [0, 1] * 4 + [0]
    first = result.records[0]
    assert (first.path, first.race, first.subject, first.dataset) == (
        fairface_root / "val" / "1.jpg",
        "East Asian",
        None,
        "fairface",
    )
    assert load_fairface(fairface_root, require_images=False).report.kept == 10
    with pytest.raises(ValueError, match="fairface_label_train.csv: cannot read"):
        load_fairface(fairface_root, csv="fairface_label_train.csv")


# ------------------------------------------------------------------------------------------------- generic CSV


@pytest.mark.parametrize(
    ("text", "gender"),
    [("0", 0), ("1", 1), ("m", 0), ("F", 1), ("Male", 0), ("FEMALE", 1), ("female ", 1), ("", None), (" ", None)],
)
def test_parse_gender(text: str, gender) -> None:
    assert parse_gender(text) == gender


@pytest.mark.parametrize("text", ["2", "x", "man", "-1"])
def test_parse_gender_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        parse_gender(text)


def test_load_csv(tmp_path: Path) -> None:
    write_images(tmp_path / "img", *(f"{i}.jpg" for i in range(1, 9)))
    (tmp_path / "labels.csv").write_text(
        "\ufeffpath,age,age_min,age_max,gender,subject,race,notes\n"
        "img/1.jpg,34,,,f,alice,,x\n"
        "img/2.jpg,,20,29,MALE,bob,W,\n"
        "img/3.jpg,51,,,,,,\n"
        "img/4.jpg,40,,,robot,,,\n"
        "img/5.jpg,,,,m,,,\n"
        "img/6.jpg,3.5,,,m,,,\n"
        "img/7.jpg,,30,20,m,,,\n"
        "img/8.jpg,12\n"
        "\n"
        "img/missing.jpg,12,,,1,,,\n"
        ",12,,,1,,,\n",
        encoding="utf-8",
    )
    result = load_csv(tmp_path / "labels.csv", dataset="mine")
    assert [(r.path.name, r.age_min, r.age_max, r.gender, r.subject, r.race) for r in result.records] == [
        ("1.jpg", 34, 34, 1, "alice", None),
        ("2.jpg", 20, 29, 0, "bob", "W"),
        ("3.jpg", 51, 51, None, None, None),
    ]
    assert result.records[0].path == tmp_path / "img" / "1.jpg" and result.records[0].dataset == "mine"
    assert result.report.dataset == "mine" and result.report.total == 10
    assert result.report.dropped == [
        ("labels.csv:5 img/4.jpg", "gender unreadable"),
        ("labels.csv:6 img/5.jpg", "age missing"),
        ("labels.csv:7 img/6.jpg", "age not a whole number"),
        ("labels.csv:8 img/7.jpg", "age not in 0..120 or min > max"),
        ("labels.csv:9 ", "wrong number of fields"),
        ("labels.csv:11 img/missing.jpg", "image file missing"),
        ("labels.csv:12 ", "path missing"),
    ]
    assert load_csv(tmp_path / "labels.csv", require_images=False).report.kept == 4


def test_load_csv_root_and_range_columns(tmp_path: Path) -> None:
    write_images(tmp_path / "photos", "a.png")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "l.csv").write_text("path,age_min,age_max\na.png,25,32\n")
    result = load_csv(tmp_path / "meta" / "l.csv", root=tmp_path / "photos")
    assert [(r.path, r.age_min, r.age_max, r.gender) for r in result.records] == [
        (tmp_path / "photos" / "a.png", 25, 32, None)
    ]
    assert load_csv(tmp_path / "meta" / "l.csv").report.counts()["dropped"] == {"image file missing": 1}


@pytest.mark.parametrize(("header", "column"), [("file,age", "path"), ("path,gender", "age"), ("path,age_min", "age")])
def test_load_csv_missing_columns(tmp_path: Path, header: str, column: str) -> None:
    (tmp_path / "l.csv").write_text(header + "\n")
    with pytest.raises(ValueError, match=rf"l\.csv: missing column '{column}'"):
        load_csv(tmp_path / "l.csv")


def test_load_csv_bad_encoding_and_empty(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_bytes("path,age\nÉmile.jpg,30\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"l\.csv: not UTF-8"):
        load_csv(tmp_path / "l.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match=r"e\.csv: empty file"):
        load_csv(tmp_path / "e.csv")


def test_load_csv_names_the_line_of_a_field_over_the_csv_limit(tmp_path: Path) -> None:
    # Issue 30.3: csv.Error ("field larger than field limit (131072)") escaped read_table as a traceback.
    (tmp_path / "l.csv").write_text("path,age\na.jpg,30\n" + "x" * 200_000 + ",1\n")
    with pytest.raises(ValueError, match=r"l\.csv, line 3: field larger than field limit"):
        load_csv(tmp_path / "l.csv")


# ---------------------------------------------------------------------------------------------------------- discover


@pytest.fixture
def data_root(tmp_path: Path, utk_folder: Path, adience_root: Path, morph_root: Path, fairface_root: Path) -> Path:
    return tmp_path  # the fixtures above all live in tmp_path, laid out like the real data folder


def test_discover(data_root: Path) -> None:
    with_images = discover(data_root)
    assert list(with_images) == list(DATASETS) == ["utkface", "adience", "morph2", "fairface"]
    assert {name: r.report.kept for name, r in with_images.items()} == {
        "utkface": len(UTK_GOOD) + len(UTK_FIXABLE),
        "adience": 5,
        "morph2": 4,
        "fairface": 9,
    }
    labels = discover(data_root, require_images=False)
    assert {name: r.report.kept for name, r in labels.items()} == {
        "utkface": len(UTK_GOOD) + len(UTK_FIXABLE),
        "adience": 8,
        "morph2": 4,
        "fairface": 10,
    }
    assert labels["morph2"].report.total == 9  # from the tables, not the image names
    histogram = label_records(data_root)
    assert list(histogram) == ["utkface", "adience", "morph2"]
    assert histogram["adience"].report.kept == 8
    assert list(discover(data_root, datasets=["fairface"])) == ["fairface"]


def test_every_dataset_is_fitted_on_or_says_why_not() -> None:
    assert set(WHY_NOT_HISTOGRAM) == set(DATASETS) - set(HISTOGRAM_DATASETS)
    assert set(HISTOGRAM_DATASETS) <= set(DATASETS)


def test_discover_partial_root(tmp_path: Path, morph_root: Path) -> None:
    (morph_root / "morph2_train.csv").unlink()
    (morph_root / "morph2_test.csv").unlink()
    assert list(discover(tmp_path)) == ["morph2"]
    assert discover(tmp_path, require_images=False)["morph2"].report.total == 7  # no tables: the image names


def test_discover_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no dataset found; expected at least one of:\n  utkface/: UTKFace/"):
        discover(tmp_path)
    with pytest.raises(ValueError, match="no dataset found"):
        discover(tmp_path / "absent")
    with pytest.raises(ValueError, match=r"unknown dataset\(s\) \['imdb'\]"):
        discover(tmp_path, datasets=["imdb"])


# ------------------------------------------------------------------------------------------------------ real data


def test_real_utkface(shared_data: Path) -> None:
    folder = shared_data / "utkface" / "UTKFace"
    result = load_utkface(folder)
    assert result.report.total == 20199
    assert result.report.dropped == []
    assert result.report.counts()["cleaned"] == {
        "missing race field": 3,
        "stray space before .jpg": 1,
        "missing dot before jpg": 1,
        "odd datetime field": 2,
    }
    ages = [r.exact_age for r in result.records]
    assert min(ages) == 1 and max(ages) == 116
    assert {r.gender for r in result.records} == {0, 1}
    strict = load_utkface(folder, strict=True)
    assert strict.report.kept == 20192 and len(strict.report.dropped) == 7


@pytest.fixture(scope="module")
def real_adience(shared_data: Path):
    root = shared_data / "adience"
    return root, load_adience(root, require_images=False), load_adience(root)


def test_real_adience(real_adience) -> None:
    root, labels, with_images = real_adience
    assert labels.report.total == 19370
    assert labels.report.counts() == {
        "cleaned": {
            "(8, 12) read as 8-13": 2124,
            "gender unknown": 1170,
            "exact age kept": 913,
            "exact age mapped to its group": 186,
            "range mapped to the most-overlapping group": 129,
        },
        "dropped": {"age missing": 748, "range between groups": 1},
    }
    assert len(labels.records) == 18621
    # 307 face images; one of them has the age None in its row.
    assert len(list((root / "faces").glob("*/coarse_tilt_aligned_face.*"))) == 307
    assert with_images.report.kept == 306
    assert with_images.report.counts()["dropped"]["image file missing"] == 18315
    folds = adience_folds(root)
    assert len(folds) == 19370
    assert {folds[adience_key(r.path)] for r in with_images.records} == {0}


def test_real_adience_protocol(real_adience) -> None:
    root, _, with_images = real_adience
    splits = load_adience_protocol(root)
    found = {
        (s.test_fold, task, part): (len(entries), resolve_split(with_images.records, entries).resolved)
        for s in splits
        for task in ("age", "gender")
        for part, entries in getattr(s, task).items()
    }
    assert found == {
        (0, "age", "train"): (11823, 0),
        (0, "age", "val"): (1284, 0),
        (0, "age", "test"): (4316, 298),
        (0, "gender", "train"): (12256, 0),
        (0, "gender", "val"): (1339, 0),
        (0, "gender", "test"): (4007, 306),
        (1, "age", "train"): (12894, 268),
        (1, "age", "val"): (1428, 30),
        (1, "age", "test"): (3101, 0),
        (1, "gender", "train"): (12574, 276),
        (1, "gender", "val"): (1404, 30),
        (1, "gender", "test"): (3624, 0),
        (2, "age", "train"): (12655, 259),
        (2, "age", "val"): (1429, 38),
        (2, "age", "test"): (3339, 0),
        (2, "gender", "train"): (12986, 265),
        (2, "gender", "val"): (1425, 40),
        (2, "gender", "test"): (3191, 0),
        (3, "age", "train"): (12991, 261),
        (3, "age", "val"): (1457, 37),
        (3, "age", "test"): (2975, 0),
        (3, "gender", "train"): (12854, 269),
        (3, "gender", "val"): (1430, 37),
        (3, "gender", "test"): (3318, 0),
        (4, "age", "train"): (12371, 264),
        (4, "age", "val"): (1359, 34),
        (4, "age", "test"): (3693, 0),
        (4, "gender", "train"): (12717, 272),
        (4, "gender", "val"): (1422, 34),
        (4, "gender", "test"): (3463, 0),
    }
    # The noise rule agrees with the benchmark's own age classes on every face both know.
    test = resolve_split(with_images.records, splits[0].age["test"])
    assert all(ADIENCE_GROUPS[c] == (r.age_min, r.age_max) for r, c in zip(test.records, test.labels))


def test_real_morph2(shared_data: Path) -> None:
    folder = shared_data / "morph2"
    names = load_morph2(folder / "images")
    assert (names.report.total, names.report.kept) == (2500, 2500)
    ages = [r.exact_age for r in names.records]
    assert (min(ages), max(ages)) == (30, 70)
    tables = sorted(folder.glob("morph2_*.csv"))
    labels = load_morph2_csv(tables)
    # Every row's name agrees with its table age + 16 and its Male column. (The data README says 55,223 rows;
    # the tables hold 55,224: morph2_valid.csv has no final newline, which line counting misses.)
    assert (labels.report.total, labels.report.kept) == (55224, 55224)
    with_images = load_morph2_csv(tables, folder / "images")
    assert with_images.report.kept == 2488  # 12 of the 2,500 images are in no table


def test_real_fairface(shared_data: Path) -> None:
    result = load_fairface(shared_data / "fairface")
    assert (result.report.total, result.report.kept) == (5000, 5000)
    assert len({r.race for r in result.records}) == 7


def test_real_discover(shared_data: Path) -> None:
    found = label_records(shared_data)
    assert {name: len(r.records) for name, r in found.items()} == {"utkface": 20199, "adience": 18621, "morph2": 55224}


def test_every_dataset_trait_names_something_that_exists() -> None:
    for name, source in DATASETS.items():
        assert source.framing in MODES, name
        assert source.title, f"{name}: a title for reports"
        assert set(source.protocols) <= set(PROTOCOLS), f"{name}: unknown protocols {source.protocols}"
    assert histogram_datasets() == HISTOGRAM_DATASETS and why_not_histogram() == WHY_NOT_HISTOGRAM
    assert DATASETS["fairface"].framing == "aligned" and DATASETS["adience"].protocols == ("adience_groups",)
