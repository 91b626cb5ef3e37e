import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agecurriculum.data.records import FaceRecord
from agecurriculum.data.splits import PARTS, part_of, split_key, split_records


def rec(name, subject=None, dataset="utkface", root="/data"):
    return FaceRecord(f"{root}/{dataset}/{name}", dataset, 30, 30, 0, subject=subject)


def test_known_keys_get_the_same_part_on_every_machine_and_run():
    # Fixed expectations: hashlib-based, so no PYTHONHASHSEED, platform or Python version can change them.
    morph = rec("a.jpg", subject="0001", dataset="morph2")
    utk = FaceRecord("/data/UTKFace/1_0_0_2016.jpg", "utkface", 1, 1, 0)
    adience = rec("b.jpg", subject="7", dataset="adience")
    split = split_records([morph, utk, adience])
    assert (split.train, split.val, split.test) == ([utk], [adience], [morph])
    assert [part_of(split_key(r), seed=1) for r in (morph, utk, adience)] == ["train", "test", "train"]


def test_keys_ignore_the_data_root_and_separate_datasets():
    assert split_key(rec("x/1.jpg", root="/a")) == split_key(rec("x/1.jpg", root="/mnt/b")) == "utkface/image/x/1.jpg"
    assert split_key(rec("1.jpg", subject="9", dataset="morph2")) == "morph2/subject/9"
    assert split_key(rec("train/1.jpg", dataset="fairface")) != split_key(rec("val/1.jpg", dataset="fairface"))


records_strategy = st.lists(
    st.tuples(st.integers(0, 10_000), st.one_of(st.none(), st.integers(0, 15).map(str)), st.sampled_from(["m", "a"])),
    max_size=60,
    unique_by=lambda t: t[0],
)


@settings(max_examples=50)
@given(rows=records_strategy, seed=st.integers(0, 1000))
def test_split_is_a_subject_disjoint_partition(rows, seed):
    records = [rec(f"{i}.jpg", subject, dataset) for i, subject, dataset in rows]
    split = split_records(records, seed=seed)
    parts = [split.train, split.val, split.test]
    assert sorted(map(str, (r.path for part in parts for r in part))) == sorted(str(r.path) for r in records)
    owners = {}
    for name, part in zip(PARTS, parts):
        for r in part:
            if r.subject is not None:
                assert owners.setdefault((r.dataset, r.subject), name) == name  # one person, one part
    # Stable when records are added: the first half's parts don't change.
    half = split_records(records[: len(records) // 2], seed=seed)
    for name, part in zip(PARTS, (half.train, half.val, half.test)):
        assert all(r in getattr(split, name) for r in part)


def test_split_is_deterministic_and_seed_dependent_and_in_input_order():
    records = [rec(f"{i}.jpg") for i in range(300)]
    a, b = split_records(records, seed=4), split_records(list(records), seed=4)
    assert a == b
    assert a != split_records(records, seed=5)
    assert a.train == sorted(a.train, key=records.index)


def test_fractions_are_approximately_met():
    records = [rec(f"{i}.jpg") for i in range(4000)]
    sizes = split_records(records, fractions=(0.7, 0.2, 0.1)).sizes()
    assert abs(sizes["train"] / 4000 - 0.7) < 0.03
    assert abs(sizes["val"] / 4000 - 0.2) < 0.03
    assert abs(sizes["test"] / 4000 - 0.1) < 0.03
    # By subject, the fractions are of people, and a person's images all follow them.
    grouped = split_records([rec(f"{i}.jpg", subject=str(i % 500), dataset="morph2") for i in range(4000)])
    assert abs(grouped.sizes()["train"] / 4000 - 0.8) < 0.06 and sum(grouped.sizes().values()) == 4000
    assert split_records(records, fractions=(1, 0, 0)).sizes() == {"train": 4000, "val": 0, "test": 0}


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_fractions_are_rejected(fractions):
    with pytest.raises(ValueError, match="fractions must be three numbers"):
        split_records([rec("1.jpg")], fractions=fractions)


def test_byte_identical_images_share_a_part_whatever_their_names(tmp_path):
    # UTKFace ships the same photo under several names (and labels): a copy in test and one in train is a leak.
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    records = []
    for i in range(40):
        content = f"photo {i % 10}".encode()  # 10 distinct contents, 4 copies each
        path = folder / f"{20 + i}_{i % 2}_0_2017{i:05d}.jpg.chip.jpg"
        path.write_bytes(content)
        records.append(FaceRecord(path, "utkface", 20 + i, 20 + i, i % 2))
    split = split_records(records, seed=3)
    part = {r.path: name for name in PARTS for r in getattr(split, name)}
    for i in range(10):
        assert len({part[r.path] for r in records[i::10]}) == 1
    assert split_key(records[0]) == split_key(records[10]) != split_key(records[1])
    assert split_key(records[0]).startswith("utkface/content/")
    # By name, the copies scatter (the old behaviour, still available).
    by_name = split_records(records, seed=3, by_content=False)
    assert by_name != split
